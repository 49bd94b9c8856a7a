//! The weigh stage: per-question statistics of the graded samples, through the weight hook.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::grade::GradedSample;
use crate::data::Example;
use crate::grade::Verdict;
use crate::recipe::{HookParam, WeightSpec};
use crate::script::{HookRef, ScriptHost};

/// What the weight hook sees of a question's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionStats {
    pub id: String,
    /// Samples drawn.
    pub n: usize,
    /// Correct samples.
    pub pc: usize,
    /// Wrong samples, invalid ones included.
    pub pe: usize,
    /// Samples with no extractable answer (counted in `pe` too).
    pub invalid: usize,
    /// The extracted answer of every sample ("" when invalid), in sample order.
    pub answers: Vec<String>,
}

/// Statistics of every example, from its graded samples.
pub fn question_stats(examples: &[Example], graded: &[GradedSample]) -> Vec<QuestionStats> {
    let mut by_id: std::collections::HashMap<&str, Vec<&GradedSample>> =
        std::collections::HashMap::new();
    for g in graded {
        by_id.entry(g.example_id.as_str()).or_default().push(g);
    }
    examples
        .iter()
        .map(|ex| {
            let mut samples = by_id.remove(ex.id.as_str()).unwrap_or_default();
            samples.sort_by_key(|g| g.k);
            let count = |v: Verdict| samples.iter().filter(|g| g.verdict == v).count();
            QuestionStats {
                id: ex.id.clone(),
                n: samples.len(),
                pc: count(Verdict::Correct),
                pe: count(Verdict::Wrong) + count(Verdict::Invalid),
                invalid: count(Verdict::Invalid),
                answers: samples.iter().map(|g| g.answer.clone()).collect(),
            }
        })
        .collect()
}

/// The `[weight]` parameters as the hook sees them.
pub fn weight_params(spec: &WeightSpec) -> Vec<(String, HookParam)> {
    let mut out = vec![
        ("alpha".to_string(), HookParam::Float(spec.alpha)),
        ("eps".to_string(), HookParam::Float(spec.eps)),
    ];
    out.extend(
        spec.params
            .iter()
            .map(|(k, v)| (k.clone(), HookParam::Float(*v))),
    );
    out
}

/// One weight per question.
pub fn weigh(
    host: &ScriptHost,
    hook: HookRef,
    stats: &[QuestionStats],
    spec: &WeightSpec,
) -> Result<Vec<f64>> {
    let params = weight_params(spec);
    stats
        .iter()
        .map(|s| host.call_weight(hook, s, &params))
        .collect()
}
