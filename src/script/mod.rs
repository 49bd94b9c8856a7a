//! The Rhai script host: the only module that imports rhai. It compiles scripts and plugins once,
//! finds hooks by name and arity, calls them with typed inputs, validates what they return, and
//! runs `trainer check`.

mod api;
mod check;
mod embedded;
mod errors;
mod hooks;
mod hookset;
mod host;
mod loss_batch;
mod resolver;
mod tensor;

pub use api::reference as api_reference;
pub use check::{CheckReport, GRAD_TOLERANCE, GradCheck, TestOutcome, random_batch, run_check};
pub use embedded::{PLUGINS, plugin_names};
pub use hooks::{HookKind, HookRef, PairPick, Picked};
pub use hookset::{HookSet, from_source};
pub use host::{FnInfo, ScriptHost, UnitId};
pub use loss_batch::{LossInputs, LossOutput, STEP_METRIC_NAMES};
pub use resolver::PluginDir;
