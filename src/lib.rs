//! `trainer`: weighted preference optimization of language models with a candle core and Rhai
//! hooks for grading, weighting, pairing and losses.

pub mod app;
pub mod atomic;
pub mod batch;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod generation;
pub mod grade;
pub mod hookset;
pub mod interrupt;
pub mod jsonl_log;
pub mod loss;
pub mod manifest;
pub mod model;
pub mod openai;
pub mod pair;
pub mod plot;
pub mod progress;
pub mod recipe;
pub mod reference;
pub mod reproduce;
pub mod rng;
pub mod run;
pub mod sample;
pub mod score;
pub mod script;
pub mod sft;
pub mod threads;
pub mod train;
pub mod weigh;

pub use error::{UserError, exit_code, user_error};
pub use hookset::HookSet;
pub use loss::{LossInputs, LossOutput};
pub use recipe::Recipe;
pub use script::{CheckReport, HookKind, ScriptHost};
