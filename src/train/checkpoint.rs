//! Checkpoints: an HF model folder (config.json, model.safetensors, tokenizer files), loadable with
//! `--model`, built in a temporary folder and renamed into place, so it is whole or absent. A
//! training checkpoint also carries the resume state (see `state.rs`), written last.

use std::path::Path;

use anyhow::Result;

use crate::model::LoadedModel;
use crate::store::write_dir_atomic;

/// Writes the current weights to `dir` atomically (replacing an older checkpoint there).
pub fn save_checkpoint(model: &LoadedModel, dir: &Path) -> Result<()> {
    save_checkpoint_with(model, dir, |_| Ok(()))
}

/// Like [`save_checkpoint`], with `extra` writing more files into the folder after the model.
pub fn save_checkpoint_with(
    model: &LoadedModel,
    dir: &Path,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    write_dir_atomic(dir, |tmp| {
        model.save_hf(tmp)?;
        extra(tmp)
    })
}
