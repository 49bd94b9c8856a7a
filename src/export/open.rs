//! Running an exported recipe: its embedded scripts are written to a content-keyed folder of the
//! cache and used in place of the recipe's script paths, and its model and data hashes are compared
//! with the local files before anything runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::fingerprint::{Fingerprint, fingerprints};
use super::table::{ExportTable, read_export_table};
use crate::error::user_error;
use crate::recipe::{self, Layered, Override, Recipe, RecipeInput};
use crate::store::{sha256_bytes, trainer_version};

/// An exported recipe being run.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The exported recipe file.
    pub file: PathBuf,
    pub table: ExportTable,
    /// The folder its scripts were written to (`scripts/`, `plugins/`).
    pub root: PathBuf,
}

/// Loads the recipe layers; when `--config` is an exported recipe, also writes its scripts to the
/// cache and points the recipe's script keys at them.
pub fn load_recipe(input: &RecipeInput) -> Result<(Layered, Option<Exported>)> {
    let layered = recipe::load(input)?;
    let Some(file) = &input.config else {
        return Ok((layered, None));
    };
    let Some(table) = read_export_table(file)? else {
        return Ok((layered, None));
    };
    let cache = layered.resolve()?.run.cache;
    let root = materialise(&table, &cache)?;
    let mut input = input.clone();
    input
        .overrides
        .extend(table.script_keys.iter().map(|(key, rel)| Override {
            source: format!("{} (embedded script)", file.display()),
            key: key.clone(),
            value: root.join(rel).display().to_string(),
        }));
    let layered = recipe::load(&input)?;
    let exported = Exported {
        file: file.clone(),
        table,
        root,
    };
    Ok((layered, Some(exported)))
}

impl Exported {
    /// A path whose folder holds the embedded `plugins/`, for hook lookup.
    pub fn plugins_near(&self) -> PathBuf {
        self.root.join("recipe.toml")
    }

    /// Refuses (exit 2) when the binary, an embedded script, or the model or data the recipe now
    /// names differ from what it was exported with; with `allow`, only warns.
    pub fn check_inputs(&self, recipe: &Recipe, allow: bool) -> Result<()> {
        let mut differences = Vec::new();
        let ours = trainer_version();
        if self.table.trainer_version != ours {
            differences.push(format!(
                "this is {ours}, the recipe was exported by {}",
                self.table.trainer_version
            ));
        }
        for s in &self.table.scripts {
            let now = sha256_bytes(s.text.as_bytes());
            if now != s.sha256 {
                differences.push(format!(
                    "embedded script {} has sha256 {now}, the recipe was exported with {}",
                    s.path, s.sha256
                ));
            }
        }
        let current = fingerprints(recipe)?;
        for then in &self.table.inputs {
            if let Some(now) = current.iter().find(|f| f.key == then.key)
                && now.sha256 != then.sha256
            {
                differences.push(describe(now, &then.sha256));
            }
        }
        if differences.is_empty() {
            return Ok(());
        }
        let message = format!("{}: {}", self.file.display(), differences.join("; "));
        if allow {
            tracing::warn!("{message}; running anyway (--allow-different-inputs)");
            return Ok(());
        }
        Err(user_error(format!(
            "{message} (pass --allow-different-inputs to run anyway)"
        )))
    }
}

fn describe(now: &Fingerprint, then: &str) -> String {
    let hash = if now.what == "built-in model" {
        "content key"
    } else {
        "sha256"
    };
    format!(
        "{} {} ({}) has {hash} {}, the recipe was exported with {then}",
        now.what, now.path, now.key, now.sha256
    )
}

/// Writes the embedded scripts to `cache/exported/<key>/` (once per content) and returns it.
fn materialise(table: &ExportTable, cache: &Path) -> Result<PathBuf> {
    let mut keyed = String::new();
    for s in &table.scripts {
        keyed.push_str(&s.path);
        keyed.push('\0');
        keyed.push_str(&s.text);
        keyed.push('\0');
    }
    let key = &sha256_bytes(keyed.as_bytes())[..16];
    let parent = cache.join("exported");
    let root = parent.join(key);
    if root.is_dir() {
        return Ok(root);
    }
    let tmp = parent.join(format!(".{key}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    for s in &table.scripts {
        let path = tmp.join(&s.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &s.text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &root) {
        // Another run wrote the same scripts first.
        std::fs::remove_dir_all(&tmp).ok();
        if !root.is_dir() {
            return Err(e)
                .with_context(|| format!("renaming {} to {}", tmp.display(), root.display()));
        }
    }
    Ok(root)
}
