//! Checkpoints: an HF model folder (config.json, model.safetensors, tokenizer.json) written into a
//! temporary folder and renamed into place, so it is whole or absent; loadable with `--model`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::model::LoadedModel;

/// Writes the current weights to `dir` atomically (replacing an older checkpoint there).
pub fn save_checkpoint(model: &LoadedModel, dir: &Path) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    model.policy.save_hf(&tmp, &model.tokenizer)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}
