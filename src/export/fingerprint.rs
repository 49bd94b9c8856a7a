//! Content hashes of the model and data a recipe names, as an exported recipe records them and a
//! run checks them: files by sha256, the built-in model by its warm-start content key, built-in
//! problems by the sha256 of the generated file.

use std::path::Path;

use anyhow::Result;

use crate::data::local_path;
use crate::error::user_error;
use crate::model::{HubId, fetch};
use crate::recipe::{EvalData, ModelSource, PairMode, Recipe, TokenizerChoice};
use crate::stages::warm_start::sft_key;
use crate::store::sha256_path;

/// [`Fingerprint::what`] of a model on the Hugging Face hub (its path is `org/name@COMMIT`).
pub const HUB_MODEL: &str = "hub model";

/// One model or data input of a recipe and what identifies its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// The recipe key that names it (`model.path`, `data.train`, ...).
    pub key: String,
    /// What it is, for messages: `model file`, `model folder`, `data file`, `built-in model`.
    pub what: String,
    /// The path (or `builtin:NAME`) as the recipe gives it.
    pub path: String,
    /// Hex sha256 of the content; for the built-in model, its warm-start content key.
    pub sha256: String,
}

/// Fingerprints of every model and data input `recipe` names. Built-in problems are generated
/// into the cache first; the built-in model is never trained for this.
pub fn fingerprints(recipe: &Recipe) -> Result<Vec<Fingerprint>> {
    let mut out = vec![model_fingerprint(recipe)?];
    if let TokenizerChoice::File(p) = &recipe.model.tokenizer {
        out.push(file("model.tokenizer", "tokenizer file", p)?);
    }
    out.push(data("data.train", &recipe.data.source, recipe)?);
    if let EvalData::Source(source) = &recipe.eval.data {
        out.push(data("eval.data", source, recipe)?);
    }
    if let PairMode::OffPolicy(p) | PairMode::Hybrid(p) = &recipe.pairs.mode {
        out.push(file("pairs.off_policy", "pairs file", p)?);
    }
    Ok(out)
}

fn model_fingerprint(recipe: &Recipe) -> Result<Fingerprint> {
    match &recipe.model.source {
        ModelSource::Path(p) => {
            let what = if p.is_dir() {
                "model folder"
            } else {
                "model file"
            };
            file("model.path", what, p)
        }
        // The commit it resolved to, so an export pins the files it ran on.
        ModelSource::Hub(id) => {
            let fetched = fetch(id, "model.path")?;
            let pinned = HubId {
                revision: fetched.commit,
                ..id.clone()
            };
            Ok(Fingerprint {
                key: "model.path".into(),
                what: HUB_MODEL.into(),
                path: pinned.to_string(),
                sha256: sha256_path(&fetched.path)?,
            })
        }
        ModelSource::Builtin(name) => {
            let template = recipe
                .model
                .template
                .for_model(&recipe.model.system, None)?;
            Ok(Fingerprint {
                key: "model.path".into(),
                what: "built-in model".into(),
                path: format!("builtin:{name}"),
                sha256: sft_key(&recipe.sft, &template),
            })
        }
    }
}

fn data(key: &str, source: &crate::recipe::DataSource, recipe: &Recipe) -> Result<Fingerprint> {
    let path = local_path(source, key, recipe)?;
    let shown = match source {
        crate::recipe::DataSource::Builtin(name) => format!("builtin:{name}"),
        crate::recipe::DataSource::File(p) => p.display().to_string(),
    };
    Ok(Fingerprint {
        path: shown,
        ..file(key, "data file", &path)?
    })
}

fn file(key: &str, what: &str, path: &Path) -> Result<Fingerprint> {
    if !path.exists() {
        return Err(user_error(format!(
            "{key} = \"{}\": no such file or folder",
            path.display()
        )));
    }
    Ok(Fingerprint {
        key: key.to_string(),
        what: what.to_string(),
        path: path.display().to_string(),
        sha256: sha256_path(path)?,
    })
}
