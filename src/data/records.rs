//! A data file of records, by its extension: parquet rows or JSONL lines, each a JSON object
//! with the number errors name.

use std::path::Path;

use anyhow::Result;

use super::jsonl::{JsonlLine, read_jsonl};
use super::parquet::read_parquet;

/// Reads a data file: parquet rows when its name ends in `.parquet`, else JSONL lines.
pub fn read_records(path: &Path) -> Result<Vec<JsonlLine>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        read_parquet(path)
    } else {
        read_jsonl(path)
    }
}
