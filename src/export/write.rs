//! `trainer recipe --export F.toml`: the resolved recipe as one self-contained file, with the
//! text of every script its hooks use and the content hashes of its model and data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::fingerprint::{HUB_MODEL, fingerprints};
use super::open::load_recipe;
use super::table::{EXPORT_FORMAT, ExportTable, ExportedInput, ExportedScript};
use crate::error::user_error;
use crate::recipe::{EXPORT_TABLE, HookSource, PairRule, Recipe, RecipeInput, ScriptChoice};
use crate::script::HookSet;
use crate::script::ScriptHost;
use crate::store::{sha256_bytes, trainer_version, write_atomic};

const HEADER: &str = "\
# An exported recipe (`trainer recipe --export`): the resolved recipe, plus [export] with the text
# of every script it uses and the content hashes of the model and data it was exported with.
# Run it with `trainer --config THIS_FILE`; a model or data file whose hash differs stops the run
# (exit 2) unless --allow-different-inputs is given.

";

/// Writes the export of the recipe `input` describes to `out` and returns what it holds, in words.
pub fn write_export(input: &RecipeInput, out: &Path) -> Result<String> {
    export_to(input, out, false)
}

/// The export a run folder keeps (`export.toml`): as [`write_export`], with relative model and
/// data paths made absolute, so that `trainer reproduce` works from any directory.
pub fn write_run_export(input: &RecipeInput, out: &Path) -> Result<String> {
    export_to(input, out, true)
}

fn export_to(input: &RecipeInput, out: &Path, absolute: bool) -> Result<String> {
    let (layered, exported) = load_recipe(input)?;
    let recipe = layered.resolve()?;
    let near = exported.as_ref().map(|e| e.plugins_near());
    let hooks = HookSet::load_near(&recipe, near.as_deref())?;
    let scripts = exported_scripts(&hooks.host, &recipe)?;
    let script_keys = script_keys(&hooks.host, &recipe, &scripts)?;
    let inputs: Vec<ExportedInput> = fingerprints(&recipe)?
        .into_iter()
        .map(|f| ExportedInput {
            key: f.key,
            what: f.what,
            path: f.path,
            sha256: f.sha256,
        })
        .collect();
    let mut table = match toml::Value::try_from(&layered.raw)? {
        toml::Value::Table(t) => t,
        _ => anyhow::bail!("the recipe does not serialize to a TOML table"),
    };
    for (key, rel) in &script_keys {
        set_key(&mut table, key, rel.clone())?;
    }
    set_key(&mut table, "run.out", String::new())?;
    if absolute {
        for input in &inputs {
            let path = Path::new(&input.path);
            if input.what == HUB_MODEL {
                set_key(&mut table, &input.key, input.path.clone())?;
            } else if path.is_relative()
                && !input.path.starts_with("builtin:")
                && let Ok(full) = path.canonicalize()
            {
                set_key(&mut table, &input.key, full.display().to_string())?;
            }
        }
    }
    let summary = format!(
        "{}: {} scripts, inputs {}",
        out.display(),
        scripts.len(),
        inputs
            .iter()
            .map(|i| format!("{} ({})", i.key, &i.sha256[..12.min(i.sha256.len())]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let export = ExportTable {
        format: EXPORT_FORMAT,
        trainer_version: trainer_version(),
        script_keys,
        inputs,
        scripts,
    };
    table.insert(EXPORT_TABLE.into(), toml::Value::try_from(&export)?);
    let text = format!("{HEADER}{}", toml::to_string_pretty(&table)?);
    write_atomic(out, text.as_bytes())
        .with_context(|| format!("writing the exported recipe {}", out.display()))?;
    Ok(summary)
}

/// Every script the hooks compiled or imported, at its path below the folder it will be written to.
fn exported_scripts(host: &ScriptHost, recipe: &Recipe) -> Result<Vec<ExportedScript>> {
    let main = main_folder(recipe);
    let mut out: Vec<ExportedScript> = Vec::new();
    for (name, text) in host.sources() {
        let path = relative_path(host, main.as_deref(), &name);
        let sha256 = sha256_bytes(text.as_bytes());
        if let Some(other) = out.iter().find(|s| s.path == path) {
            if other.sha256 != sha256 {
                return Err(user_error(format!(
                    "cannot export: two different scripts would both be written to {path} (one is \
                     {name}); give them different file names"
                )));
            }
            continue;
        }
        out.push(ExportedScript { path, sha256, text });
    }
    Ok(out)
}

/// The folder of the experiment script, canonical, if there is one.
fn main_folder(recipe: &Recipe) -> Option<PathBuf> {
    match &recipe.run.script {
        ScriptChoice::File(p) => p.canonicalize().ok()?.parent().map(Path::to_path_buf),
        ScriptChoice::None => None,
    }
}

/// `plugins/<path below plugins>` for a plugin; `scripts/<path below the experiment script's
/// folder>` for a script there; `scripts/<file name>` for any other.
fn relative_path(host: &ScriptHost, main: Option<&Path>, name: &str) -> String {
    if let Some(p) = host.plugin_path(name) {
        return format!("plugins/{p}");
    }
    let file = Path::new(name);
    let canon = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let rel = main
        .and_then(|m| canon.strip_prefix(m).ok())
        .map(Path::to_path_buf)
        .or_else(|| file.file_name().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("script.rhai"));
    format!("scripts/{}", rel.to_string_lossy().replace('\\', "/"))
}

/// The recipe keys that name a script file the hooks used, with that script's exported path.
fn script_keys(
    host: &ScriptHost,
    recipe: &Recipe,
    scripts: &[ExportedScript],
) -> Result<BTreeMap<String, String>> {
    let file_of = |h: &HookSource| match h {
        HookSource::File(p) => Some(p.clone()),
        HookSource::Plugin(_) => None,
    };
    let candidates = [
        (
            "run.script",
            match &recipe.run.script {
                ScriptChoice::File(p) => Some(p.clone()),
                ScriptChoice::None => None,
            },
        ),
        ("grade.grader", file_of(&recipe.grade.grader)),
        ("weight.scheme", file_of(&recipe.weight.scheme)),
        (
            "pairs.rule",
            match &recipe.pairs.rule {
                PairRule::Hook(h) => file_of(h),
                PairRule::MostFrequentWrong => None,
            },
        ),
        ("loss.name", file_of(&recipe.loss.hook)),
    ];
    let main = main_folder(recipe);
    let mut out = BTreeMap::new();
    for (key, file) in candidates {
        let Some(file) = file else { continue };
        let name = file.display().to_string();
        let rel = relative_path(host, main.as_deref(), &name);
        // A hook file the experiment script overrides is never compiled; its key stays as it is.
        if scripts.iter().any(|s| s.path == rel) {
            out.insert(key.to_string(), rel);
        }
    }
    Ok(out)
}

/// Sets `section.key` of a recipe table to a string.
fn set_key(table: &mut toml::Table, key: &str, value: String) -> Result<()> {
    let (section, name) = key
        .split_once('.')
        .with_context(|| format!("not a recipe key: {key}"))?;
    let section = table
        .get_mut(section)
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("the recipe has no [{section}]"))?;
    section.insert(name.to_string(), toml::Value::String(value));
    Ok(())
}
