//! Parquet files (the format most Hugging Face datasets are published in), read row by row into
//! the same JSON objects a JSONL line gives; errors name the file and the 1-based row.

use std::fs::File;
use std::path::Path;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use anyhow::Result;
use serde_json::Value;

use super::jsonl::{JsonlLine, kind};
use crate::error::user_error;

/// Every row of the parquet file `path` as a JSON object; `line` is the row number.
pub fn read_parquet(path: &Path) -> Result<Vec<JsonlLine>> {
    let name = path.display();
    let file = File::open(path).map_err(|e| user_error(format!("{name}: cannot read: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| user_error(format!("{name}: not a readable parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| user_error(format!("{name}: cannot read its rows: {e}")))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let line = i + 1;
        let row = row.map_err(|e| user_error(format!("{name}: row {line}: {e}")))?;
        match row.to_json_value() {
            Value::Object(object) => out.push(JsonlLine { line, object }),
            other => {
                return Err(user_error(format!(
                    "{name}: row {line}: expected a record, found {}",
                    kind(&other)
                )));
            }
        }
    }
    Ok(out)
}
