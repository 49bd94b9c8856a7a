//! JSONL reading: one JSON object per line; a malformed line is an error naming file and line.

use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::error::user_error;

/// One non-empty line of a JSONL file, parsed as an object.
#[derive(Debug, Clone)]
pub struct JsonlLine {
    /// 1-based line number.
    pub line: usize,
    pub object: Map<String, Value>,
}

/// The longest line read (4 MiB): a question, solution or response this long is a broken file,
/// not data, and would only exhaust memory in tokenization.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Reads every non-blank line of `path` as a JSON object.
pub fn read_jsonl(path: &Path) -> Result<Vec<JsonlLine>> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| user_error(format!("{name}: cannot read: {e}")))?;
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if raw.len() > MAX_LINE_BYTES {
            return Err(user_error(format!(
                "{name}:{line}: the line is {} bytes, over the limit of {} MiB per line",
                raw.len(),
                MAX_LINE_BYTES >> 20
            )));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|e| user_error(format!("{name}:{line}: not UTF-8 text ({e})")))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| user_error(format!("{name}:{line}: malformed JSON: {e}")))?;
        match value {
            Value::Object(object) => out.push(JsonlLine { line, object }),
            other => {
                return Err(user_error(format!(
                    "{name}:{line}: expected a JSON object, found {}",
                    kind(&other)
                )));
            }
        }
    }
    Ok(out)
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonlLine {
    /// A required string field.
    pub fn string(&self, path: &Path, field: &str) -> Result<String> {
        match self.object.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(user_error(format!(
                "{}:{}: field `{field}` must be a string, found {}",
                path.display(),
                self.line,
                kind(other)
            ))),
            None => Err(user_error(format!(
                "{}:{}: missing field `{field}`",
                path.display(),
                self.line
            ))),
        }
    }

    /// An optional finite number field.
    pub fn number(&self, path: &Path, field: &str) -> Result<Option<f64>> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64().filter(|v| v.is_finite()) {
                Some(v) => Ok(Some(v)),
                None => Err(user_error(format!(
                    "{}:{}: field `{field}` is not a finite number",
                    path.display(),
                    self.line
                ))),
            },
            Some(other) => Err(user_error(format!(
                "{}:{}: field `{field}` must be a number, found {}",
                path.display(),
                self.line,
                kind(other)
            ))),
        }
    }
}
