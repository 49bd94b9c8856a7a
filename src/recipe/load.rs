//! Merges the recipe layers with figment (defaults < `--config` < `TRAINER_*` env < `--set`) and
//! turns figment's errors into messages that name the key and where it came from.

use std::path::{Path, PathBuf};

use anyhow::Result;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::schema::RawRecipe;
use crate::error::user_error;

/// The built-in defaults: `configs/default.toml`, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");

/// Prefix of the environment variables that override recipe keys (`TRAINER_TRAIN__LR`).
pub const ENV_PREFIX: &str = "TRAINER_";

/// The table of an exported recipe (`trainer recipe --export`) that is not part of the recipe: it
/// is left out of the merge and read by `crate::export`.
pub const EXPORT_TABLE: &str = "export";

/// What the command line says about the recipe.
#[derive(Debug, Clone, Default)]
pub struct RecipeInput {
    pub config: Option<PathBuf>,
    pub sets: Vec<String>,
    pub script: Option<PathBuf>,
    pub out: Option<PathBuf>,
    /// Values the program sets right above `--config` (the scripts of an exported recipe, once
    /// written to disk), each with the name `trainer recipe` shows as its source.
    pub overrides: Vec<Override>,
    /// Values a command's own flags set (`--device`, `train --pairs`), right above `--set`.
    pub flags: Vec<Override>,
}

/// One recipe value set by the program or a command's flag, with the source name shown for it.
#[derive(Debug, Clone)]
pub struct Override {
    pub source: String,
    pub key: String,
    pub value: String,
}

/// The merged layers, before validation; keeps the figment to say where each value came from.
pub struct Layered {
    pub raw: RawRecipe,
    pub figment: Figment,
}

/// One named layer (the defaults, or one `--set`), so that `trainer recipe` can name it.
struct Layer {
    name: String,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::from("recipe layer", Source::Custom(self.name.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Merges every layer and deserializes the result.
pub fn load(input: &RecipeInput) -> Result<Layered> {
    let figment = build_figment(input)?;
    match figment.extract::<RawRecipe>() {
        Ok(raw) => Ok(Layered { raw, figment }),
        Err(err) => Err(explain(&figment, err)),
    }
}

/// The built-in defaults alone (no file, environment or flag), resolved: the one place the
/// program's default values come from.
pub fn defaults() -> Result<super::Recipe> {
    let figment = defaults_figment()?;
    match figment.extract::<RawRecipe>() {
        Ok(raw) => Layered { raw, figment }.resolve(),
        Err(err) => Err(explain(&figment, err)),
    }
}

fn defaults_figment() -> Result<Figment> {
    let defaults = Toml::string(DEFAULT_TOML)
        .data()
        .map_err(|e| anyhow::anyhow!("the built-in default recipe does not parse: {e}"))?;
    let defaults = defaults.get(&Profile::Default).cloned().unwrap_or_default();
    Ok(Figment::from(Layer {
        name: "default".into(),
        dict: defaults,
    }))
}

fn build_figment(input: &RecipeInput) -> Result<Figment> {
    let mut figment = defaults_figment()?;
    if let Some(path) = &input.config {
        let mut table = check_config_file(path)?;
        if table.remove(EXPORT_TABLE).is_some() {
            figment = figment.merge(table_layer(path, &table)?);
        } else {
            figment = figment.merge(Toml::file_exact(path));
        }
    }
    for o in &input.overrides {
        figment = figment.merge(flag_layer(&o.source, &o.key, Value::from(o.value.clone()))?);
    }
    for layer in env_layers()? {
        figment = figment.merge(layer);
    }
    for set in &input.sets {
        figment = figment.merge(parse_set(set)?);
    }
    for f in &input.flags {
        figment = figment.merge(flag_layer(&f.source, &f.key, Value::from(f.value.clone()))?);
    }
    if let Some(script) = &input.script {
        let value = Value::from(script.to_string_lossy().into_owned());
        figment = figment.merge(flag_layer("--script", "run.script", value)?);
    }
    if let Some(out) = &input.out {
        let value = Value::from(out.to_string_lossy().into_owned());
        figment = figment.merge(flag_layer("--out", "run.out", value)?);
    }
    Ok(figment)
}

/// A config file's table as a layer named after the file (used when its `[export]` table is left out).
fn table_layer(path: &Path, table: &toml::Table) -> Result<Layer> {
    let text = toml::to_string(table)?;
    let data = Toml::string(&text)
        .data()
        .map_err(|e| user_error(format!("{}: {e}", path.display())))?;
    Ok(Layer {
        name: path.display().to_string(),
        dict: data.get(&Profile::Default).cloned().unwrap_or_default(),
    })
}

/// Checks that `path` is a readable TOML file and returns its table.
fn check_config_file(path: &Path) -> Result<toml::Table> {
    if !path.is_file() {
        return Err(user_error(format!(
            "--config {}: {}",
            path.display(),
            crate::error::not_a_file(path)
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("--config {}: cannot read: {e}", path.display())))?;
    match text.parse::<toml::Table>() {
        Ok(table) => Ok(table),
        Err(e) => Err(toml_error(path, &text, &e)),
    }
}

/// A TOML parse error as a user error naming `path:line:column`.
pub fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let place = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{}:{line}:{col}", path.display())
        }
        None => path.display().to_string(),
    };
    user_error(format!("{place}: invalid TOML: {}", e.message().trim_end()))
}

/// One layer per `TRAINER_*` variable, in name order: `TRAINER_TRAIN__LR=1e-6` sets `train.lr`.
/// Values are read as TOML, like `--set`.
fn env_layers() -> Result<Vec<Layer>> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
        .collect();
    vars.sort();
    vars.into_iter()
        .map(|(name, text)| {
            let key = name[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            if key.split('.').any(str::is_empty) {
                return Err(user_error(format!(
                    "environment variable {name}: not a recipe key (use TRAINER_SECTION__KEY)"
                )));
            }
            flag_layer(&name, &key, toml_value(text.trim()))
        })
        .collect()
}

/// Parses `key=value`; the value is read as TOML (`1e-6`, `true`, `"x"`, `[1, 2]`), else as a bare string.
fn parse_set(arg: &str) -> Result<Layer> {
    let Some((key, text)) = arg.split_once('=') else {
        return Err(user_error(format!(
            "--set {arg}: expected KEY=VALUE, e.g. --set train.lr=1e-6"
        )));
    };
    let key = key.trim();
    let valid_key = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !valid_key {
        return Err(user_error(format!(
            "--set {arg}: `{key}` is not a recipe key (expected section.key)"
        )));
    }
    let value = toml_value(text.trim());
    flag_layer(&format!("--set {arg}"), key, value)
}

fn toml_value(text: &str) -> Value {
    let parsed = format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"));
    match parsed.map(Value::serialize) {
        Some(Ok(value)) => value,
        _ => Value::from(text.to_string()),
    }
}

fn flag_layer(name: &str, key: &str, value: Value) -> Result<Layer> {
    let dict = figment::util::nest(key, value)
        .into_dict()
        .ok_or_else(|| anyhow::anyhow!("cannot nest recipe key {key}"))?;
    Ok(Layer {
        name: name.to_string(),
        dict,
    })
}

/// Where a recipe key's value came from, in words: `default`, a file path, `TRAINER_X__Y`, `--set k=v`.
pub fn describe_source(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => describe_metadata(meta),
        None => "unknown source".to_string(),
    }
}

fn describe_metadata(meta: &Metadata) -> String {
    match &meta.source {
        Some(Source::File(path)) => path.display().to_string(),
        Some(Source::Custom(name)) => name.clone(),
        _ => meta.name.to_string(),
    }
}

/// Rewrites a figment error as one user message naming the key and its source.
fn explain(figment: &Figment, err: figment::Error) -> anyhow::Error {
    use figment::error::Kind;
    let mut path = err.path.clone();
    if path.first().is_some_and(|p| p == "default") {
        path.remove(0);
    }
    // figment's path of an unknown field may or may not already end with the field.
    if let Kind::UnknownField(field, _) = &err.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    let key = path.join(".");
    let source = match figment.find_metadata(&key) {
        Some(meta) => describe_metadata(meta),
        None => err
            .metadata
            .as_ref()
            .map(describe_metadata)
            .unwrap_or_else(|| "recipe".into()),
    };
    let what = match &err.kind {
        Kind::UnknownField(_, expected) => {
            let parent = path[..path.len().saturating_sub(1)].join(".");
            let place = if parent.is_empty() {
                "the recipe has sections".to_string()
            } else {
                format!("[{parent}] has")
            };
            format!("unknown recipe key; {place}: {}", expected.join(", "))
        }
        Kind::InvalidType(actual, expected) => {
            format!("wrong type: found {actual}, expected {expected}")
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        other => other.to_string(),
    };
    user_error(format!("recipe key `{key}` (from {source}): {what}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_defaults_resolve_without_any_layer() {
        let recipe = super::defaults().expect("configs/default.toml resolves on its own");
        assert_eq!(recipe.script.max_operations, 50_000_000);
        assert!(recipe.loss.beta > 0.0);
    }
}
