//! The run's `manifest.json`: what went in (recipe, scripts, model, data and their hashes) and the
//! command that made the run.

use std::path::Path;

use anyhow::Result;

use super::Run;
use crate::manifest::{Input, Manifest, sha256_path, trainer_version, write_json_atomic};

/// Writes `manifest.json` into the run folder.
pub(super) fn write_manifest(
    run: &Run,
    model_path: &Path,
    train: (&Path, &str),
    eval: Option<&Path>,
    sample_cache_key: Option<String>,
) -> Result<()> {
    let input = |p: &Path| -> Result<Input> {
        Ok(Input {
            path: p.display().to_string(),
            sha256: sha256_path(p)?,
        })
    };
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        "train".to_string(),
        Input {
            path: train.0.display().to_string(),
            sha256: train.1.to_string(),
        },
    );
    if let Some(e) = eval {
        data.insert("eval".to_string(), input(e)?);
    }
    let recipe_text = std::fs::read(run.dir.join("recipe.toml"))?;
    let manifest = Manifest {
        trainer_version: trainer_version(),
        recipe_sha256: crate::manifest::sha256_bytes(&recipe_text),
        seed: run.recipe.run.seed,
        scripts: run
            .hooks
            .host
            .sources()
            .into_iter()
            .map(|(n, t)| (n, crate::manifest::sha256_bytes(t.as_bytes())))
            .collect(),
        model: Input {
            path: model_path.display().to_string(),
            sha256: run.model_sha.clone(),
        },
        data,
        sample_cache_key,
        argv: crate::manifest::command_line(),
        until: run.until.to_string(),
        sampling_server: run.server.as_ref().map(|s| s.identity.clone()),
    };
    write_json_atomic(&run.dir.join("manifest.json"), &manifest)
}
