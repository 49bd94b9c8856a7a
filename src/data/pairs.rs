//! Ready preference pairs in TRL's format: `{"prompt", "chosen", "rejected"}` with optional
//! `ref_chosen_logps`, `ref_rejected_logps` and `weight`; the three texts are strings, or (for
//! training) conversations — lists of `{"role", "content"}` — rendered through the chat template.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jsonl::{JsonlLine, kind};
use super::records::read_records;
use crate::error::user_error;
use crate::model::{ChatTemplate, Message};

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

/// How pairs read for training are finished, as TRL's `DPOTrainer` finishes them: conversations
/// rendered through the chat template (the prompt with the generation prompt; chosen and rejected
/// as what the template adds after it), and the tokenizer's EOS appended to chosen and rejected
/// when they do not end with it already.
pub struct PairFinish<'a> {
    pub template: &'a ChatTemplate,
    pub eos: &'a str,
}

/// Reads a pairs file (JSONL, or parquet by its extension) of string pairs, as they are.
pub fn read_pairs(path: &Path) -> Result<Vec<PairRecord>> {
    read_pairs_with(path, None)
}

/// Reads a pairs file for training: string or conversational pairs, finished by `finish`.
pub fn read_training_pairs(path: &Path, finish: &PairFinish) -> Result<Vec<PairRecord>> {
    read_pairs_with(path, Some(finish))
}

/// The three texts of a row: strings as they are, or conversations rendered by `finish`.
fn texts(path: &Path, l: &JsonlLine, finish: Option<&PairFinish>) -> Result<[String; 3]> {
    let at = |what: String| user_error(format!("{}:{}: {what}", path.display(), l.line));
    let conversation =
        ["prompt", "chosen", "rejected"].map(|f| matches!(l.object.get(f), Some(Value::Array(_))));
    match (conversation, finish) {
        ([false, false, false], _) => Ok([
            l.string(path, "prompt")?,
            l.string(path, "chosen")?,
            l.string(path, "rejected")?,
        ]),
        ([true, true, true], Some(f)) => {
            let turns = |field: &str| -> Result<Vec<Message>> {
                serde_json::from_value(l.object[field].clone()).map_err(|e| {
                    at(format!(
                        "field `{field}` must be a list of {{\"role\", \"content\"}}: {e}"
                    ))
                })
            };
            let prompt = turns("prompt")?;
            let text = f.template.render(&prompt, true)?;
            let reply = |field: &str| -> Result<String> {
                let mut whole = prompt.clone();
                whole.extend(turns(field)?);
                let rendered = f.template.render(&whole, false)?;
                match rendered.strip_prefix(&text) {
                    Some(rest) => Ok(rest.to_string()),
                    None => Err(at(format!(
                        "the chat template does not render the prompt as the start of prompt + \
                         {field}, so the {field} text cannot be cut from it"
                    ))),
                }
            };
            Ok([text.clone(), reply("chosen")?, reply("rejected")?])
        }
        ([true, true, true], None) => Err(at(
            "conversational pairs (lists of messages) need a chat template: train on them \
             (trainer train --pairs), where model.template renders them"
                .into(),
        )),
        _ => Err(at(format!(
            "prompt, chosen and rejected must all be strings or all be lists of messages; found \
             {}, {}, {}",
            kind(&l.object["prompt"]),
            kind(&l.object["chosen"]),
            kind(&l.object["rejected"])
        ))),
    }
}

/// Reads pairs; both reference log-probs or neither must be given, log-probs ≤ 0, weights ≥ 0,
/// every number within f32's range, chosen ≠ rejected.
fn read_pairs_with(path: &Path, finish: Option<&PairFinish>) -> Result<Vec<PairRecord>> {
    let lines = read_records(path)?;
    if lines.is_empty() {
        return Err(user_error(format!("{}: no pairs", path.display())));
    }
    lines.iter().map(|l| pair_record(path, l, finish)).collect()
}

/// One line's pair: its texts (finished with the EOS when `finish` is given), reference
/// log-probs and weight, checked.
fn pair_record(path: &Path, l: &JsonlLine, finish: Option<&PairFinish>) -> Result<PairRecord> {
    for field in ["prompt", "chosen", "rejected"] {
        if !l.object.contains_key(field) {
            l.string(path, field)?; // the missing-field error
        }
    }
    let [prompt, mut chosen, mut rejected] = texts(path, l, finish)?;
    if chosen.is_empty() || rejected.is_empty() {
        return Err(user_error(format!(
            "{}:{}: chosen and rejected must not be empty",
            path.display(),
            l.line
        )));
    }
    if let Some(f) = finish {
        for text in [&mut chosen, &mut rejected] {
            if !text.ends_with(f.eos) {
                text.push_str(f.eos);
            }
        }
    }
    let rec = PairRecord {
        prompt,
        chosen,
        rejected,
        ref_chosen_logps: l.number(path, "ref_chosen_logps")?,
        ref_rejected_logps: l.number(path, "ref_rejected_logps")?,
        weight: l.number(path, "weight")?,
    };
    check_pair(path, l, &rec)?;
    Ok(rec)
}

/// The checks a pair must pass before training: both reference log-probs or neither, numbers
/// that fit f32, log-probs ≤ 0, a weight ≥ 0, two different texts ([`pair_record`] has already
/// refused empty ones, and the EOS it may append only lengthens them).
fn check_pair(path: &Path, l: &JsonlLine, rec: &PairRecord) -> Result<()> {
    let at = |what: String| user_error(format!("{}:{}: {what}", path.display(), l.line));
    if rec.ref_chosen_logps.is_some() != rec.ref_rejected_logps.is_some() {
        return Err(at(
            "give both ref_chosen_logps and ref_rejected_logps, or neither".into(),
        ));
    }
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
        return Err(at("weight must be >= 0".into()));
    }
    Ok(())
}
