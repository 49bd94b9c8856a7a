//! `trainer reproduce RUN`: re-runs a finished run from its own resolved recipe, with empty
//! caches, into `RUN/reproduce/`, and reports for every artifact whether the two runs wrote the
//! same bytes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::error::user_error;
use crate::recipe::RecipeInput;
use crate::run::{Manifest, RunRequest, Until, read_manifest};
use crate::store::{sha256_path, trainer_version};

/// The files compared, in pipeline order. `metrics.jsonl` and `eval.json` are left out: they
/// record timings.
pub const ARTIFACTS: [&str; 6] = [
    "samples.jsonl",
    "grades.jsonl",
    "pairs.jsonl",
    "eval_before.jsonl",
    "final/model.safetensors",
    "eval_after.jsonl",
];

/// One artifact of the original run and of the reproduction.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub original: String,
    pub reproduced: Option<String>,
}

impl Check {
    pub fn identical(&self) -> bool {
        self.reproduced.as_deref() == Some(self.original.as_str())
    }
}

/// Refuses to start when the binary is not what the run used, or (for a run folder without
/// `export.toml`, whose scripts are read from their paths) when a script changed.
fn check_inputs(manifest: &Manifest, scripts_from_files: bool) -> Result<()> {
    let ours = trainer_version();
    if manifest.trainer_version != ours {
        return Err(user_error(format!(
            "the run was made by {}, this is {ours}: reproduce it with that binary",
            manifest.trainer_version
        )));
    }
    if !scripts_from_files {
        return Ok(());
    }
    for (script, recorded) in &manifest.scripts {
        let now = sha256_path(Path::new(script))
            .with_context(|| format!("script {script} used by the run"))?;
        if &now != recorded {
            return Err(user_error(format!(
                "script {script} changed since the run (sha256 {recorded} then, {now} now)"
            )));
        }
    }
    Ok(())
}

/// The hashes of every artifact the original run wrote, beside the reproduction's.
pub fn compare(original: &Path, reproduced: &Path) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    // A run of several rounds keeps each round's files in round-k/ (the last round's model and
    // eval at the top).
    let mut names: Vec<String> = ARTIFACTS.iter().map(|n| n.to_string()).collect();
    for round in 1.. {
        let dir = format!("round-{round}");
        if !original.join(&dir).is_dir() {
            break;
        }
        names.extend(ARTIFACTS.iter().map(|n| format!("{dir}/{n}")));
    }
    for name in &names {
        let path = original.join(name);
        if !path.is_file() {
            continue;
        }
        let again = reproduced.join(name);
        checks.push(Check {
            name: name.to_string(),
            original: sha256_path(&path)?,
            reproduced: if again.is_file() {
                Some(sha256_path(&again)?)
            } else {
                None
            },
        });
    }
    Ok(checks)
}

/// Prints one line per artifact, the original's hash and the reproduction's; returns how many
/// are identical.
fn print_checks(checks: &[Check]) -> usize {
    let mut same = 0;
    for c in checks {
        let verdict = if c.identical() {
            "identical"
        } else {
            "DIFFERENT"
        };
        let again = c.reproduced.as_deref().unwrap_or("(not written)");
        println!(
            "{:<24} {verdict:<10} {}  {}",
            c.name,
            &c.original[..16],
            &again[..16.min(again.len())]
        );
        same += usize::from(c.identical());
    }
    same
}

/// The `trainer reproduce` command: exit 0 when every artifact is identical, 1 otherwise.
pub fn reproduce(run_dir: &Path) -> Result<()> {
    let started = Instant::now();
    let manifest = read_manifest(run_dir)?;
    // A run folder's export.toml embeds every script and names inputs by absolute path, so it
    // reproduces from any directory, whatever became of the script files; older run folders
    // have only recipe.toml.
    let export = run_dir.join(crate::run::EXPORT_FILE);
    let from_export = export.is_file();
    check_inputs(&manifest, !from_export)?;
    let recipe = if from_export {
        export
    } else {
        run_dir.join("recipe.toml")
    };
    if !recipe.is_file() {
        return Err(user_error(format!(
            "{}: missing (not a run folder?)",
            recipe.display()
        )));
    }
    // The reproduction's run folder and its own empty cache (so the warm start, samples and
    // every pass are computed again, not read back), side by side.
    let base: PathBuf = run_dir.join("reproduce");
    if base.exists() {
        std::fs::remove_dir_all(&base).with_context(|| format!("removing {}", base.display()))?;
    }
    let out = base.join("run");
    let cache = toml::Value::String(base.join("cache").display().to_string());
    let request = RunRequest {
        recipe: RecipeInput {
            config: Some(recipe),
            sets: vec![format!("run.cache={cache}")],
            out: Some(out.clone()),
            ..RecipeInput::default()
        },
        allow_different_inputs: false,
        force: false,
    };
    crate::run::run(&request, Until::All).context("re-running the recipe")?;
    let checks = compare(run_dir, &out)?;
    let same = print_checks(&checks);
    println!(
        "{same} of {} artifacts identical; reproduction in {} ({:.0} s)",
        checks.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if same != checks.len() {
        anyhow::bail!("{} artifacts differ", checks.len() - same);
    }
    Ok(())
}
