//! Global gradient norm and PyTorch's `clip_grad_norm_` scale.

use anyhow::Result;
use candle_core::{DType, Tensor};

/// `sqrt(Σ g²)` over every gradient, accumulated in f64.
pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0.0;
    for g in grads.iter().flatten() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(total.sqrt())
}

/// The factor gradients are multiplied by so their norm is at most `max_norm` (0 disables):
/// `min(1, max_norm / (norm + 1e-6))`, as `torch.nn.utils.clip_grad_norm_`.
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}
