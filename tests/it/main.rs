//! The integration tests: one binary, one module per area.

mod bad_input;
mod builtin;
mod common;
mod compare;
mod dpo_parity;
mod export;
mod grading;
mod hf_python;
mod hooks;
mod layout;
mod lora;
mod losses;
mod openai_backend;
mod pipeline;
mod quantized;
mod recipe;
mod reproduce;
mod resume;
mod rounds;
mod scripts;
mod smollm2;
mod sweep;
mod templates;
mod tiny_models;
mod weights;
mod wpo;
