//! The `[export]` table of an exported recipe (serde mirror, unknown keys rejected) and reading
//! it from a recipe file.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::user_error;
use crate::recipe::{EXPORT_TABLE, toml_error};

/// The format of the `[export]` table this binary writes and reads.
pub const EXPORT_FORMAT: u32 = 1;

/// `[export]`: what the recipe was exported with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTable {
    pub format: u32,
    pub trainer_version: String,
    /// Recipe keys that name an embedded script, and its path among `scripts`.
    pub script_keys: BTreeMap<String, String>,
    /// The model and data the recipe was exported with.
    pub inputs: Vec<ExportedInput>,
    /// Every script the recipe's hooks used, with the plugins they import.
    pub scripts: Vec<ExportedScript>,
}

/// One model or data input and its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedInput {
    pub key: String,
    pub what: String,
    pub path: String,
    pub sha256: String,
}

/// One embedded script: its path below the folder the scripts are written to
/// (`scripts/...` or `plugins/...`), its sha256 and its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedScript {
    pub path: String,
    pub sha256: String,
    pub text: String,
}

/// The `[export]` table of the recipe file at `path`, or `None` when it has none.
pub fn read_export_table(path: &Path) -> Result<Option<ExportTable>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("--config {}: cannot read: {e}", path.display())))?;
    let mut table: toml::Table = text.parse().map_err(|e| toml_error(path, &text, &e))?;
    let Some(value) = table.remove(EXPORT_TABLE) else {
        return Ok(None);
    };
    let export: ExportTable = value
        .try_into()
        .map_err(|e| user_error(format!("{}: [export]: {e}", path.display())))?;
    if export.format != EXPORT_FORMAT {
        return Err(user_error(format!(
            "{}: [export] format = {} is not one this binary reads ({EXPORT_FORMAT})",
            path.display(),
            export.format
        )));
    }
    for s in &export.scripts {
        check_script_path(path, &s.path)?;
    }
    for (key, script) in &export.script_keys {
        if !export.scripts.iter().any(|s| &s.path == script) {
            return Err(user_error(format!(
                "{}: [export.script_keys] {key} = \"{script}\" is not one of the embedded scripts",
                path.display()
            )));
        }
    }
    Ok(Some(export))
}

/// An embedded script's path must stay below the folder it is written to.
fn check_script_path(file: &Path, script: &str) -> Result<()> {
    let p = Path::new(script);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    let top = p
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy());
    let known_top = matches!(top.as_deref(), Some("scripts" | "plugins"));
    if plain && known_top && script.ends_with(".rhai") {
        Ok(())
    } else {
        Err(user_error(format!(
            "{}: [[export.scripts]] path = \"{script}\": must be a relative path under scripts/ or \
             plugins/ ending in .rhai",
            file.display()
        )))
    }
}
