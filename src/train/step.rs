//! One training step's forward and backward: policy forward of chosen + rejected, the loss hook,
//! the recipe's weighting and reduction, backward, and the numbers the metrics log needs.
//! `trainer score` runs the same forward and loss (and, asked for the gradient norm, the same
//! backward).

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::batch::{PairForward, TokenPair, forward_pairs, loss_inputs};
use super::loss::{reduce, weighted_per_pair};
use crate::error::user_error;
use crate::model::{Policy, Weights};
use crate::recipe::LossSpec;
use crate::script::{HookRef, LossInputs, ScriptHost};

/// What a step needs besides the policy: the pairs, their reference log-probs and weights.
pub struct StepBatch<'a> {
    pub pairs: &'a [TokenPair],
    /// Reference log-probs of the chosen responses; `None` takes the policy's own (the model is
    /// its own reference, as `trainer score` does for pairs without `ref_*_logps`).
    pub ref_chosen: &'a [Option<f64>],
    pub ref_rejected: &'a [Option<f64>],
    pub weights: &'a [f64],
}

/// The loss hook, the recipe's `[loss]` section and the host that runs the hook.
#[derive(Clone, Copy)]
pub struct LossFn<'a> {
    pub host: &'a ScriptHost,
    pub hook: HookRef,
    pub spec: &'a LossSpec,
}

/// The forward and loss of one batch, before any backward.
pub struct StepLoss {
    /// The scalar loss (mean over pairs after the recipe's weighting).
    pub total: Tensor,
    pub value: f64,
    pub forward: PairForward,
    pub inputs: LossInputs,
    /// Per-pair losses after weighting (`None` when the hook returned a scalar).
    ///
    /// # Shapes
    /// `[P]`.
    pub per_pair: Option<Tensor>,
    /// The loss hook's own metrics.
    pub metrics: std::collections::BTreeMap<String, f64>,
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
    /// The loss hook's own metrics.
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// The values of a `[P]` tensor as `f64`.
pub fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Forward of the pairs under `weights` and the loss of the batch (no backward).
pub fn step_loss(
    policy: &Policy,
    weights: &Weights,
    pad_id: u32,
    loss: LossFn,
    batch: &StepBatch,
) -> Result<StepLoss> {
    let fwd = forward_pairs(&policy.config, weights, batch.pairs, pad_id)?;
    let own = |given: &[Option<f64>], logps: &Tensor| -> Result<Vec<f64>> {
        if given.iter().all(Option::is_some) {
            return Ok(given.iter().map(|x| x.unwrap_or_default()).collect());
        }
        let mine = values(logps)?;
        Ok(given
            .iter()
            .zip(mine)
            .map(|(x, m)| x.unwrap_or(m))
            .collect())
    };
    let ref_chosen = own(batch.ref_chosen, &fwd.chosen_logps)?;
    let ref_rejected = own(batch.ref_rejected, &fwd.rejected_logps)?;
    let inputs = loss_inputs(&fwd, &ref_chosen, &ref_rejected, batch.weights)?;
    let (output, metrics) =
        loss.host
            .call_loss_metrics(loss.hook, &inputs, &loss.spec.hook_params())?;
    let per_pair = weighted_per_pair(&output, &inputs, loss.spec.weighting)?;
    let total = reduce(&output, &inputs, loss.spec.weighting)?;
    let value = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok(StepLoss {
        total,
        value,
        forward: fwd,
        inputs,
        per_pair,
        metrics,
    })
}

/// The gradient of `loss` for every policy variable, in `Policy::vars()` order.
pub fn backward(policy: &Policy, loss: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let store = loss.backward()?;
    Ok(policy
        .vars()
        .iter()
        .map(|(_, v)| store.get(v.as_tensor()).cloned())
        .collect())
}

/// Adds `new` into the accumulated gradients `acc` (gradient accumulation).
pub fn add_grads(acc: &mut [Option<Tensor>], new: Vec<Option<Tensor>>) -> Result<()> {
    for (slot, g) in acc.iter_mut().zip(new) {
        if let Some(g) = g {
            *slot = Some(match slot.take() {
                Some(a) => (a + g)?,
                None => g,
            });
        }
    }
    Ok(())
}

/// Forward, loss and backward of one batch; `scale` multiplies the loss before backward
/// (gradient accumulation). A non-finite loss is an error.
pub fn forward_backward(
    policy: &Policy,
    pad_id: u32,
    loss: LossFn,
    batch: &StepBatch,
    scale: f64,
) -> Result<StepOutput> {
    let step = step_loss(policy, policy.weights(), pad_id, loss, batch)?;
    if !step.value.is_finite() {
        return Err(user_error(format!(
            "the loss is {} (fn loss(batch) in {})",
            step.value,
            loss.host.file(loss.hook.unit)
        )));
    }
    let grads = backward(policy, &(step.total * scale)?)?;
    Ok(StepOutput {
        loss: step.value,
        grads,
        chosen_logps: values(&step.forward.chosen_logps)?,
        rejected_logps: values(&step.forward.rejected_logps)?,
        per_pair: step.per_pair.map(|t| values(&t)).transpose()?,
        metrics: step.metrics,
    })
}
