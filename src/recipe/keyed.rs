//! Key-located recipe checks: every error names the key and the layer its value came from.

use std::collections::BTreeMap;
use std::fmt::Display;

use anyhow::Result;
use figment::Figment;

use super::load::describe_source;
use super::spec::HookParam;
use crate::error::user_error;

/// Builds error messages that name a key and its source.
pub(super) struct Ctx<'a> {
    pub(super) figment: &'a Figment,
}

impl Ctx<'_> {
    pub(super) fn bad(&self, key: &str, why: impl Display) -> anyhow::Error {
        let source = describe_source(self.figment, key);
        user_error(format!("recipe key `{key}` (from {source}): {why}"))
    }

    pub(super) fn positive(&self, key: &str, v: f64) -> Result<f64> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(self.bad(key, format!("must be a finite number > 0, got {v}")))
        }
    }

    pub(super) fn non_negative(&self, key: &str, v: f64) -> Result<f64> {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(self.bad(key, format!("must be a finite number >= 0, got {v}")))
        }
    }

    pub(super) fn in_range(&self, key: &str, v: f64, lo: f64, hi: f64) -> Result<f64> {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(self.bad(key, format!("must be in [{lo}, {hi}], got {v}")))
        }
    }

    pub(super) fn at_least_one(&self, key: &str, v: usize) -> Result<usize> {
        if v >= 1 {
            Ok(v)
        } else {
            Err(self.bad(key, "must be at least 1"))
        }
    }

    pub(super) fn choice<T: Copy>(&self, key: &str, v: &str, options: &[(&str, T)]) -> Result<T> {
        options
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.bad(key, format!("`{v}` is not one of: {}", names.join(", ")))
            })
    }

    pub(super) fn params(
        &self,
        section: &str,
        params: &BTreeMap<String, f64>,
        reserved: &[&str],
    ) -> Result<BTreeMap<String, f64>> {
        for (name, value) in params {
            let key = format!("{section}.params.{name}");
            if reserved.contains(&name.as_str()) {
                return Err(self.bad(
                    &key,
                    format!("`{name}` is a built-in name; use it directly"),
                ));
            }
            if !is_identifier(name) {
                return Err(self.bad(&key, "a parameter name must be a Rhai identifier"));
            }
            if !value.is_finite() {
                return Err(self.bad(&key, format!("must be finite, got {value}")));
            }
        }
        Ok(params.clone())
    }
}

impl Ctx<'_> {
    /// `[section.params]` of a hook that takes numbers or strings (grade, pair): each name a Rhai
    /// identifier not among `reserved`, each value a finite number or a string.
    pub(super) fn text_params(
        &self,
        section: &str,
        params: &BTreeMap<String, toml::Value>,
        reserved: &[&str],
    ) -> Result<Vec<(String, HookParam)>> {
        let mut numbers = BTreeMap::new();
        let mut out = Vec::new();
        for (name, value) in params {
            let key = format!("{section}.params.{name}");
            match value {
                toml::Value::Float(f) => {
                    numbers.insert(name.clone(), *f);
                }
                toml::Value::Integer(i) => {
                    numbers.insert(name.clone(), *i as f64);
                }
                toml::Value::String(s) => {
                    self.params(section, &BTreeMap::from([(name.clone(), 0.0)]), reserved)?;
                    out.push((name.clone(), HookParam::Text(s.clone())));
                }
                other => {
                    return Err(self.bad(
                        &key,
                        format!("must be a number or a string, not a {}", other.type_str()),
                    ));
                }
            }
        }
        for (name, f) in self.params(section, &numbers, reserved)? {
            out.push((name, HookParam::Float(f)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
