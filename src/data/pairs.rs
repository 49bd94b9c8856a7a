//! Ready preference pairs in TRL's format: `{"prompt", "chosen", "rejected"}` with optional
//! `ref_chosen_logps`, `ref_rejected_logps` and `weight`.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::jsonl::read_jsonl;
use crate::error::user_error;

/// One preference pair; the prompt is already formatted (chat template applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_chosen_logps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_rejected_logps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// Reads a pairs JSONL file; both reference log-probs or neither must be given, log-probs ≤ 0,
/// weights ≥ 0, every number within f32's range, chosen ≠ rejected.
pub fn read_pairs(path: &Path) -> Result<Vec<PairRecord>> {
    let lines = read_jsonl(path)?;
    if lines.is_empty() {
        return Err(user_error(format!("{}: no pairs", path.display())));
    }
    let mut out = Vec::with_capacity(lines.len());
    for l in &lines {
        let rec = PairRecord {
            prompt: l.string(path, "prompt")?,
            chosen: l.string(path, "chosen")?,
            rejected: l.string(path, "rejected")?,
            ref_chosen_logps: l.number(path, "ref_chosen_logps")?,
            ref_rejected_logps: l.number(path, "ref_rejected_logps")?,
            weight: l.number(path, "weight")?,
        };
        if rec.ref_chosen_logps.is_some() != rec.ref_rejected_logps.is_some() {
            return Err(user_error(format!(
                "{}:{}: give both ref_chosen_logps and ref_rejected_logps, or neither",
                path.display(),
                l.line
            )));
        }
        let at = |what: String| user_error(format!("{}:{}: {what}", path.display(), l.line));
        for (field, value) in [
            ("weight", rec.weight),
            ("ref_chosen_logps", rec.ref_chosen_logps),
            ("ref_rejected_logps", rec.ref_rejected_logps),
        ] {
            if let Some(v) = value
                && v.abs() > f64::from(f32::MAX)
            {
                return Err(at(format!(
                    "field `{field}` = {} overflows f32, which training computes in",
                    crate::error::show_number(v)
                )));
            }
            if field != "weight" && value.is_some_and(|v| v > 0.0) {
                return Err(at(format!(
                    "field `{field}` = {} is positive; a log-probability is <= 0",
                    value.unwrap_or_default()
                )));
            }
        }
        if rec.chosen == rec.rejected {
            return Err(at(
                "chosen and rejected are the same text; the pair has nothing to teach".into(),
            ));
        }
        if rec.weight.is_some_and(|w| w < 0.0) {
            return Err(user_error(format!(
                "{}:{}: weight must be >= 0",
                path.display(),
                l.line
            )));
        }
        if rec.chosen.is_empty() || rec.rejected.is_empty() {
            return Err(user_error(format!(
                "{}:{}: chosen and rejected must not be empty",
                path.display(),
                l.line
            )));
        }
        out.push(rec);
    }
    Ok(out)
}
