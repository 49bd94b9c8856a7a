//! How a loss hook's output becomes the scalar training loss: the recipe's extra weighting (WPO)
//! and the reduction over pairs.

use anyhow::Result;
use candle_core::Tensor;

use crate::error::user_error;
use crate::recipe::Weighting;
use crate::script::{LossInputs, LossOutput};

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
        (LossOutput::Scalar(_), Weighting::Wpo { .. }) => Err(user_error(
            "loss.weighting = \"wpo\" needs per-pair losses, but the loss hook returned a scalar; return the [B] tensor before mean()",
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
