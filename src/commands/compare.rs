//! `trainer compare RUN...`: a table of finished runs grouped by method and weighting (accuracy
//! after training, mean ± std over seeds, wall time) and a PNG bar chart of it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::error::user_error;
use crate::plot::{Bar, bar_chart};

/// What `compare` reads of a run's `summary.json`.
#[derive(Debug, Deserialize)]
struct Summary {
    hooks: BTreeMap<String, String>,
    weighting: String,
    seed: u64,
    eval_before: Option<Outcome>,
    eval_after: Option<Outcome>,
    total_seconds: f64,
}

#[derive(Debug, Deserialize)]
struct Outcome {
    accuracy: f64,
}

/// One (method, weighting) group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub method: String,
    pub weighting: String,
    pub seeds: Vec<u64>,
    pub before: Vec<f64>,
    pub after: Vec<f64>,
    pub seconds: Vec<f64>,
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Reads the runs and groups them.
pub fn collect(runs: &[PathBuf]) -> Result<Vec<Group>> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for dir in runs {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            user_error(format!(
                "{}: {e} (not a finished run folder?)",
                path.display()
            ))
        })?;
        let s: Summary = serde_json::from_str(&text)
            .map_err(|e| user_error(format!("{}: {e}", path.display())))?;
        let method = s
            .hooks
            .get("loss")
            .map(|l| stem(l))
            .unwrap_or_else(|| "?".into());
        let weight = s
            .hooks
            .get("weight")
            .map(|w| stem(w))
            .unwrap_or_else(|| "?".into());
        let weighting = if s.weighting == "wpo" {
            if weight == "uniform" {
                "wpo".to_string()
            } else {
                format!("{weight}+wpo")
            }
        } else {
            weight
        };
        let g = groups
            .entry((method.clone(), weighting.clone()))
            .or_insert_with(|| Group {
                method,
                weighting,
                seeds: vec![],
                before: vec![],
                after: vec![],
                seconds: vec![],
            });
        g.seeds.push(s.seed);
        if let Some(b) = s.eval_before {
            g.before.push(b.accuracy);
        }
        if let Some(a) = s.eval_after {
            g.after.push(a.accuracy);
        }
        g.seconds.push(s.total_seconds);
    }
    Ok(groups.into_values().collect())
}

/// The table as printed (and as pasted into the README).
pub fn render(groups: &[Group]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| method | weighting | seeds | accuracy before | accuracy after (mean ± std) | wall time (s) |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for g in groups {
        let (b, _) = mean_std(&g.before);
        let (a, sd) = mean_std(&g.after);
        let (t, _) = mean_std(&g.seconds);
        let seeds: Vec<String> = g.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1}% | {:.1}% ± {:.1} | {:.0} |",
            g.method,
            g.weighting,
            seeds.join(","),
            100.0 * b,
            100.0 * a,
            100.0 * sd,
            t
        );
    }
    out
}

/// A weighting name short enough to sit under a bar.
fn short(weighting: &str) -> String {
    weighting
        .replace("plug_and_play", "pnp")
        .replace("uniform", "unif")
}

/// The `trainer compare` command: prints the table and writes the chart to `out`.
pub fn compare(runs: &[PathBuf], out: &Path) -> Result<()> {
    crate::store::check_output_file(out, "--out")?;
    if runs.is_empty() {
        return Err(user_error("trainer compare needs at least one run folder"));
    }
    let groups = collect(runs)?;
    print!("{}", render(&groups));
    let bars: Vec<Bar> = groups
        .iter()
        .map(|g| {
            let (a, sd) = mean_std(&g.after);
            Bar {
                label: format!("{}\n{}", g.method, short(&g.weighting)),
                value: 100.0 * a,
                interval: (sd > 0.0).then_some((100.0 * (a - sd), 100.0 * (a + sd))),
            }
        })
        .collect();
    bar_chart(
        "accuracy after training (mean +- std over seeds)",
        "accuracy (%)",
        &bars,
    )
    .save_png(out)?;
    eprintln!("chart: {}", out.display());
    Ok(())
}
