//! The run's `manifest.json`: what went in (recipe, scripts, model, data and their hashes), the
//! binary version, the seed and the command that made the run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::context::Run;
use crate::error::user_error;
use crate::stages::sample::SamplingServer;
use crate::store::{sha256_bytes, sha256_path, trainer_version, write_json_atomic};

/// A file the run read, with its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub path: String,
    pub sha256: String,
    /// For a model from the Hugging Face hub: the commit its files came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub trainer_version: String,
    pub recipe_sha256: String,
    pub seed: u64,
    pub scripts: BTreeMap<String, String>,
    pub model: Input,
    pub data: BTreeMap<String, Input>,
    /// The content key of the sample cache this run used.
    pub sample_cache_key: Option<String>,
    /// The command line that made the run.
    #[serde(default)]
    pub argv: Vec<String>,
    /// The last stage the command ran to: `sample`, `pairs`, `train`, `all` or `eval`.
    #[serde(default)]
    pub until: String,
    /// The server that sampled, with `sampling.backend = "openai"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_server: Option<SamplingServer>,
}

/// The `manifest.json` of the run in `dir`; a missing or unreadable one is a user error naming it.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| user_error(format!("{}: {e} (not a run folder?)", path.display())))?;
    serde_json::from_str(&text).map_err(|e| user_error(format!("{}: {e}", path.display())))
}

/// The command line of this process, as text.
pub fn command_line() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Writes `manifest.json` into the run folder: the training data (path and sha256), the eval
/// data, the key of the sample cache and the server that samples, when there are such.
pub(super) fn write_manifest(
    run: &Run,
    train: (&Path, &str),
    eval: Option<&Path>,
    sample_cache_key: Option<String>,
    server: Option<&SamplingServer>,
) -> Result<()> {
    let input = |p: &Path| -> Result<Input> {
        Ok(Input {
            path: p.display().to_string(),
            sha256: sha256_path(p)?,
            revision: None,
        })
    };
    let mut data = BTreeMap::new();
    data.insert(
        "train".to_string(),
        Input {
            path: train.0.display().to_string(),
            sha256: train.1.to_string(),
            revision: None,
        },
    );
    if let Some(e) = eval {
        data.insert("eval".to_string(), input(e)?);
    }
    let recipe_text = std::fs::read(run.dir.join("recipe.toml"))?;
    let manifest = Manifest {
        trainer_version: trainer_version(),
        recipe_sha256: sha256_bytes(&recipe_text),
        seed: run.recipe.run.seed,
        scripts: run
            .hooks
            .host
            .sources()
            .into_iter()
            .map(|(n, t)| (n, sha256_bytes(t.as_bytes())))
            .collect(),
        model: Input {
            path: run.model_path.display().to_string(),
            sha256: run.model_sha.clone(),
            revision: run.model_revision.clone(),
        },
        data,
        sample_cache_key,
        argv: command_line(),
        until: run.until.to_string(),
        sampling_server: server.cloned(),
    };
    write_json_atomic(&run.dir.join("manifest.json"), &manifest)
}
