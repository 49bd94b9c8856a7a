//! What makes two runs the same experiment: every resolved recipe setting less the seeds and the
//! keys that only say where a run wrote, plus the contents of every script it used. `compare`
//! groups finished runs by it; `sweep` checks a finished run it would skip against it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::manifest::read_manifest;
use crate::error::user_error;
use crate::recipe::Layered;
use crate::script::HookSet;
use crate::store::{Hasher, sha256_bytes};

/// Recipe keys that differ between the seeds of one experiment, or only say where it ran.
pub const NOT_THE_EXPERIMENT: [&str; 7] = [
    "run.seed",
    "sampling.seed",
    "run.out",
    "run.name",
    "run.cache",
    "train.checkpoint_every",
    "train.resume_every",
];

/// The setting that stands for the contents of every script a run used.
pub const SCRIPTS: &str = "scripts";

/// Every recipe key (flattened, `section.key`) with its TOML value, less [`NOT_THE_EXPERIMENT`]
/// and the `[sweep]` table, plus [`SCRIPTS`]: a short hash of every script's (path, sha256).
pub type Settings = BTreeMap<String, String>;

/// The settings of a recipe (as `recipe.toml` holds it) and its scripts (path → sha256).
pub fn settings(recipe_toml: &str, scripts: &BTreeMap<String, String>) -> Result<Settings> {
    let recipe: toml::Value = toml::from_str(recipe_toml)?;
    let mut out = BTreeMap::new();
    flatten("", &recipe, &mut out);
    out.retain(|k, _| !NOT_THE_EXPERIMENT.contains(&k.as_str()) && !k.starts_with("sweep."));
    let mut h = Hasher::default();
    for (path, sha) in scripts {
        h.update(path.as_bytes());
        h.update(sha.as_bytes());
    }
    out.insert(SCRIPTS.to_string(), h.hex()[..12].to_string());
    Ok(out)
}

/// The settings of the finished run in `dir` (its `recipe.toml` and `manifest.json`).
pub fn of_folder(dir: &Path) -> Result<Settings> {
    let path = dir.join("recipe.toml");
    let recipe = std::fs::read_to_string(&path)
        .map_err(|e| user_error(format!("{}: {e} (not a run folder?)", path.display())))?;
    let scripts = read_manifest(dir)?.scripts;
    settings(&recipe, &scripts).map_err(|e| user_error(format!("{}: {e}", path.display())))
}

/// The settings a run of a loaded recipe would have, without running it: `layered` as the run
/// would write it to `recipe.toml`, and the scripts its compiled hooks read.
pub fn of_recipe(layered: &Layered, hooks: &HookSet) -> Result<Settings> {
    let scripts = hooks
        .host
        .sources()
        .into_iter()
        .map(|(name, text)| (name, sha256_bytes(text.as_bytes())))
        .collect();
    settings(&layered.annotated_toml()?, &scripts)
}

/// The keys whose values differ, as `key = A (left) / B (right)`, in key order.
pub fn differences(left: &Settings, right: &Settings) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    let shown = |s: &Settings, k: &str| s.get(k).cloned().unwrap_or_else(|| "(unset)".into());
    keys.into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .map(|k| format!("{k} = {} / {}", shown(left, k), shown(right, k)))
        .collect()
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Settings) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripts(sha: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("plugins/loss/sft.rhai".to_string(), sha.to_string())])
    }

    #[test]
    fn seeds_and_output_places_are_not_the_experiment_but_settings_and_scripts_are() {
        let a = "[run]\nseed = 1\nout = \"a\"\n[train]\nlr = 5e-4\n";
        let b = "[run]\nseed = 2\nout = \"b\"\n[train]\nlr = 5e-4\n";
        let c = "[run]\nseed = 1\nout = \"a\"\n[train]\nlr = 1e-4\n";
        let same = settings(a, &scripts("x")).unwrap();
        assert_eq!(same, settings(b, &scripts("x")).unwrap());
        let other_lr = settings(c, &scripts("x")).unwrap();
        assert_eq!(
            differences(&same, &other_lr),
            vec!["train.lr = 0.0005 / 0.0001".to_string()]
        );
        let edited = settings(a, &scripts("y")).unwrap();
        assert_eq!(differences(&same, &edited).len(), 1);
        assert!(differences(&same, &edited)[0].starts_with("scripts = "));
    }
}
