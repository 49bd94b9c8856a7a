//! One line of `metrics.jsonl` per optimizer step, and rewriting the file on resume.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::store::write_atomic;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    /// Mean of `chosen_reward − rejected_reward`.
    pub margin: f64,
    /// Mean of `β·(log π(y_w) − log π_ref(y_w))`.
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Fraction of pairs with a positive margin.
    pub reward_accuracy: f64,
    pub weight_mean: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub tokens_per_s: f64,
}

/// Rewrites `metrics.jsonl` with the steps already done (none for a fresh start).
pub(super) fn write_metrics(path: &std::path::Path, metrics: &[StepMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in metrics {
        text.push_str(&serde_json::to_string(m)?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}
