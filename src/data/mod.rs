//! Reading datasets: JSONL and parquet files with line/row-numbered errors, the record types built from them, and
//! where a data source lives (built-in problems are generated into the cache).

pub mod arith;
mod examples;
mod jsonl;
mod pairs;
mod parquet;
mod records;
mod source;

pub use examples::{
    Example, ExampleFormat, clean_gsm8k_solution, in_split, overlap, read_examples, select,
};
pub use jsonl::{JsonlLine, read_jsonl};
pub use pairs::{PairFinish, PairRecord, read_pairs, read_training_pairs};
pub use records::read_records;
pub use source::local_path;
