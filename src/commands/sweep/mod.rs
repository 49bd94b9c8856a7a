//! `trainer sweep`: every cell of a grid of recipe values × every seed, run one after another with
//! shared caches (a changed loss never resamples), resumable (finished runs are skipped, an
//! interrupted one resumes), summarised per cell with intervals over seeds and paired differences
//! to a baseline cell.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::SweepArgs;
use crate::error::user_error;
use crate::recipe::{self, RecipeInput};
use crate::run::identity::{self, Settings};
use crate::run::{RunRequest, Until};
use crate::script::{HookKind, HookSet};

mod table;
use table::write_outputs;

/// One axis of the grid: a recipe key and its values (TOML, bare words are strings).
#[derive(Debug, Clone)]
struct Axis {
    key: String,
    values: Vec<String>,
}

/// One cell: a value per axis.
type Cell = Vec<(String, String)>;

/// One finished run of the sweep, as `sweep.jsonl` holds it.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    cell: String,
    seed: u64,
    run_dir: String,
    accuracy_before: Option<f64>,
    accuracy_after: Option<f64>,
    correct_after: Option<u64>,
    total_after: Option<u64>,
    /// Mean reward accuracy over the last 10 % of the training steps.
    tail_reward_accuracy: Option<f64>,
    loss_spikes: Option<u64>,
    /// After − before paired per question, and its standard error.
    change: Option<f64>,
    change_se: Option<f64>,
}

/// `--grid KEY=V1,V2`.
fn parse_axis(arg: &str) -> Result<Axis> {
    let Some((key, list)) = arg.split_once('=') else {
        return Err(user_error(format!(
            "--grid {arg}: expected KEY=V1,V2,..., e.g. --grid loss.name=dpo,ipo"
        )));
    };
    let values: Vec<String> = list.split(',').map(|v| v.trim().to_string()).collect();
    if key.trim().is_empty() || values.iter().any(String::is_empty) {
        return Err(user_error(format!(
            "--grid {arg}: needs a key and a non-empty list of values"
        )));
    }
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

/// `--seeds 1..5` (inclusive) or `--seeds 1,2,3`.
fn parse_seeds(arg: &str) -> Result<Vec<u64>> {
    let bad = || user_error(format!("--seeds {arg}: expected A..B or a list like 1,2,3"));
    let seeds: Vec<u64> = match arg.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            (a..=b).collect()
        }
        None => arg
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect::<Result<_>>()?,
    };
    if seeds.is_empty() {
        return Err(bad());
    }
    Ok(seeds)
}

fn cells(axes: &[Axis]) -> Vec<Cell> {
    let mut out: Vec<Cell> = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|cell| {
                axis.values.iter().map(move |v| {
                    let mut c = cell.clone();
                    c.push((axis.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

fn cell_name(cell: &Cell) -> String {
    let parts: Vec<String> = cell.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "base".to_string()
    } else {
        parts.join(" ")
    }
}

/// `dpo\nuniform` for a cell `loss.name=dpo weight.scheme=uniform`: values only, the last axis on
/// the second line, so that bars of one value of the last axis share a colour.
fn chart_label(cell: &Cell) -> String {
    let values: Vec<&str> = cell.iter().map(|(_, v)| v.as_str()).collect();
    match values.split_last() {
        None => "base".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{}\n{last}", rest.join(" ")),
    }
}

/// A folder name for a cell: `loss.name-dpo__weight.scheme-uniform`.
fn cell_dir(cell: &Cell) -> String {
    let name: String = cell
        .iter()
        .map(|(k, v)| format!("{k}-{v}"))
        .collect::<Vec<_>>()
        .join("__");
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "base".into() } else { name }
}

/// The recipe layers of one run: the user's `--set`s, then the cell's values, then the seed.
fn input(args: &SweepArgs, cell: &Cell, seed: u64, out: PathBuf) -> RecipeInput {
    let mut sets = args.recipe.set.clone();
    sets.extend(cell.iter().map(|(k, v)| format!("{k}={v}")));
    sets.push(format!("run.seed={seed}"));
    sets.push(format!("sampling.seed={seed}"));
    RecipeInput {
        config: args.recipe.config.clone(),
        sets,
        script: args.script.clone(),
        out: Some(out),
        ..RecipeInput::default()
    }
}

/// The grid, the seeds and the baseline: from the flags, or else from the recipe's `[sweep]`.
struct Plan {
    axes: Vec<Axis>,
    seeds: Vec<u64>,
    baseline: Option<Axis>,
}

fn plan(args: &SweepArgs) -> Result<Plan> {
    let base = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        ..RecipeInput::default()
    };
    let table = recipe::load(&base)?.raw.sweep;
    let axes: Vec<Axis> = if args.grid.is_empty() {
        table
            .grid
            .iter()
            .map(|(key, values)| axis_from_table(key, values))
            .collect::<Result<_>>()?
    } else {
        args.grid
            .iter()
            .map(|g| parse_axis(g))
            .collect::<Result<_>>()?
    };
    if axes.is_empty() {
        return Err(user_error(
            "no grid: give --grid KEY=V1,V2 (repeatable) or a [sweep.grid] table in --config",
        ));
    }
    let seeds = parse_seeds(args.seeds.as_deref().unwrap_or(&table.seeds))?;
    let baseline = match (&args.baseline, table.baseline.trim()) {
        (Some(b), _) => Some(parse_axis(b)?),
        (None, "") => None,
        (None, b) => Some(parse_axis(b).map_err(|_| {
            user_error(format!(
                "recipe key `sweep.baseline` = {b:?}: expected KEY=VALUE, e.g. weight.scheme=uniform"
            ))
        })?),
    };
    Ok(Plan {
        axes,
        seeds,
        baseline,
    })
}

/// One `[sweep.grid]` entry: `"loss.name" = ["dpo", "ipo"]` (strings as bare words, other
/// values as TOML).
fn axis_from_table(key: &str, values: &[toml::Value]) -> Result<Axis> {
    if values.is_empty() {
        return Err(user_error(format!(
            "recipe key `sweep.grid.\"{key}\"`: needs a non-empty list of values"
        )));
    }
    let values = values
        .iter()
        .map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

/// Runs the sweep and writes its summary.
pub fn sweep(args: &SweepArgs) -> Result<()> {
    let plan = plan(args)?;
    let (axes, seeds, baseline) = (plan.axes, plan.seeds, plan.baseline);
    let grid = cells(&axes);
    if let Some(b) = &baseline
        && !axes
            .iter()
            .any(|a| a.key == b.key && a.values.contains(&b.values[0]))
    {
        return Err(user_error(format!(
            "--baseline {}={}: not a value of any --grid axis",
            b.key, b.values[0]
        )));
    }
    let quantized = check_cells(args, &axes, &grid, &seeds)?;
    // The cells run in this process: the pool is sized once, for all of them.
    crate::threads::size_elementwise_pool(quantized);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| user_error(format!("--out {}: {e}", args.out.display())))?;
    let total = grid.len() * seeds.len();
    let mut outcomes = Vec::with_capacity(total);
    for (i, cell) in grid.iter().enumerate() {
        for (j, &seed) in seeds.iter().enumerate() {
            let dir = args.out.join(cell_dir(cell)).join(format!("seed-{seed}"));
            let n = i * seeds.len() + j + 1;
            if finished(&dir) {
                tracing::info!(
                    "sweep run {n}/{total} ({}, seed {seed}): finished, skipped",
                    cell_name(cell)
                );
            } else {
                tracing::info!("sweep run {n}/{total}: {}, seed {seed}", cell_name(cell));
                let request = RunRequest {
                    recipe: input(args, cell, seed, dir.clone()),
                    ..RunRequest::default()
                };
                crate::run::run(&request, Until::All)
                    .with_context(|| format!("sweep run {}, seed {seed}", cell_name(cell)))?;
            }
            outcomes.push(outcome(&dir, cell, seed)?);
        }
    }
    write_outputs(&args.out, &grid, &outcomes, baseline.as_ref())
}

/// Every cell must resolve and compile its hooks (a bad plugin name stops here) before any run
/// starts, no axis may be a key the script overrides with a hook of its own, and a finished run
/// the sweep would skip must be a run of this cell. Returns whether any cell samples from
/// quantized weights.
fn check_cells(args: &SweepArgs, axes: &[Axis], grid: &[Cell], seeds: &[u64]) -> Result<bool> {
    let mut quantized = false;
    for cell in grid {
        let probe = input(args, cell, seeds[0], args.out.join("check"));
        let layered =
            recipe::load(&probe).with_context(|| format!("sweep cell {}", cell_name(cell)))?;
        let recipe = layered
            .resolve()
            .with_context(|| format!("sweep cell {}", cell_name(cell)))?;
        quantized |= recipe.sampling.quantized;
        let hooks = HookSet::load(&recipe)?;
        check_finished_runs(
            &args.out,
            cell,
            seeds,
            &identity::of_recipe(&layered, &hooks)?,
        )?;
        for kind in HookKind::ALL {
            if hooks.from_script(kind) && axes.iter().any(|a| a.key == kind.recipe_key()) {
                return Err(user_error(format!(
                    "--grid {}: the script defines fn {}, which takes the place of {}; this axis \
                     would change nothing (drop --script, or the hook from the script)",
                    kind.recipe_key(),
                    kind.signature(),
                    kind.recipe_key()
                )));
            }
        }
    }
    Ok(quantized)
}

/// A run folder holding a finished run.
fn finished(dir: &Path) -> bool {
    dir.join("summary.json").is_file() && !dir.join("in_progress").exists()
}

/// Stops when a finished run in `out` that the sweep would skip is not a run of `cell`: another
/// `--set`, recipe or script made it, and its accuracy would be reported as this cell's.
fn check_finished_runs(out: &Path, cell: &Cell, seeds: &[u64], want: &Settings) -> Result<()> {
    for &seed in seeds {
        let dir = out.join(cell_dir(cell)).join(format!("seed-{seed}"));
        if !finished(&dir) {
            continue;
        }
        let differ = identity::differences(&identity::of_folder(&dir)?, want);
        let ran_seed = summary(&dir)?["seed"].as_u64().unwrap_or_default();
        if differ.is_empty() && ran_seed == seed {
            continue;
        }
        let what = if differ.is_empty() {
            format!("it ran with run.seed = {ran_seed}")
        } else {
            format!(
                "its recipe differs from this sweep's (there / here): {}",
                differ.join("; ")
            )
        };
        return Err(user_error(format!(
            "--out {}: {} holds a finished run that is not sweep cell {}, seed {seed}: {what}; \
             choose another --out, or delete that folder to run it again",
            out.display(),
            dir.display(),
            cell_name(cell)
        )));
    }
    Ok(())
}

/// The `summary.json` of a finished run.
fn summary(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("summary.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

fn outcome(dir: &Path, cell: &Cell, seed: u64) -> Result<Outcome> {
    let s = summary(dir)?;
    let acc = |which: &str| s[which]["accuracy"].as_f64();
    Ok(Outcome {
        cell: cell_name(cell),
        seed,
        run_dir: dir.display().to_string(),
        accuracy_before: acc("eval_before"),
        accuracy_after: acc("eval_after"),
        correct_after: s["eval_after"]["correct"].as_u64(),
        total_after: s["eval_after"]["total"].as_u64(),
        tail_reward_accuracy: s["tail_reward_accuracy"].as_f64(),
        loss_spikes: s["loss_spikes"].as_u64(),
        change: s["change"]["diff"].as_f64(),
        change_se: s["change"]["se"].as_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_specs_and_seed_ranges_parse_or_say_what_is_wrong() {
        let a = parse_axis("loss.name=dpo, ipo").unwrap();
        assert_eq!(
            (a.key.as_str(), a.values.clone()),
            ("loss.name", vec!["dpo".to_string(), "ipo".to_string()])
        );
        assert!(parse_axis("loss.name=").is_err());
        assert!(parse_axis("loss.name").is_err());
        assert!(parse_axis("loss.name=dpo,,ipo").is_err());
        assert_eq!(parse_seeds("1..3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("4, 7").unwrap(), vec![4, 7]);
        assert!(parse_seeds("3..1").is_err());
        assert!(parse_seeds("a").is_err());
    }

    #[test]
    fn cells_are_the_cartesian_product_in_grid_order() {
        let axes = [
            parse_axis("a.x=1,2").unwrap(),
            parse_axis("b.y=p,q,r").unwrap(),
        ];
        let names: Vec<String> = cells(&axes).iter().map(cell_name).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names[0], "a.x=1 b.y=p");
        assert_eq!(names[5], "a.x=2 b.y=r");
        assert_eq!(cell_dir(&cells(&axes)[1]), "a.x-1__b.y-q");
    }
}
