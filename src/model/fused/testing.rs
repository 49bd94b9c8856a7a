//! Helpers for comparing a fused kernel with its composed version on random inputs.

use candle_core::{Device, Result, Tensor, Var};

/// A standard-normal f32 tensor on the CPU, scaled by `scale`.
pub fn randn(dims: &[usize], scale: f64) -> Result<Tensor> {
    Tensor::randn(0f32, scale as f32, dims, &Device::Cpu)
}

/// `max |a − b| / max |b|` over all elements.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

/// The gradients of `Σ f(vars) ⊙ probe` with respect to each var, `probe` a fixed random tensor.
pub fn grads_of(
    vars: &[&Var],
    probe: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = (f(&inputs)? * probe)?.sum_all()?;
    let grads = loss.backward()?;
    vars.iter()
        .map(|v| {
            grads
                .get(v.as_tensor())
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
        })
        .collect()
}
