//! Reading datasets: JSONL files with line-numbered errors, and the record types built from them.

pub mod arith;
mod examples;
mod jsonl;
mod pairs;

pub use examples::{Example, ExampleFormat, clean_gsm8k_solution, read_examples, select};
pub use jsonl::{JsonlLine, read_jsonl};
pub use pairs::{PairRecord, read_pairs};
