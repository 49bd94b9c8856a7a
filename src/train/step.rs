//! One training step's forward and backward: policy forward of chosen + rejected, the loss hook,
//! reduction, backward, and the numbers the metrics log needs.

use anyhow::Result;
use candle_core::{DType, Tensor};

use crate::batch::{TokenPair, forward_pairs, loss_inputs};
use crate::error::user_error;
use crate::loss::{reduce, weighted_per_pair};
use crate::model::Policy;
use crate::recipe::LossSpec;
use crate::script::{HookRef, ScriptHost};

/// What a step needs besides the policy: the pairs, their reference log-probs and weights.
pub struct StepBatch<'a> {
    pub pairs: &'a [TokenPair],
    pub ref_chosen: &'a [f64],
    pub ref_rejected: &'a [f64],
    pub weights: &'a [f64],
}

/// The result of one forward + backward.
pub struct StepOutput {
    pub loss: f64,
    /// One per policy variable, in `Policy::vars()` order.
    pub grads: Vec<Option<Tensor>>,
    pub chosen_logps: Vec<f64>,
    pub rejected_logps: Vec<f64>,
    /// Per-pair losses after weighting (`None` when the hook returned a scalar).
    pub per_pair: Option<Vec<f64>>,
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Forward, loss and backward of one batch; `scale` multiplies the loss before backward
/// (gradient accumulation). A non-finite loss is an error.
pub fn forward_backward(
    policy: &Policy,
    pad_id: u32,
    host: &ScriptHost,
    hook: HookRef,
    loss: &LossSpec,
    batch: &StepBatch,
    scale: f64,
) -> Result<StepOutput> {
    let fwd = forward_pairs(&policy.config, policy.weights(), batch.pairs, pad_id)?;
    let inputs = loss_inputs(&fwd, batch.ref_chosen, batch.ref_rejected, batch.weights)?;
    let output = host.call_loss(hook, &inputs, &loss.hook_params())?;
    let per_pair = weighted_per_pair(&output, &inputs, loss.weighting)?;
    let total = reduce(&output, &inputs, loss.weighting)?;
    let value = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Err(user_error(format!(
            "the loss is {value} (fn loss(batch) in {})",
            host.file(hook.unit)
        )));
    }
    let store = (total * scale)?.backward()?;
    let grads = policy
        .vars()
        .iter()
        .map(|(_, v)| store.get(v.as_tensor()).cloned())
        .collect();
    Ok(StepOutput {
        loss: value,
        grads,
        chosen_logps: values(&fwd.chosen_logps)?,
        rejected_logps: values(&fwd.rejected_logps)?,
        per_pair: per_pair.map(|t| values(&t)).transpose()?,
    })
}
