//! The loss hook's contract: the per-pair tensors it receives as `batch` and what it may return.

use candle_core::Tensor;

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

/// The names every line of `metrics.jsonl` already has; a loss hook's own metrics may not reuse
/// them (the training loop's `StepMetrics` fields, checked by a test there).
pub const STEP_METRIC_NAMES: [&str; 13] = [
    "step",
    "epoch",
    "loss",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "weight_mean",
    "grad_norm",
    "learning_rate",
    "tokens_per_s",
];

/// What a loss hook returned, after shape validation.
#[derive(Debug, Clone)]
pub enum LossOutput {
    /// `[B]`: one loss per pair.
    PerPair(Tensor),
    /// `[]`: already reduced.
    Scalar(Tensor),
}
