//! The tensor math behind the Rhai `Tensor` type: element-wise operations on candle tensors whose
//! gradients match PyTorch's conventions, including at kinks.
//!
//! # Shapes
//! Every function here is element-wise (or a full reduction) and keeps the dtype of its input, so
//! the same script runs on `[B]` f32 batches in training and on f64 batches in `trainer check`.

use candle_core::{Result, Tensor};

/// The Rhai-visible wrapper around a candle tensor.
#[derive(Clone, Debug)]
pub struct ScriptTensor(pub Tensor);

/// `b` on `a`'s device: a tensor a script built with `tensor(…)` lives on the CPU and meets batch
/// tensors that may live on a GPU.
fn on_device_of(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().same_device(b.device()) {
        Ok(b.clone())
    } else {
        b.to_device(a.device())
    }
}

/// `a ∘ b` with broadcasting (a scalar tensor broadcasts against `[B]`).
pub fn binary(a: &Tensor, b: &Tensor, op: char) -> Result<Tensor> {
    let (a, b) = if a.device().is_cpu() {
        (&on_device_of(b, a)?, b)
    } else {
        (a, &on_device_of(a, b)?)
    };
    match op {
        '+' => a.broadcast_add(b),
        '-' => a.broadcast_sub(b),
        '*' => a.broadcast_mul(b),
        _ => a.broadcast_div(b),
    }
}

/// `t ∘ s` for a float `s`.
pub fn tensor_scalar(t: &Tensor, s: f64, op: char) -> Result<Tensor> {
    match op {
        '+' => t.affine(1.0, s),
        '-' => t.affine(1.0, -s),
        '*' => t.affine(s, 0.0),
        _ => t.affine(1.0 / s, 0.0),
    }
}

/// `s ∘ t` for a float `s`.
pub fn scalar_tensor(s: f64, t: &Tensor, op: char) -> Result<Tensor> {
    match op {
        '+' => t.affine(1.0, s),
        '-' => t.affine(-1.0, s),
        '*' => t.affine(s, 0.0),
        _ => t.recip()?.affine(s, 0.0),
    }
}

/// `log(1 + e^x)`, stable for any `x`: `max(x, 0) + log(1 + e^{-|x|})`.
///
/// candle's `relu` and `abs` both take the right derivative at 0, so their kinks cancel and the
/// gradient is exactly `sigmoid(x)` everywhere, 0.5 at 0 included.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    x.relu()? + tail
}

/// `log σ(x) = −softplus(−x)`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    softplus(&x.neg()?)?.neg()
}

/// `σ(x) = exp(log σ(x))`, stable for any `x`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    log_sigmoid(x)?.exp()
}

/// `max(x, 0)` with PyTorch's gradient: 1 where `x > 0`, else 0 (also at 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let mask = x.gt(0.0)?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

/// `|x|` with PyTorch's gradient `sign(x)` (0 at 0).
pub fn abs(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.sign()?)
}

/// Clamps to `[lo, hi]`; the gradient passes where `lo <= x <= hi` (PyTorch's `clamp`).
pub fn clamp(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let inside = x.ge(lo)?.mul(&x.le(hi)?)?;
    let clamped = x.detach().clamp(lo, hi)?;
    inside.where_cond(x, &clamped)
}

/// Element-wise maximum; at ties the gradient is split evenly (PyTorch's `torch.maximum`).
pub fn maximum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.broadcast_maximum(&on_device_of(a, b)?)
}

/// Element-wise minimum; at ties the gradient is split evenly (PyTorch's `torch.minimum`).
pub fn minimum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.broadcast_minimum(&on_device_of(a, b)?)
}

/// A scalar tensor of `value` with `like`'s dtype and device.
pub fn scalar_like(like: &Tensor, value: f64) -> Result<Tensor> {
    Tensor::new(value, like.device())?.to_dtype(like.dtype())
}

/// Every element as f64, for printing and assertions.
pub fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()
}
