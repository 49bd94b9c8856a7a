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
    let weights: Vec<f64> = stats
        .iter()
        .map(|s| host.call_weight(hook, s, &params))
        .collect::<Result<_>>()?;
    let file = host.file(hook.unit);
    // The built-in uniform scheme gives equal weights on purpose.
    let uniform = file.ends_with("weight/uniform.rhai");
    match degenerate(&weights) {
        Some(warning) if !(uniform && weights.first() != Some(&0.0)) => {
            tracing::warn!("{warning} (from {file})");
        }
        _ => {}
    }
    Ok(weights)
}

/// A warning when the weights cannot be what their hook meant: every weight 0 (often Rhai's
/// integer division, `stats.pc / stats.n`, which is 0 for every question that is not all correct),
/// or every weight equal (which weighs nothing).
pub fn degenerate(weights: &[f64]) -> Option<String> {
    let first = *weights.first()?;
    if weights.len() < 2 || weights.iter().any(|w| *w != first) {
        return None;
    }
    Some(if first == 0.0 {
        format!(
            "every one of the {} question weights is 0, so no pair trains; an integer division \
             (stats.pc / stats.n) is the usual cause: write stats.pc.to_float() / stats.n",
            weights.len()
        )
    } else {
        format!(
            "every one of the {} question weights is {first}: the weighting changes nothing \
             (weight.scheme = \"uniform\" says so plainly)",
            weights.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::degenerate;

    #[test]
    fn all_zero_or_all_equal_weights_are_flagged_and_varied_ones_are_not() {
        assert!(
            degenerate(&[0.0, 0.0, 0.0])
                .unwrap()
                .contains("integer division")
        );
        assert!(degenerate(&[2.0, 2.0]).unwrap().contains("changes nothing"));
        assert_eq!(degenerate(&[1.0, 2.0]), None);
        assert_eq!(degenerate(&[1.0]), None);
        assert_eq!(degenerate(&[]), None);
    }
}
