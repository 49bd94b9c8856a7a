//! `trainer`: weighted preference optimization of language models with a candle core and Rhai
//! hooks for grading, weighting, pairing and losses.
//!
//! Data flows one way: `commands` → `run` → `stages` → `train` → `script`, `data` → `recipe` →
//! `model`, `grade` → `store` and the process-wide pieces (`error`, `interrupt`, `progress`,
//! `rng`, `threads`). `export` (exported recipes) sits between `run` and `stages`, `plot` beside
//! `data`. `tests/it/layout.rs` holds the order and fails on any import that goes up.

pub mod cli;
pub mod commands;
pub mod data;
pub mod error;
pub mod export;
pub mod grade;
pub mod interrupt;
pub mod model;
pub mod plot;
pub mod progress;
pub mod recipe;
pub mod rng;
pub mod run;
pub mod script;
pub mod stages;
pub mod stats;
pub mod store;
pub mod threads;
pub mod train;

pub use error::{UserError, exit_code, user_error};
pub use recipe::Recipe;
pub use script::{CheckReport, HookKind, HookSet, LossInputs, LossOutput, ScriptHost};
