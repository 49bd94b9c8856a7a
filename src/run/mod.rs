//! A run: the run context (folder, caches, timings, manifest, summary) and the order of stages
//! for the whole pipeline (`trainer --script S`), its first stages (`trainer sample`, `trainer
//! pairs`, `trainer train`) or the eval alone (`trainer eval`, `trainer sft`).

mod context;
mod evals;
mod folder;
pub mod identity;
mod keys;
mod manifest;
mod pipeline;
mod preflight;
mod round;
mod summary;

pub use context::EXPORT_FILE;
pub use folder::{timestamp, write_jsonl};
pub use manifest::{Input, Manifest, read_manifest};
pub use pipeline::{eval, run};
pub use summary::{RunSummary, render, write_plots};

use crate::recipe::RecipeInput;

/// What a command asks a run for: the recipe layers, whether an exported recipe may run on inputs
/// whose hashes differ from the ones it was exported with, and whether `--out` may be reused.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub recipe: RecipeInput,
    pub allow_different_inputs: bool,
    /// Use `--out` even when it holds a finished or different run (replaced) or other files.
    pub force: bool,
}

/// How far a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    Sample,
    Pairs,
    Train,
    All,
}

impl Until {
    /// The name recorded in `manifest.json`.
    pub fn name(self) -> &'static str {
        match self {
            Until::Sample => "sample",
            Until::Pairs => "pairs",
            Until::Train => "train",
            Until::All => "all",
        }
    }
}
