//! Questions with checkable answers: GSM8K (`question`, `answer` ending `#### N`), MATH
//! (`problem`, `answer`, `solution`), or plain prompts with the gold answer in a named field.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::jsonl::JsonlLine;
use super::records::read_records;
use crate::error::user_error;
use crate::grade::{gsm8k_answer, gsm8k_gold, last_boxed};
use crate::recipe::{DataFormat, HashSplit, Limit};
use crate::rng::Rng;

/// One question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable identity: the MATH `unique_id`, an `id` field, or `<file stem>:<line>`.
    pub id: String,
    /// The question as asked (before the instruction and chat template).
    pub question: String,
    /// The answer a grader compares with.
    pub gold: String,
    /// A worked solution usable as a chosen response, when the dataset has one.
    pub solution: Option<String>,
    /// The difficulty level the data gives (`level` field: MATH's "Level 3", the built-in 1–5).
    pub level: Option<String>,
}

/// How to read a questions file.
#[derive(Debug, Clone)]
pub struct ExampleFormat<'a> {
    pub format: DataFormat,
    pub prompt_field: &'a str,
    pub gold_field: &'a str,
    /// Which hash half of the file to keep.
    pub split: HashSplit,
}

/// Reads `path`, then keeps `limit` examples after a seeded shuffle (`shuffle_seed` 0 keeps the
/// file order).
pub fn read_examples(
    path: &Path,
    fmt: &ExampleFormat,
    limit: Limit,
    shuffle_seed: u64,
) -> Result<Vec<Example>> {
    let lines = read_records(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(lines.len());
    for l in &lines {
        let fallback_id = format!("{stem}:{}", l.line);
        out.push(match fmt.format {
            DataFormat::Gsm8k => gsm8k_example(path, l, fallback_id)?,
            DataFormat::Math => math_example(path, l, fallback_id)?,
            DataFormat::Prompts => prompt_example(path, l, fmt, fallback_id)?,
            DataFormat::Pairs => {
                return Err(user_error(format!(
                    "{}: data.format = \"pairs\" holds preference pairs, not questions",
                    path.display()
                )));
            }
        });
    }
    if out.is_empty() {
        return Err(user_error(format!("{}: no questions", path.display())));
    }
    check_unique_ids(&out, path)?;
    out.retain(|ex| in_split(&ex.question, fmt.split));
    Ok(select(out, limit, shuffle_seed))
}

/// A GSM8K line: `question`, and `answer` ending `#### N`.
fn gsm8k_example(path: &Path, l: &JsonlLine, id: String) -> Result<Example> {
    let answer = l.string(path, "answer")?;
    if gsm8k_answer(&answer).is_none() {
        return Err(user_error(format!(
            "{}:{}: field `answer` has no final number (`#### N`)",
            path.display(),
            l.line
        )));
    }
    Ok(Example {
        id,
        question: l.string(path, "question")?,
        gold: gsm8k_gold(&answer),
        solution: Some(clean_gsm8k_solution(&answer)),
        level: level_of(&l.object),
    })
}

/// A MATH line: `problem`, and `answer` (or the last `\boxed{}` of `solution`); its
/// `unique_id` when it has one.
fn math_example(path: &Path, l: &JsonlLine, fallback_id: String) -> Result<Example> {
    let solution = l
        .object
        .get("solution")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let gold = match l.object.get("answer") {
        Some(_) => l.string(path, "answer")?,
        None => solution.as_deref().and_then(last_boxed).ok_or_else(|| {
            user_error(format!(
                "{}:{}: missing field `answer` (and no \\boxed{{}} in `solution`)",
                path.display(),
                l.line
            ))
        })?,
    };
    let id = l
        .object
        .get("unique_id")
        .and_then(|v| v.as_str())
        .map_or(fallback_id, str::to_string);
    Ok(Example {
        id,
        question: l.string(path, "problem")?,
        gold,
        solution,
        level: level_of(&l.object),
    })
}

/// A prompts line: the recipe's prompt and gold fields (a number gold is kept as written); its
/// `id` when it has one.
fn prompt_example(
    path: &Path,
    l: &JsonlLine,
    fmt: &ExampleFormat,
    fallback_id: String,
) -> Result<Example> {
    let id = l
        .object
        .get("id")
        .and_then(|v| v.as_str())
        .map_or(fallback_id, str::to_string);
    let gold = match l.object.get(fmt.gold_field) {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => l.string(path, fmt.gold_field)?,
    };
    Ok(Example {
        id,
        question: l.string(path, fmt.prompt_field)?,
        gold,
        solution: None,
        level: level_of(&l.object),
    })
}

/// Whether `question` lies in `split`: the halves are the even and odd hashes of its text with
/// whitespace normalised, so a question lands on the same side in every file and on every run.
pub fn in_split(question: &str, split: HashSplit) -> bool {
    let even = crate::rng::hash_str(&normalized(question)).is_multiple_of(2);
    match split {
        HashSplit::All => true,
        HashSplit::Train => even,
        HashSplit::Eval => !even,
    }
}

fn normalized(question: &str) -> String {
    question.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The eval questions that are also training questions (same text up to whitespace): how many,
/// and the id of the first.
pub fn overlap(train: &[Example], eval: &[Example]) -> (usize, Option<String>) {
    let seen: std::collections::HashSet<String> =
        train.iter().map(|e| normalized(&e.question)).collect();
    let shared: Vec<&Example> = eval
        .iter()
        .filter(|e| seen.contains(&normalized(&e.question)))
        .collect();
    (shared.len(), shared.first().map(|e| e.id.clone()))
}

/// A line's `level` field as text (a number or a string), if any.
fn level_of(object: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    match object.get("level")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Removes GSM8K's calculator annotations: `48/2 = <<48/2=24>>24` → `48/2 = 24`.
pub fn clean_gsm8k_solution(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(start) = rest.find("<<") {
        out.push_str(&rest[..start]);
        match rest[start..].find(">>") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn check_unique_ids(examples: &[Example], path: &Path) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for e in examples {
        if !seen.insert(e.id.as_str()) {
            return Err(user_error(format!(
                "{}: two questions have the id `{}`",
                path.display(),
                e.id
            )));
        }
    }
    Ok(())
}

/// Seeded Fisher–Yates shuffle (when `seed` ≠ 0), then the first `limit`.
pub fn select<T>(mut items: Vec<T>, limit: Limit, seed: u64) -> Vec<T> {
    if seed != 0 {
        Rng::derived(seed, &[crate::rng::hash_str("shuffle")]).shuffle(&mut items);
    }
    if let Limit::First(n) = limit {
        items.truncate(n);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculator_annotations_are_removed() {
        assert_eq!(
            clean_gsm8k_solution("48/2 = <<48/2=24>>24 clips.\n#### 72"),
            "48/2 = 24 clips.\n#### 72"
        );
    }

    #[test]
    fn selection_is_seeded_and_limited() {
        let a = select((0..10).collect::<Vec<_>>(), Limit::First(4), 5);
        let b = select((0..10).collect::<Vec<_>>(), Limit::First(4), 5);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert_eq!(
            select((0..10).collect::<Vec<_>>(), Limit::First(3), 0),
            vec![0, 1, 2]
        );
    }
}
