//! Reading datasets: JSONL files with line-numbered errors, and the record types built from them.

mod jsonl;
mod pairs;

pub use jsonl::{JsonlLine, read_jsonl};
pub use pairs::{PairRecord, read_pairs};
