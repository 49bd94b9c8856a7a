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
    /// The loss hook's own metrics (`#{loss, metrics: #{...}}`), averaged over the micro-batches.
    #[serde(flatten, default)]
    pub hook: std::collections::BTreeMap<String, f64>,
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

/// The mean of `f` over the last 10 % of the steps (at least one); `None` without steps.
pub fn tail_mean(metrics: &[StepMetrics], f: impl Fn(&StepMetrics) -> f64) -> Option<f64> {
    if metrics.is_empty() {
        return None;
    }
    let n = metrics.len().div_ceil(10);
    let tail = &metrics[metrics.len() - n..];
    Some(tail.iter().map(f).sum::<f64>() / n as f64)
}

/// The steps whose loss exceeds `factor` times the median loss of the steps before them (after
/// the first ten): the spikes of an unstable run.
pub fn loss_spikes(metrics: &[StepMetrics], factor: f64) -> usize {
    let mut seen: Vec<f64> = Vec::with_capacity(metrics.len());
    let mut spikes = 0;
    for m in metrics {
        if seen.len() >= 10 {
            let mut sorted = seen.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            spikes += usize::from(m.loss > factor * median.abs().max(1e-12));
        }
        seen.push(m.loss);
    }
    spikes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize, loss: f64, reward_accuracy: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0,
            loss,
            margin: 0.0,
            chosen_reward: 0.0,
            rejected_reward: 0.0,
            reward_accuracy,
            weight_mean: 1.0,
            grad_norm: 0.0,
            lr: 0.0,
            tokens_per_s: 0.0,
            hook: Default::default(),
        }
    }

    #[test]
    fn the_names_a_hook_metric_may_not_take_are_the_fields_of_a_metrics_line() {
        let line = serde_json::to_value(step(1, 0.5, 1.0)).unwrap();
        let mut fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut reserved = crate::script::STEP_METRIC_NAMES.to_vec();
        reserved.sort_unstable();
        assert_eq!(fields, reserved);
    }

    #[test]
    fn the_tail_mean_covers_the_last_tenth_of_the_steps() {
        let m: Vec<StepMetrics> = (0..20).map(|i| step(i, 1.0, i as f64)).collect();
        assert_eq!(tail_mean(&m, |s| s.reward_accuracy), Some(18.5));
        assert_eq!(tail_mean(&m[..3], |s| s.reward_accuracy), Some(2.0));
        assert_eq!(tail_mean(&[], |s| s.loss), None);
    }

    #[test]
    fn a_loss_five_times_the_running_median_is_a_spike() {
        let mut m: Vec<StepMetrics> = (0..12).map(|i| step(i, 0.7, 0.5)).collect();
        m.push(step(12, 3.6, 0.5));
        m.push(step(13, 3.4, 0.5));
        assert_eq!(loss_spikes(&m, 5.0), 1);
    }
}
