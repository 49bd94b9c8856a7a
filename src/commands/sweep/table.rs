//! The sweep's summary: a row per cell (accuracy after with its interval over seeds, the gain,
//! the paired difference to the baseline cell), written as `sweep.md`, `sweep.jsonl`,
//! `sweep.csv` and `sweep.png`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Axis, Cell, Outcome, cell_name, chart_label};
use crate::plot::{Bar, bar_chart};
use crate::stats::{MeanInterval, mean_interval};
use crate::store::write_atomic;

/// One row of the sweep table.
struct Row {
    name: String,
    /// The cell's values only, the last axis on a second line (the chart's label and series).
    label: String,
    /// Accuracy after over the seeds that have it (`n` is the table's seed count).
    after: Option<MeanInterval>,
    /// After − before, paired by seed (mean and 95 % t interval).
    gain: Option<MeanInterval>,
    /// Seeds on which accuracy rose, those on which it rose by more than twice its paired
    /// standard error, and the seeds with both evals.
    improved: (usize, usize, usize),
    /// Mean over seeds of the reward accuracy over the last 10 % of steps.
    reward_accuracy: Option<f64>,
    versus: Option<Versus>,
}

/// The paired difference of a cell to its baseline partner over the seeds both have.
enum Versus {
    IsBaseline,
    NoCommonSeed,
    Diff(MeanInterval),
}

/// The seeds and accuracies after training of the runs of cell `name`.
fn after_of(outcomes: &[Outcome], name: &str) -> Vec<(u64, f64)> {
    outcomes
        .iter()
        .filter(|o| o.cell == name)
        .filter_map(|o| o.accuracy_after.map(|a| (o.seed, a)))
        .collect()
}

/// A cell against its partner under the baseline `b` (the same cell with the baseline's value):
/// the mean paired difference over the seeds both ran.
fn versus(cell: &Cell, mine: &[(u64, f64)], b: &Axis, outcomes: &[Outcome]) -> Versus {
    let partner: Cell = cell
        .iter()
        .map(|(k, v)| {
            let v = if *k == b.key { &b.values[0] } else { v };
            (k.clone(), v.clone())
        })
        .collect();
    if partner == *cell {
        return Versus::IsBaseline;
    }
    let theirs = after_of(outcomes, &cell_name(&partner));
    let diffs: Vec<f64> = mine
        .iter()
        .filter_map(|(s, a)| theirs.iter().find(|(t, _)| t == s).map(|(_, b)| a - b))
        .collect();
    match mean_interval(&diffs) {
        Some(diff) => Versus::Diff(diff),
        None => Versus::NoCommonSeed,
    }
}

/// One row per cell: accuracy after over its seeds, the gain, how many runs improved, the
/// reward accuracy at the end, and the difference to its baseline partner.
fn rows(grid: &[Cell], outcomes: &[Outcome], baseline: Option<&Axis>) -> Vec<Row> {
    grid.iter()
        .map(|cell| {
            let name = cell_name(cell);
            let mine = after_of(outcomes, &name);
            let values: Vec<f64> = mine.iter().map(|(_, a)| *a).collect();
            let versus = baseline.map(|b| versus(cell, &mine, b, outcomes));
            let runs: Vec<&Outcome> = outcomes.iter().filter(|o| o.cell == name).collect();
            let gains: Vec<f64> = runs
                .iter()
                .filter_map(|o| Some(o.accuracy_after? - o.accuracy_before?))
                .collect();
            let tails: Vec<f64> = runs.iter().filter_map(|o| o.tail_reward_accuracy).collect();
            Row {
                name,
                label: chart_label(cell),
                after: mean_interval(&values),
                gain: mean_interval(&gains),
                improved: (
                    gains.iter().filter(|g| **g > 0.0).count(),
                    runs.iter()
                        .filter(|o| matches!((o.change, o.change_se), (Some(d), Some(se)) if d > 2.0 * se))
                        .count(),
                    gains.len(),
                ),
                reward_accuracy: (!tails.is_empty())
                    .then(|| tails.iter().sum::<f64>() / tails.len() as f64),
                versus,
            }
        })
        .collect()
}

fn render(rows: &[Row], baseline: Option<&Axis>) -> String {
    let mut out = String::new();
    let head = match baseline {
        Some(b) => format!(
            " | paired difference to {}={} (95% t interval) |",
            b.key, b.values[0]
        ),
        None => " |".to_string(),
    };
    let _ = writeln!(
        out,
        "| cell | seeds | accuracy after (mean, 95% t interval over seeds) | gain over before | \
         seeds improved | reward accuracy (last 10% of steps){head}"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- |{}",
        if baseline.is_some() { " --- |" } else { "" }
    );
    for r in rows {
        let after = r
            .after
            .map_or("-".to_string(), |a| a.render(100.0, "%", false));
        let gain = r
            .gain
            .map_or("-".to_string(), |g| g.render(100.0, "", true));
        let improved = format!(
            "{}/{} ({} beyond 2 SE)",
            r.improved.0, r.improved.2, r.improved.1
        );
        let reward = r
            .reward_accuracy
            .map_or("-".to_string(), |a| format!("{a:.2}"));
        let versus = match &r.versus {
            None => String::new(),
            Some(Versus::IsBaseline) => " baseline |".to_string(),
            Some(Versus::NoCommonSeed) => " no common seed |".to_string(),
            Some(Versus::Diff(d)) => {
                let noise = if d.excludes_zero() {
                    ""
                } else if d.interval.is_none() {
                    ", not comparable with one seed"
                } else {
                    ", within noise"
                };
                let seeds = if d.n == 1 { "seed" } else { "seeds" };
                format!(
                    " {} over {} {seeds}{noise} |",
                    d.render(100.0, " points", true),
                    d.n
                )
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {after} | {gain} | {improved} | {reward} |{versus}",
            r.name,
            r.after.map_or(0, |a| a.n)
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) fn write_outputs(
    dir: &Path,
    grid: &[Cell],
    outcomes: &[Outcome],
    baseline: Option<&Axis>,
) -> Result<()> {
    let mut jsonl = String::new();
    let mut csv = String::from(
        "cell,seed,accuracy_before,accuracy_after,correct_after,total_after,run_dir\n",
    );
    let num = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let int = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for o in outcomes {
        jsonl.push_str(&serde_json::to_string(o)?);
        jsonl.push('\n');
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            csv_field(&o.cell),
            o.seed,
            num(o.accuracy_before),
            num(o.accuracy_after),
            int(o.correct_after),
            int(o.total_after),
            csv_field(&o.run_dir)
        );
    }
    write_atomic(&dir.join("sweep.jsonl"), jsonl.as_bytes())?;
    write_atomic(&dir.join("sweep.csv"), csv.as_bytes())?;
    let rows = rows(grid, outcomes, baseline);
    let table = render(&rows, baseline);
    write_atomic(&dir.join("sweep.md"), table.as_bytes())?;
    print!("{table}");
    let bars: Vec<Bar> = rows
        .iter()
        .filter_map(|r| {
            r.after.map(|a| Bar {
                label: r.label.clone(),
                value: 100.0 * a.mean,
                interval: a.interval.map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
            })
        })
        .collect();
    if !bars.is_empty() {
        bar_chart(
            "accuracy after (95% t interval over seeds)",
            "accuracy (%)",
            &bars,
        )?
        .save_png(&dir.join("sweep.png"))?;
    }
    eprintln!(
        "sweep: {} (sweep.jsonl, sweep.csv, sweep.md, sweep.png)",
        dir.display()
    );
    Ok(())
}
