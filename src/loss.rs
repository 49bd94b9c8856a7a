//! What a loss hook sees (per-pair tensors) and how its output becomes the scalar training loss.

use anyhow::{Result, bail};
use candle_core::Tensor;

use crate::recipe::Weighting;

/// The per-pair tensors handed to a loss hook.
///
/// # Shapes
/// Every field is `[B]` (one value per pair). `chosen_logps` and `rejected_logps` carry gradients
/// (summed response log-probs under the policy); everything else is detached.
#[derive(Debug, Clone)]
pub struct LossInputs {
    pub chosen_logps: Tensor,
    pub rejected_logps: Tensor,
    pub ref_chosen_logps: Tensor,
    pub ref_rejected_logps: Tensor,
    pub chosen_tokens: Tensor,
    pub rejected_tokens: Tensor,
    pub weight: Tensor,
    pub chosen_wpo: Tensor,
    pub rejected_wpo: Tensor,
}

impl LossInputs {
    /// The fields by the names scripts use.
    pub fn fields(&self) -> [(&'static str, &Tensor); 9] {
        [
            ("chosen_logps", &self.chosen_logps),
            ("rejected_logps", &self.rejected_logps),
            ("ref_chosen_logps", &self.ref_chosen_logps),
            ("ref_rejected_logps", &self.ref_rejected_logps),
            ("chosen_tokens", &self.chosen_tokens),
            ("rejected_tokens", &self.rejected_tokens),
            ("weight", &self.weight),
            ("chosen_wpo", &self.chosen_wpo),
            ("rejected_wpo", &self.rejected_wpo),
        ]
    }

    /// Number of pairs `B`.
    pub fn len(&self) -> usize {
        self.chosen_logps.dims1().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a loss hook returned, after shape validation.
#[derive(Debug, Clone)]
pub enum LossOutput {
    /// `[B]`: one loss per pair.
    PerPair(Tensor),
    /// `[]`: already reduced.
    Scalar(Tensor),
}

/// The WPO weight `exp(chosen_wpo + rejected_wpo)`, detached, clamped at 1 when asked.
///
/// # Shapes
/// `[B]` → `[B]`.
pub fn wpo_weight(inputs: &LossInputs, clamp: bool) -> Result<Tensor> {
    let w = (&inputs.chosen_wpo + &inputs.rejected_wpo)?.exp()?.detach();
    Ok(if clamp {
        w.clamp(f64::NEG_INFINITY, 1.0)?
    } else {
        w
    })
}

/// The per-pair losses after the recipe's extra weighting, or `None` when the hook already
/// reduced to a scalar.
///
/// # Shapes
/// `PerPair([B])` → `[B]`.
pub fn weighted_per_pair(
    output: &LossOutput,
    inputs: &LossInputs,
    weighting: Weighting,
) -> Result<Option<Tensor>> {
    match (output, weighting) {
        (LossOutput::PerPair(per_pair), Weighting::None) => Ok(Some(per_pair.clone())),
        (LossOutput::PerPair(per_pair), Weighting::Wpo { clamp }) => {
            let w = wpo_weight(inputs, clamp)?.to_dtype(per_pair.dtype())?;
            Ok(Some((per_pair * w)?))
        }
        (LossOutput::Scalar(_), Weighting::None) => Ok(None),
        (LossOutput::Scalar(_), Weighting::Wpo { .. }) => bail!(crate::error::UserError(
            "loss.weighting = \"wpo\" needs per-pair losses, but the loss hook returned a scalar; return the [B] tensor before mean()".into()
        )),
    }
}

/// Applies the recipe's extra weighting and reduces to the scalar loss (mean over pairs).
///
/// # Shapes
/// `PerPair([B])` or `Scalar([])` → `[]`.
pub fn reduce(output: &LossOutput, inputs: &LossInputs, weighting: Weighting) -> Result<Tensor> {
    match (weighted_per_pair(output, inputs, weighting)?, output) {
        (Some(per_pair), _) => Ok(per_pair.mean_all()?),
        (None, LossOutput::Scalar(loss)) => Ok(loss.clone()),
        (None, LossOutput::PerPair(per_pair)) => Ok(per_pair.mean_all()?),
    }
}
