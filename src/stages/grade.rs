//! The grade stage: every completion through the grade hook, in order.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::sample::Completion;
use crate::data::Example;
use crate::grade::Verdict;
use crate::script::{HookRef, ScriptHost};

/// The grade of one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradedSample {
    pub example_id: String,
    pub k: usize,
    pub verdict: Verdict,
    pub answer: String,
}

/// Grades `completions` (each against its example's gold answer).
pub fn grade_completions(
    host: &ScriptHost,
    hook: HookRef,
    examples: &[Example],
    completions: &[Completion],
) -> Result<Vec<GradedSample>> {
    let by_id: std::collections::HashMap<&str, &Example> =
        examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let bar = crate::progress::bar(completions.len() as u64, "grade");
    let mut out = Vec::with_capacity(completions.len());
    for c in completions {
        let Some(ex) = by_id.get(c.example_id.as_str()) else {
            anyhow::bail!("completion of unknown question `{}`", c.example_id);
        };
        let g = host.call_grade(hook, &c.text, ex)?;
        out.push(GradedSample {
            example_id: c.example_id.clone(),
            k: c.k,
            verdict: g.verdict,
            answer: g.answer,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}
