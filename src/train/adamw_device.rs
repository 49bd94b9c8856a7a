//! The AdamW update for parameters on a GPU: the same arithmetic as the CPU kernel in `optim.rs`
//! (PyTorch's single-tensor AdamW), written with tensor ops so it runs wherever the tensors live.

use anyhow::Result;
use candle_core::{Tensor, Var};

/// The scalars of one AdamW step, shared by every parameter.
#[derive(Debug, Clone, Copy)]
pub struct StepScalars {
    pub lr: f64,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub decay: f64,
    pub grad_scale: f64,
}

/// Updates `var` and its moments `m`, `v` (same shape and device as `var`) from `grad`.
///
/// # Shapes
/// `var`, `grad`, `m`, `v`: one shape, any rank.
pub fn update(
    var: &Var,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    s: &StepScalars,
) -> Result<()> {
    let g = grad.affine(s.grad_scale, 0.0)?;
    let p = var.as_tensor().affine(1.0 - s.lr * s.decay, 0.0)?;
    // m += (g - m) * (1 - beta1)
    let new_m = (m.clone() + (g.clone() - m.clone())?.affine(1.0 - s.beta1, 0.0)?)?;
    // v = v * beta2 + (1 - beta2) * g²
    let new_v = (v.affine(s.beta2, 0.0)? + g.sqr()?.affine(1.0 - s.beta2, 0.0)?)?;
    let denom = new_v.sqrt()?.affine(1.0 / s.bc2_sqrt, s.eps)?;
    let p = (p - (new_m.clone() / denom)?.affine(s.step_size, 0.0)?)?;
    var.set(&p)?;
    *m = new_m;
    *v = new_v;
    Ok(())
}
