//! The end of a run: plots of the training curves and accuracies, `summary.json`, and the
//! one-screen summary printed to stdout.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::plot::{Bar, Series, bar_chart, histogram, line_chart};
use crate::stages::eval::EvalResult;
use crate::stages::pair::PairSkips;
use crate::stats::PairedChange;
use crate::train::StepMetrics;

/// What a run did, as written to `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub run_dir: String,
    /// Where each hook came from (`grade`, `weight`, `pair`, `loss`, and `eval_grade`, the
    /// eval's grader → file).
    pub hooks: std::collections::BTreeMap<String, String>,
    /// `loss.weighting` ("none" or "wpo").
    pub weighting: String,
    pub seed: u64,
    pub questions: usize,
    pub samples: usize,
    pub sample_accuracy: f64,
    pub pairs: usize,
    /// Of the pairs, anchor rows (`pairs.all_correct = "anchor"`).
    pub anchors: usize,
    pub skipped: PairSkips,
    pub weight_mean: f64,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub last_margin: Option<f64>,
    pub last_reward_accuracy: Option<f64>,
    /// Mean reward accuracy over the last 10 % of the (last round's) steps.
    pub tail_reward_accuracy: Option<f64>,
    /// Steps whose loss exceeds 5x the median loss of the steps before them in their round.
    pub loss_spikes: Option<usize>,
    pub eval_before: Option<EvalResult>,
    pub eval_after: Option<EvalResult>,
    /// After − before on the same questions, paired per question, with its standard error.
    pub change: Option<PairedChange>,
    /// Each round's own figures, when `train.rounds` > 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<RoundSummary>,
    /// (stage, seconds).
    pub timings: Vec<(String, f64)>,
    pub total_seconds: f64,
}

/// What one round did, as `summary.json`'s `rounds` lists it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundSummary {
    pub round: usize,
    pub sample_accuracy: f64,
    pub pairs: usize,
    pub weight_mean: f64,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Mean reward accuracy over the last 10 % of the round's steps.
    pub tail_reward_accuracy: Option<f64>,
    pub eval_after: Option<EvalResult>,
}

/// Writes the PNG plots of a run into `dir`: the training curves, the weights, and the accuracy
/// of each labelled eval (before, after, or after each round) with its interval.
pub fn write_plots(
    dir: &Path,
    metrics: &[StepMetrics],
    weights: &[f64],
    evals: &[(String, &EvalResult)],
) -> Result<()> {
    // The rewards curves skip steps of anchors only, which have no pair to average.
    let series = |label: &str, rewards: bool, f: fn(&StepMetrics) -> f64| Series {
        label: label.to_string(),
        points: metrics
            .iter()
            .filter(|m| !rewards || m.has_rewards())
            .map(|m| (m.step as f64, f(m)))
            .collect(),
    };
    let all = |label: &str, f: fn(&StepMetrics) -> f64| series(label, false, f);
    let curve = |label: &str, f: fn(&StepMetrics) -> f64| series(label, true, f);
    if !metrics.is_empty() {
        line_chart(
            "training loss",
            "optimizer step",
            "loss",
            &[all("loss", |m| m.loss)],
        )?
        .save_png(&dir.join("loss.png"))?;
        line_chart(
            "rewards (beta x log-ratio to the reference)",
            "optimizer step",
            "reward",
            &[
                curve("margin", |m| m.margin),
                curve("chosen", |m| m.chosen_reward),
                curve("rejected", |m| m.rejected_reward),
            ],
        )?
        .save_png(&dir.join("margin.png"))?;
        line_chart(
            "reward accuracy (margin > 0)",
            "optimizer step",
            "fraction of pairs",
            &[curve("reward accuracy", |m| m.reward_accuracy)],
        )?
        .save_png(&dir.join("reward_accuracy.png"))?;
        plot_hook_metrics(dir, metrics)?;
    }
    if !weights.is_empty() {
        histogram("question weights", "weight", weights, 20)?.save_png(&dir.join("weights.png"))?;
    }
    let bars: Vec<Bar> = evals
        .iter()
        .map(|(label, r)| Bar {
            label: label.clone(),
            value: 100.0 * r.accuracy,
            interval: Some((100.0 * r.ci95[0], 100.0 * r.ci95[1])),
        })
        .collect();
    if !bars.is_empty() {
        bar_chart("eval accuracy (95% Wilson interval)", "accuracy (%)", &bars)?
            .save_png(&dir.join("accuracy.png"))?;
    }
    Ok(())
}

/// `hook_metrics.png`: one curve per metric the loss hook reported, when it reported any.
fn plot_hook_metrics(dir: &Path, metrics: &[StepMetrics]) -> Result<()> {
    let names: std::collections::BTreeSet<&String> =
        metrics.iter().flat_map(|m| m.hook.keys()).collect();
    if names.is_empty() {
        return Ok(());
    }
    let series: Vec<Series> = names
        .iter()
        .map(|name| Series {
            label: name.to_string(),
            points: metrics
                .iter()
                .filter_map(|m| m.hook.get(*name).map(|v| (m.step as f64, *v)))
                .collect(),
        })
        .collect();
    line_chart(
        "the loss hook's metrics",
        "optimizer step",
        "value",
        &series,
    )?
    .save_png(&dir.join("hook_metrics.png"))?;
    Ok(())
}

fn pct(r: &EvalResult) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}] ({}/{}, {} invalid)",
        100.0 * r.accuracy,
        100.0 * r.ci95[0],
        100.0 * r.ci95[1],
        r.correct,
        r.total,
        r.invalid
    )
}

/// One line per level: accuracy and 95 % interval before and after.
fn per_level(out: &mut String, before: Option<&EvalResult>, after: Option<&EvalResult>) {
    let levels: std::collections::BTreeSet<&String> = before
        .iter()
        .chain(after.iter())
        .flat_map(|r| r.by_level.keys())
        .collect();
    let show = |r: Option<&EvalResult>, level: &str| match r.and_then(|r| r.by_level.get(level)) {
        Some(l) => format!(
            "{:5.1}% [{:.1}, {:.1}] of {}",
            100.0 * l.accuracy,
            100.0 * l.ci95[0],
            100.0 * l.ci95[1],
            l.total
        ),
        None => "-".to_string(),
    };
    for level in levels {
        let line = match (before, after) {
            (Some(_), Some(_)) => format!("{} -> {}", show(before, level), show(after, level)),
            _ => show(before.or(after), level),
        };
        let _ = writeln!(out, "  level {level:<6}{line}");
    }
}

/// The summary as printed at the end of a run.
pub fn render(s: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run folder   {}", s.run_dir);
    render_data(&mut out, s);
    render_training(&mut out, s);
    render_accuracy(&mut out, s);
    per_level(&mut out, s.eval_before.as_ref(), s.eval_after.as_ref());
    let times: Vec<String> = s
        .timings
        .iter()
        .map(|(k, v)| format!("{k} {v:.0}s"))
        .collect();
    let _ = writeln!(
        out,
        "time         {:.0}s ({})",
        s.total_seconds,
        times.join(", ")
    );
    out
}

/// The samples and pairs lines.
fn render_data(out: &mut String, s: &RunSummary) {
    if s.questions > 0 {
        let _ = writeln!(
            out,
            "samples      {} questions x {} = {} samples, {:.1}% correct",
            s.questions,
            s.samples / s.questions.max(1),
            s.samples,
            100.0 * s.sample_accuracy
        );
    }
    let sk = &s.skipped;
    let _ = writeln!(
        out,
        "pairs        {}{} (skipped: {} with no wrong sample, {} with nothing to choose, {} by the pair hook); mean weight {:.3}",
        s.pairs,
        if s.anchors > 0 {
            format!(", {} of them anchors", s.anchors)
        } else {
            String::new()
        },
        sk.no_wrong_sample,
        sk.no_chosen,
        sk.by_hook,
        s.weight_mean
    );
}

/// The training line, and one line per round when there were several.
fn render_training(out: &mut String, s: &RunSummary) {
    if let (Some(a), Some(b)) = (s.first_loss, s.last_loss) {
        let _ = writeln!(
            out,
            "training     {} steps, loss {a:.4} -> {b:.4}, margin {:.3}, reward accuracy {:.2} (last 10% of steps: {:.2}), {} loss spikes",
            s.steps,
            s.last_margin.unwrap_or(0.0),
            s.last_reward_accuracy.unwrap_or(0.0),
            s.tail_reward_accuracy.unwrap_or(0.0),
            s.loss_spikes.unwrap_or(0)
        );
    }
    for r in &s.rounds {
        let acc = r.eval_after.as_ref().map(pct).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "round {:<6} {:.1}% of samples correct, {} pairs, loss {:.4} -> {:.4}, reward accuracy {:.2}; accuracy {acc}",
            r.round,
            100.0 * r.sample_accuracy,
            r.pairs,
            r.first_loss.unwrap_or(f64::NAN),
            r.last_loss.unwrap_or(f64::NAN),
            r.tail_reward_accuracy.unwrap_or(f64::NAN),
        );
    }
}

/// The accuracy line (before, after or both) and the paired change.
fn render_accuracy(out: &mut String, s: &RunSummary) {
    match (&s.eval_before, &s.eval_after) {
        (Some(b), Some(a)) => {
            let _ = writeln!(out, "accuracy     {} -> {}", pct(b), pct(a));
        }
        (Some(b), None) => {
            let _ = writeln!(out, "accuracy     {} (before)", pct(b));
        }
        (None, Some(a)) => {
            let _ = writeln!(out, "accuracy     {} (after)", pct(a));
        }
        (None, None) => {}
    }
    if let Some(c) = &s.change {
        let beyond = if c.diff.abs() > 2.0 * c.se {
            "beyond 2 SE"
        } else {
            "within 2 SE: noise"
        };
        let _ = writeln!(
            out,
            "change       {:+.1} points (SE {:.1}, paired over {} questions: {} gained, {} lost; {beyond})",
            100.0 * c.diff,
            100.0 * c.se,
            c.total,
            c.gained,
            c.lost
        );
    }
}
