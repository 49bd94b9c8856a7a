//! `trainer compare RUN...`: finished runs (or sweep folders) grouped by their full resolved
//! recipe less the seeds, the keys that differ shown as columns, accuracy with intervals over
//! seeds, duplicate seeds flagged, runs evaluated differently refused, and with `--baseline RUN`
//! the per-question paired difference to that run (bootstrap interval, McNemar p).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::CompareArgs;
use crate::error::user_error;
use crate::plot::{Bar, bar_chart};
use crate::run::identity::{self, SCRIPTS};
use crate::stats::{bootstrap_mean_interval, mcnemar_p, mean_interval};

/// One finished run as `compare` reads it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub seed: u64,
    /// Every recipe key (flattened, `section.key`) with its TOML value, plus the hash of every
    /// script the run used, less the seeds and bookkeeping keys ([`identity::Settings`]).
    pub settings: identity::Settings,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub seconds: f64,
}

/// Runs that share every setting.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's values of the keys shown as columns.
    pub columns: Vec<String>,
    pub runs: Vec<RunInfo>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        user_error(format!(
            "{}: {e} (not a finished run folder?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| user_error(format!("{}: {e}", path.display())))
}

/// Reads one run folder.
pub fn read_run(dir: &Path) -> Result<RunInfo> {
    let summary = read_json(&dir.join("summary.json"))?;
    let settings = identity::of_folder(dir)?;
    let acc = |which: &str| summary[which]["accuracy"].as_f64();
    Ok(RunInfo {
        dir: dir.to_path_buf(),
        seed: summary["seed"].as_u64().unwrap_or(0),
        settings,
        before: acc("eval_before"),
        after: acc("eval_after"),
        seconds: summary["total_seconds"].as_f64().unwrap_or(0.0),
    })
}

/// The run folders named: a run folder itself, or every run a sweep folder lists.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let listing = p.join("sweep.jsonl");
        if listing.is_file() {
            let text = std::fs::read_to_string(&listing)?;
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| user_error(format!("{}: {e}", listing.display())))?;
                if let Some(dir) = v["run_dir"].as_str() {
                    out.push(PathBuf::from(dir));
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Stops when two runs were evaluated differently (any `eval.*` key): their accuracies do not
/// measure the same thing.
fn check_same_eval(runs: &[RunInfo]) -> Result<()> {
    let first = &runs[0];
    for run in &runs[1..] {
        let keys: BTreeSet<&String> = first.settings.keys().chain(run.settings.keys()).collect();
        for key in keys.into_iter().filter(|k| k.starts_with("eval.")) {
            let (a, b) = (first.settings.get(key), run.settings.get(key));
            if a != b {
                return Err(user_error(format!(
                    "{} and {} were evaluated differently ({key} = {} and {}); their accuracies \
                     cannot be compared",
                    first.dir.display(),
                    run.dir.display(),
                    a.map_or("(unset)", String::as_str),
                    b.map_or("(unset)", String::as_str)
                )));
            }
        }
    }
    Ok(())
}

/// Groups the runs by every setting (or only by `by`, refusing runs of one group that differ in
/// any other setting); the columns are the keys whose values differ between groups.
pub fn group(runs: Vec<RunInfo>, by: &[String]) -> Result<(Vec<String>, Vec<Group>)> {
    let all_keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.settings.keys().cloned())
        .collect();
    for key in by {
        if !all_keys.contains(key) {
            return Err(user_error(format!(
                "--by {key}: not a recipe key of these runs"
            )));
        }
    }
    let differing: Vec<String> = all_keys
        .iter()
        .filter(|k| runs.iter().any(|r| setting(r, k) != setting(&runs[0], k)))
        .cloned()
        .collect();
    let columns = group_columns(&runs, &differing, by);
    let mut groups: BTreeMap<Vec<String>, Vec<RunInfo>> = BTreeMap::new();
    for run in runs {
        let key: Vec<String> = columns
            .iter()
            .map(|k| setting(&run, k).trim_matches('"').to_string())
            .collect();
        groups.entry(key).or_default().push(run);
    }
    check_groups(&groups, &differing, by)?;
    let groups = groups
        .into_iter()
        .map(|(columns, runs)| Group { columns, runs })
        .collect();
    Ok((columns, groups))
}

/// The recipe value of `key` in a run ("" where the run does not set it).
fn setting(run: &RunInfo, key: &str) -> String {
    run.settings.get(key).cloned().unwrap_or_default()
}

/// The columns that tell groups apart: `--by`, else the keys whose values differ between runs
/// (the scripts' hash only when the recipe keys alone do not tell the groups apart: a script
/// edited between runs).
fn group_columns(runs: &[RunInfo], differing: &[String], by: &[String]) -> Vec<String> {
    if !by.is_empty() {
        return by.to_vec();
    }
    let recipe_keys: Vec<String> = differing
        .iter()
        .filter(|k| *k != SCRIPTS)
        .cloned()
        .collect();
    let tuples = |keys: &[String]| -> BTreeSet<Vec<String>> {
        runs.iter()
            .map(|r| keys.iter().map(|k| setting(r, k)).collect())
            .collect()
    };
    if tuples(&recipe_keys).len() < tuples(differing).len() {
        differing.to_vec()
    } else {
        recipe_keys
    }
}

/// Every run of a group must agree on every key that differs between runs.
fn check_groups(
    groups: &BTreeMap<Vec<String>, Vec<RunInfo>>,
    differing: &[String],
    by: &[String],
) -> Result<()> {
    for members in groups.values() {
        for key in differing {
            let a = &members[0];
            if let Some(b) = members.iter().find(|r| setting(r, key) != setting(a, key)) {
                return Err(user_error(format!(
                    "--by {}: {} and {} fall in one group but differ in {key} ({} and {}); add it \
                     to --by or leave those runs out",
                    by.join(","),
                    a.dir.display(),
                    b.dir.display(),
                    setting(a, key),
                    setting(b, key)
                )));
            }
        }
    }
    Ok(())
}

/// Per-question correctness from `eval_after.jsonl`, by question id.
fn verdicts(dir: &Path) -> Result<BTreeMap<String, bool>> {
    let path = dir.join("eval_after.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        user_error(format!(
            "{}: {e} (--baseline needs each run's eval after)",
            path.display()
        ))
    })?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .map_err(|e| user_error(format!("{}: {e}", path.display())))?;
            Ok((
                v["id"].as_str().unwrap_or_default().to_string(),
                v["verdict"] == "correct",
            ))
        })
        .collect()
}

/// A group's paired difference to the baseline run, per question.
struct Paired {
    interval: (f64, f64, f64),
    gained: usize,
    lost: usize,
    p: f64,
}

/// The group's runs against the baseline on the questions both answered: the per-question
/// difference averaged over the group's runs, its 95 % bootstrap interval over questions, and
/// McNemar's exact p on the discordant pairs pooled over the runs.
fn paired(group: &Group, baseline: &BTreeMap<String, bool>) -> Result<Paired> {
    let runs: Vec<BTreeMap<String, bool>> = group
        .runs
        .iter()
        .map(|r| verdicts(&r.dir))
        .collect::<Result<_>>()?;
    let (mut gained, mut lost) = (0, 0);
    let mut diffs = Vec::new();
    for (id, base) in baseline {
        let mine: Vec<bool> = runs.iter().filter_map(|r| r.get(id).copied()).collect();
        if mine.len() != runs.len() {
            continue;
        }
        gained += mine.iter().filter(|m| **m && !base).count();
        lost += mine.iter().filter(|m| !**m && *base).count();
        let mean = mine.iter().filter(|m| **m).count() as f64 / mine.len() as f64;
        diffs.push(mean - f64::from(u8::from(*base)));
    }
    Ok(Paired {
        interval: bootstrap_mean_interval(&diffs, 2000, 1),
        gained,
        lost,
        p: mcnemar_p(gained, lost),
    })
}

fn pct_over_seeds(values: &[f64]) -> String {
    mean_interval(values).map_or("-".into(), |m| m.render(100.0, "%", false))
}

/// A group's seeds in order, flagged when one appears twice.
fn seeds_cell(g: &Group) -> String {
    let seeds: Vec<u64> = g.runs.iter().map(|r| r.seed).collect();
    let distinct: BTreeSet<u64> = seeds.iter().copied().collect();
    let mut text: Vec<String> = seeds.iter().map(u64::to_string).collect();
    text.sort();
    let dup = if distinct.len() < seeds.len() {
        " (duplicate seeds!)"
    } else {
        ""
    };
    format!("{}{dup}", text.join(","))
}

/// The paired-difference and McNemar cells of a group against the baseline.
fn versus_cell(g: &Group, base: &BTreeMap<String, bool>) -> Result<String> {
    let p = paired(g, base)?;
    Ok(format!(
        " {:+.1} points [{:+.1}, {:+.1}] ({} gained, {} lost) | {:.3} |",
        100.0 * p.interval.0,
        100.0 * p.interval.1,
        100.0 * p.interval.2,
        p.gained,
        p.lost,
        p.p
    ))
}

/// The table as printed.
fn render(
    columns: &[String],
    groups: &[Group],
    baseline: Option<&BTreeMap<String, bool>>,
) -> Result<String> {
    let mut out = String::new();
    let head: Vec<&str> = columns.iter().map(String::as_str).collect();
    let extra = if baseline.is_some() {
        " paired difference to the baseline (95% bootstrap) | McNemar p |"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "| {} | n | seeds | accuracy before | accuracy after (mean, 95% t interval) | wall time (s) |{extra}",
        if head.is_empty() {
            "runs".to_string()
        } else {
            head.join(" | ")
        }
    );
    let cols = head.len().max(1) + 5 + if baseline.is_some() { 2 } else { 0 };
    let _ = writeln!(out, "|{}", " --- |".repeat(cols));
    for g in groups {
        let before: Vec<f64> = g.runs.iter().filter_map(|r| r.before).collect();
        let after: Vec<f64> = g.runs.iter().filter_map(|r| r.after).collect();
        let secs: Vec<f64> = g.runs.iter().map(|r| r.seconds).collect();
        let cells = if g.columns.is_empty() {
            "all".to_string()
        } else {
            g.columns.join(" | ")
        };
        let versus = match baseline {
            Some(base) => versus_cell(g, base)?,
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| {cells} | {} | {} | {} | {} | {:.0} |{versus}",
            g.runs.len(),
            seeds_cell(g),
            pct_over_seeds(&before),
            pct_over_seeds(&after),
            mean_interval(&secs).map_or(0.0, |m| m.mean),
        );
    }
    Ok(out)
}

/// The `trainer compare` command: prints the table and writes the chart to `--out`.
pub fn compare(args: &CompareArgs) -> Result<()> {
    crate::store::check_output_file(&args.out, "--out")?;
    let dirs = expand(&args.runs)?;
    if dirs.is_empty() {
        return Err(user_error("trainer compare needs at least one run folder"));
    }
    let runs: Vec<RunInfo> = dirs.iter().map(|d| read_run(d)).collect::<Result<_>>()?;
    check_same_eval(&runs)?;
    let by: Vec<String> = args
        .by
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let (columns, groups) = group(runs, &by)?;
    for g in &groups {
        let seeds: BTreeSet<u64> = g.runs.iter().map(|r| r.seed).collect();
        if seeds.len() < g.runs.len() {
            tracing::warn!(
                "{} runs of one group share seeds ({}): they are repeats, not independent seeds",
                g.runs.len(),
                g.columns.join(", ")
            );
        }
    }
    let baseline = match &args.baseline {
        Some(dir) => Some(verdicts(dir)?),
        None => None,
    };
    print!("{}", render(&columns, &groups, baseline.as_ref())?);
    let bars: Vec<Bar> = groups
        .iter()
        .filter_map(|g| {
            let after: Vec<f64> = g.runs.iter().filter_map(|r| r.after).collect();
            let m = mean_interval(&after)?;
            Some(Bar {
                label: if g.columns.is_empty() {
                    "all".into()
                } else {
                    g.columns.join("\n")
                },
                value: 100.0 * m.mean,
                interval: m.interval.map(|(lo, hi)| (100.0 * lo, 100.0 * hi)),
            })
        })
        .collect();
    bar_chart(
        "accuracy after training (95% t interval over seeds)",
        "accuracy (%)",
        &bars,
    )?
    .save_png(&args.out)?;
    eprintln!("chart: {}", args.out.display());
    Ok(())
}
