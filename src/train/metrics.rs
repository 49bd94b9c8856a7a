//! One line of `metrics.jsonl` per optimizer step (under the names TRL logs), the sums a step
//! collects them from, and rewriting the file on resume.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::store::write_atomic;

/// One line of `metrics.jsonl`, under the names of TRL's `DPOTrainer` logs (TensorBoard adds the
/// `train/` prefix).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    /// Epochs done, as a fraction: 0.5 halfway through the first (TRL's `epoch`).
    pub epoch: f64,
    pub loss: f64,
    /// Mean of `chosen_reward − rejected_reward`.
    #[serde(rename = "rewards/margins")]
    pub margin: f64,
    /// Mean of `β·(log π(y_w) − log π_ref(y_w))`.
    #[serde(rename = "rewards/chosen")]
    pub chosen_reward: f64,
    #[serde(rename = "rewards/rejected")]
    pub rejected_reward: f64,
    /// Fraction of pairs with a positive margin.
    #[serde(rename = "rewards/accuracies")]
    pub reward_accuracy: f64,
    /// Mean summed log-probability of the chosen responses under the policy.
    #[serde(rename = "logps/chosen")]
    pub chosen_logps: f64,
    #[serde(rename = "logps/rejected")]
    pub rejected_logps: f64,
    pub weight_mean: f64,
    /// Anchor rows in the step (`pairs.all_correct = "anchor"`); the `rewards/*` and `logps/*`
    /// means are over the step's other pairs, `pairs` of them. Both are written only when a step
    /// has anchors.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anchors: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pairs: usize,
    pub grad_norm: f64,
    #[serde(rename = "learning_rate")]
    pub lr: f64,
    pub tokens_per_s: f64,
    /// The loss hook's own metrics (`#{loss, metrics: #{...}}`), averaged over the micro-batches.
    #[serde(flatten, default)]
    pub hook: std::collections::BTreeMap<String, f64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl StepMetrics {
    /// Whether the step's `rewards/*` means cover any pair (not so for a step of anchors only).
    pub fn has_rewards(&self) -> bool {
        self.anchors == 0 || self.pairs > 0
    }

    /// The scalars TensorBoard gets, under TRL's tags.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = [
            ("train/loss", self.loss),
            ("train/rewards/chosen", self.chosen_reward),
            ("train/rewards/rejected", self.rejected_reward),
            ("train/rewards/accuracies", self.reward_accuracy),
            ("train/rewards/margins", self.margin),
            ("train/logps/chosen", self.chosen_logps),
            ("train/logps/rejected", self.rejected_logps),
            ("train/learning_rate", self.lr),
            ("train/grad_norm", self.grad_norm),
            ("train/epoch", self.epoch),
            ("train/weight_mean", self.weight_mean),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        out.extend(self.hook.iter().map(|(k, v)| (format!("train/{k}"), *v)));
        out
    }

    /// The log line of a step when stderr is not a terminal.
    pub fn log_line(&self, total: usize) -> String {
        format!(
            "step {}/{total}  epoch {:.2}  loss {:.4}  rewards/accuracies {:.2}  rewards/margins \
             {:.3}  grad_norm {:.3}  learning_rate {:.3e}",
            self.step,
            self.epoch,
            self.loss,
            self.reward_accuracy,
            self.margin,
            self.grad_norm,
            self.lr
        )
    }
}

/// The sums over one step's pairs that its metrics are means of.
#[derive(Debug, Default)]
pub(super) struct Tally {
    chosen_reward: f64,
    rejected_reward: f64,
    chosen_logps: f64,
    rejected_logps: f64,
    wins: usize,
    weight: f64,
    count: usize,
    anchors: usize,
}

impl Tally {
    /// Adds one pair: its policy and reference log-probs (chosen, rejected), β and its weight.
    pub fn add(&mut self, policy: (f64, f64), reference: (f64, f64), beta: f64, weight: f64) {
        self.weight += weight;
        let c = beta * (policy.0 - reference.0);
        let r = beta * (policy.1 - reference.1);
        self.chosen_reward += c;
        self.rejected_reward += r;
        self.chosen_logps += policy.0;
        self.rejected_logps += policy.1;
        self.wins += usize::from(c > r);
        self.count += 1;
    }

    /// Adds an anchor row: it counts towards the weight mean only.
    pub fn add_anchor(&mut self, weight: f64) {
        self.weight += weight;
        self.anchors += 1;
    }

    /// The step's metrics: these means, and the rest as given.
    pub fn into_metrics(self, step: usize, epoch: f64, loss: f64) -> StepMetrics {
        let n = self.count.max(1) as f64;
        let rows = (self.count + self.anchors).max(1) as f64;
        StepMetrics {
            step,
            epoch,
            loss,
            margin: (self.chosen_reward - self.rejected_reward) / n,
            chosen_reward: self.chosen_reward / n,
            rejected_reward: self.rejected_reward / n,
            reward_accuracy: self.wins as f64 / n,
            chosen_logps: self.chosen_logps / n,
            rejected_logps: self.rejected_logps / n,
            weight_mean: self.weight / rows,
            anchors: self.anchors,
            pairs: if self.anchors > 0 { self.count } else { 0 },
            ..StepMetrics::default()
        }
    }
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

/// The mean of `f` over the last 10 % of the steps (at least one) whose `rewards/*` cover a
/// pair; `None` without such steps.
pub fn tail_mean(metrics: &[StepMetrics], f: impl Fn(&StepMetrics) -> f64) -> Option<f64> {
    let steps: Vec<&StepMetrics> = metrics.iter().filter(|m| m.has_rewards()).collect();
    if steps.is_empty() {
        return None;
    }
    let n = steps.len().div_ceil(10);
    let tail = &steps[steps.len() - n..];
    Some(tail.iter().map(|m| f(m)).sum::<f64>() / n as f64)
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
            loss,
            reward_accuracy,
            ..StepMetrics::default()
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

    #[test]
    fn steps_of_anchors_only_are_left_out_of_the_reward_tail() {
        let mut m: Vec<StepMetrics> = (0..20).map(|i| step(i, 1.0, i as f64)).collect();
        m[19].anchors = 4;
        m[18].anchors = 2;
        m[18].pairs = 2;
        // Steps 18 and 17 are the last tenth of the 19 steps with pairs.
        assert_eq!(tail_mean(&m, |s| s.reward_accuracy), Some(17.5));
        let mut t = Tally::default();
        t.add((-1.0, -3.0), (-2.0, -2.0), 0.5, 2.0);
        t.add_anchor(4.0);
        let s = t.into_metrics(1, 0.5, 0.3);
        assert_eq!(
            (s.reward_accuracy, s.margin, s.weight_mean),
            (1.0, 1.0, 3.0)
        );
        assert_eq!((s.anchors, s.pairs), (1, 1));
    }
}
