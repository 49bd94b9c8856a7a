//! Differentiable building blocks: candle's fused `rms_norm`, `softmax_last_dim` and `rope` have no
//! backward, so f32 tensors on the CPU take the kernels of [`super::fused`] and other devices the
//! versions composed from candle primitives here.

use candle_core::{D, DType, Result, Tensor};

use super::frozen_linear::linear_2d;
use super::fused;

/// RMSNorm as in HF Llama: `w · x / sqrt(mean(x²) + eps)`.
///
/// # Shapes
/// `x`: `[.., H]`, `w`: `[H]` → `[.., H]`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fused::applies(x) && fused::applies(w) {
        return fused::rms_norm(x, w, eps);
    }
    rms_norm_composed(x, w, eps)
}

/// [`rms_norm`] from candle primitives (autograd keeps `x²`, `x·inv` and the output).
///
/// # Shapes
/// `x`: `[.., H]`, `w`: `[H]` → `[.., H]`.
pub fn rms_norm_composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let inv = x
        .sqr()?
        .mean_keepdim(D::Minus1)?
        .affine(1.0, eps)?
        .sqrt()?
        .recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

/// Softmax over the last dimension. The row maximum is detached: softmax does not depend on it.
///
/// # Shapes
/// `[.., N]` → `[.., N]`.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if fused::applies(x) {
        return fused::softmax_last(x);
    }
    softmax_last_composed(x)
}

/// [`softmax_last`] from candle primitives (autograd keeps the shifted input and its exponential).
///
/// # Shapes
/// `[.., N]` → `[.., N]`.
pub fn softmax_last_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

/// `log Σ exp(x)` over the last dimension.
///
/// # Shapes
/// `[.., N]` → `[..]`.
pub fn logsumexp_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let sum = x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    sum.log()?.broadcast_add(&max)?.squeeze(D::Minus1)
}

/// `x · Wᵀ (+ b)` over the last dimension; a `W` and `b` that track no gradient (frozen base
/// weights under LoRA) get none computed ([`linear_2d`]).
///
/// # Shapes
/// `x`: `[.., in]`, `w`: `[out, in]`, `b`: `[out]` → `[.., out]`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (lead, inner) = dims.split_at(dims.len() - 1);
    let rows: usize = lead.iter().product();
    let y = linear_2d(&x.reshape((rows, inner[0]))?, w, b)?;
    let mut out_dims = lead.to_vec();
    out_dims.push(w.dim(0)?);
    y.reshape(out_dims)
}

/// The rotary inverse frequencies `θ^(-2i/D)`, `i < D/2`, in f32 as HF computes them.
pub fn default_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect()
}

/// The rotary tables for `positions`, in HF's non-interleaved layout (`cat(freqs, freqs)`).
///
/// # Shapes
/// `positions`: `[B, T]` (u32), `inv_freq`: `[head_dim / 2]` → `(cos, sin)`, each
/// `[B, 1, T, head_dim]` (f32).
pub fn rope_tables(positions: &Tensor, inv_freq: &[f32]) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let inv_freq = Tensor::new(inv_freq, positions.device())?;
    let (b, t) = positions.dims2()?;
    let pos = positions.to_dtype(DType::F32)?.reshape((b, t, 1))?;
    let freqs = pos.broadcast_mul(&inv_freq.reshape((1, 1, half))?)?;
    let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?.unsqueeze(1)?;
    Ok((emb.cos()?, emb.sin()?))
}

/// The rotary embedding of one forward: a fused table on the CPU, composed tables elsewhere.
pub enum Rotary {
    Fused(std::sync::Arc<fused::RopeTable>),
    Composed(Tensor, Tensor),
}

impl Rotary {
    /// # Shapes
    /// `positions`: `[B, T]` (u32).
    /// `inv_freq`: `[head_dim / 2]` ([`ModelConfig::inv_freq`](super::ModelConfig::inv_freq)).
    pub fn new(positions: &Tensor, inv_freq: &[f32], f32_cpu: bool) -> Result<Self> {
        if f32_cpu && positions.device().is_cpu() {
            return Ok(Rotary::Fused(fused::RopeTable::new(positions, inv_freq)?));
        }
        let (cos, sin) = rope_tables(positions, inv_freq)?;
        Ok(Rotary::Composed(cos, sin))
    }

    /// Rotates per-head projections and moves the heads before time.
    ///
    /// # Shapes
    /// `x`: `[B, T, heads, head_dim]` → `[B, heads, T, head_dim]` (contiguous).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Rotary::Fused(table) if fused::applies(x) => fused::rope_transpose(x, table),
            Rotary::Fused(_) => Err(candle_core::Error::Msg(
                "rope: fused table for a tensor that is not f32 on the CPU".into(),
            )),
            Rotary::Composed(cos, sin) => apply_rope(&x.transpose(1, 2)?.contiguous()?, cos, sin),
        }
    }
}

/// Applies rotary embeddings: `x·cos + rotate_half(x)·sin`, `rotate_half(x) = cat(−x₂, x₁)`.
///
/// # Shapes
/// `x`: `[B, heads, T, head_dim]`, `cos`/`sin`: `[B, 1, T, head_dim]` → like `x`.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}
