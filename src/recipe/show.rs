//! Prints the merged recipe as TOML, each value followed by a comment naming its source.

use std::fmt::Write;

use anyhow::{Context, Result};
use toml::Value;

use super::load::{Layered, describe_source};

impl Layered {
    /// The resolved recipe as TOML text; every `key = value` line ends with `# <source>`.
    pub fn annotated_toml(&self) -> Result<String> {
        let table = toml::Table::try_from(&self.raw).context("serializing the recipe")?;
        let mut out = String::new();
        for (section, value) in &table {
            let Value::Table(entries) = value else {
                continue;
            };
            self.write_table(&mut out, section, entries);
        }
        Ok(out)
    }

    fn write_table(&self, out: &mut String, path: &str, entries: &toml::Table) {
        let _ = writeln!(out, "[{path}]");
        let mut nested = Vec::new();
        for (key, value) in entries {
            let full = format!("{path}.{key}");
            match value {
                Value::Table(inner) => nested.push((full, inner)),
                _ => {
                    let source = describe_source(&self.figment, &full);
                    let _ = writeln!(out, "{key} = {}  # {source}", render(value));
                }
            }
        }
        let _ = writeln!(out);
        for (full, inner) in nested {
            self.write_table(out, &full, inner);
        }
    }
}

/// Renders one value inline; floats keep Rust's shortest round-trip form (`3e-7`, `0.1`, `50.0`).
fn render(value: &Value) -> String {
    match value {
        Value::Float(f) => format!("{f:?}"),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}
