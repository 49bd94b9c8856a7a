//! The pair stage: per question, a chosen and a rejected response, by the built-in rule of
//! arXiv 2412.20996 (chosen: a correct sample or the gold solution; rejected: a sample carrying the
//! most frequent wrong answer) or by a `pair` hook.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::grade::GradedSample;
use super::sample::{Completion, user_text};
use super::weigh::QuestionStats;
use crate::data::{Example, PairRecord};
use crate::grade::Verdict;
use crate::model::{ChatTemplate, Tokenizer};
use crate::recipe::PairSpec;
use crate::rng::{self, Rng};
use crate::script::{HookRef, PairPick, Picked, ScriptHost};

/// A pair with where it came from, as written to `pairs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    pub id: String,
    /// The formatted prompt (chat template applied).
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// `"sample K"` or `"gold"`.
    pub chosen_from: String,
    pub rejected_from: String,
    pub weight: f64,
    pub stats: QuestionStats,
    pub ref_chosen_logps: Option<f64>,
    pub ref_rejected_logps: Option<f64>,
}

impl PairRow {
    /// An anchor row: the same response as chosen and rejected (`pairs.all_correct = "anchor"`),
    /// which training treats as one (`TokenPair::is_anchor`).
    pub fn is_anchor(&self) -> bool {
        self.chosen == self.rejected
    }

    /// The pair as training input.
    pub fn record(&self) -> PairRecord {
        PairRecord {
            prompt: self.prompt.clone(),
            chosen: self.chosen.clone(),
            rejected: self.rejected.clone(),
            ref_chosen_logps: self.ref_chosen_logps,
            ref_rejected_logps: self.ref_rejected_logps,
            weight: Some(self.weight),
        }
    }
}

/// Questions that gave no pair, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairSkips {
    /// No wrong sample: nothing to reject.
    pub no_wrong_sample: usize,
    /// Nothing correct and no gold solution to fall back on.
    pub no_chosen: usize,
    /// The pair hook returned `()`.
    pub by_hook: usize,
}

/// One question's material for pairing.
pub struct Group<'a> {
    pub example: &'a Example,
    pub prompt: String,
    pub samples: Vec<(&'a Completion, &'a GradedSample)>,
    /// Response texts as they enter a pair (EOS marker included when the sample ended on it).
    pub responses: Vec<String>,
    pub gold_response: Option<String>,
    pub stats: &'a QuestionStats,
    pub weight: f64,
    pub seed: u64,
}

#[derive(Serialize)]
struct SampleView<'a> {
    k: usize,
    text: &'a str,
    correct: bool,
    verdict: Verdict,
    answer: &'a str,
}

#[derive(Serialize)]
struct GroupView<'a> {
    id: &'a str,
    seed: i64,
    question: &'a str,
    gold: &'a str,
    gold_response: Option<&'a str>,
    samples: Vec<SampleView<'a>>,
    stats: &'a QuestionStats,
    weight: f64,
}

/// The built-in rule. Ties among equally frequent wrong answers and the choice among correct
/// samples are drawn from a generator seeded by (seed, question id).
/// With `anchor_all_correct`, a question with correct samples and no wrong or invalid one gives an
/// anchor instead of a skip: one correct sample (seeded choice) as both chosen and rejected.
pub fn most_frequent_wrong(
    group: &Group,
    gold_fallback: bool,
    anchor_all_correct: bool,
) -> Result<PairPick, Skip> {
    let mut rng = Rng::new(group.seed);
    let correct: Vec<usize> = (0..group.samples.len())
        .filter(|&i| group.samples[i].1.verdict == Verdict::Correct)
        .collect();
    let mut by_answer: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut invalid = Vec::new();
    for (i, (_, g)) in group.samples.iter().enumerate() {
        match g.verdict {
            Verdict::Wrong => by_answer.entry(g.answer.as_str()).or_default().push(i),
            Verdict::Invalid => invalid.push(i),
            Verdict::Correct => {}
        }
    }
    let best = by_answer.values().map(Vec::len).max().unwrap_or(0);
    let tied: Vec<&Vec<usize>> = by_answer.values().filter(|v| v.len() == best).collect();
    let pool: &[usize] = if tied.is_empty() {
        &invalid
    } else {
        tied[rng.below(tied.len() as u64) as usize]
    };
    if pool.is_empty() {
        if anchor_all_correct && !correct.is_empty() {
            let anchor = Picked::Sample(correct[rng.below(correct.len() as u64) as usize]);
            return Ok(PairPick {
                chosen: anchor,
                rejected: anchor,
            });
        }
        return Err(Skip::NoWrongSample);
    }
    let rejected = Picked::Sample(pool[rng.below(pool.len() as u64) as usize]);
    let chosen = if !correct.is_empty() {
        Picked::Sample(correct[rng.below(correct.len() as u64) as usize])
    } else if gold_fallback && group.gold_response.is_some() {
        Picked::Gold
    } else {
        return Err(Skip::NoChosen);
    };
    Ok(PairPick { chosen, rejected })
}

/// Why a question gave no pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NoWrongSample,
    NoChosen,
    ByHook,
}

/// Runs the pair hook on a group.
pub fn hook_pick(host: &ScriptHost, hook: HookRef, group: &Group) -> Result<Option<PairPick>> {
    let view = GroupView {
        id: &group.example.id,
        seed: (group.seed >> 2) as i64,
        question: &group.example.question,
        gold: &group.example.gold,
        gold_response: group.gold_response.as_deref(),
        samples: group
            .samples
            .iter()
            .map(|(c, g)| SampleView {
                k: c.k,
                text: &c.text,
                correct: g.verdict == Verdict::Correct,
                verdict: g.verdict,
                answer: &g.answer,
            })
            .collect(),
        stats: group.stats,
        weight: group.weight,
    };
    let texts: Vec<&str> = group.samples.iter().map(|(c, _)| c.text.as_str()).collect();
    host.call_pair(hook, &view, &texts, group.gold_response.as_deref())
}

/// The seed of a question's pairing choices.
pub fn pair_seed(seed: u64, id: &str) -> u64 {
    rng::derive(seed, &[rng::hash_str("pair"), rng::hash_str(id)])
}

/// Turns a pick into a row.
pub fn row(group: &Group, pick: PairPick) -> PairRow {
    let text = |p: Picked| match p {
        Picked::Sample(i) => (
            group.responses[i].clone(),
            format!("sample {}", group.samples[i].0.k),
        ),
        Picked::Gold => (
            group.gold_response.clone().unwrap_or_default(),
            "gold".to_string(),
        ),
    };
    let (chosen, chosen_from) = text(pick.chosen);
    let (rejected, rejected_from) = text(pick.rejected);
    PairRow {
        id: group.example.id.clone(),
        prompt: group.prompt.clone(),
        chosen,
        rejected,
        chosen_from,
        rejected_from,
        weight: group.weight,
        stats: group.stats.clone(),
        ref_chosen_logps: None,
        ref_rejected_logps: None,
    }
}

/// Everything the pair stage reads.
pub struct PairInputs<'a> {
    pub examples: &'a [Example],
    pub completions: &'a [Completion],
    pub graded: &'a [GradedSample],
    pub stats: &'a [QuestionStats],
    pub weights: &'a [f64],
    /// Formatted prompt per example.
    pub prompts: &'a [String],
    /// The response text of each completion (EOS marker included when it ended on one).
    pub responses: &'a [String],
    /// Text appended to a gold solution to close the assistant turn.
    pub end_of_turn: &'a str,
    pub gold_fallback: bool,
    pub anchor_all_correct: bool,
    pub seed: u64,
}

/// Builds one pair per question (or a skip), with the hook when given, else the built-in rule.
pub fn build_pairs(
    inputs: &PairInputs,
    host: &ScriptHost,
    hook: Option<HookRef>,
) -> Result<(Vec<PairRow>, PairSkips)> {
    let mut rows = Vec::new();
    let mut skips = PairSkips::default();
    let mut start = 0;
    for (i, ex) in inputs.examples.iter().enumerate() {
        let end = start
            + inputs.completions[start..]
                .iter()
                .take_while(|c| c.example_id == ex.id)
                .count();
        let group = Group {
            example: ex,
            prompt: inputs.prompts[i].clone(),
            samples: inputs.completions[start..end]
                .iter()
                .zip(&inputs.graded[start..end])
                .collect(),
            responses: inputs.responses[start..end].to_vec(),
            gold_response: Some(format!(
                "{}{}",
                ex.solution.as_deref().unwrap_or(&ex.gold),
                inputs.end_of_turn
            )),
            stats: &inputs.stats[i],
            weight: inputs.weights[i],
            seed: pair_seed(inputs.seed, &ex.id),
        };
        start = end;
        let pick = match hook {
            Some(h) => hook_pick(host, h, &group)?.ok_or(Skip::ByHook),
            None => most_frequent_wrong(&group, inputs.gold_fallback, inputs.anchor_all_correct),
        };
        match pick {
            Ok(p) => rows.push(row(&group, p)),
            Err(Skip::NoWrongSample) => skips.no_wrong_sample += 1,
            Err(Skip::NoChosen) => skips.no_chosen += 1,
            Err(Skip::ByHook) => skips.by_hook += 1,
        }
    }
    Ok((rows, skips))
}

/// How pair texts are written: the prompt through the chat template, responses decoded from their
/// token ids, and the end-of-turn text that closes a gold solution.
pub struct PairText<'a> {
    pub tokenizer: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    pub instruction: &'a str,
}

/// The questions with their samples, verdicts, statistics and weights, in question order.
pub struct Questions<'a> {
    pub examples: &'a [Example],
    pub completions: &'a [Completion],
    pub graded: &'a [GradedSample],
    pub stats: &'a [QuestionStats],
    pub weights: &'a [f64],
}

/// The pair stage: one pair per question (or a skip), by the pair hook when given, else the
/// built-in rule.
pub fn pair(
    text: &PairText,
    questions: &Questions,
    spec: &PairSpec,
    seed: u64,
    hook: (&ScriptHost, Option<HookRef>),
) -> Result<(Vec<PairRow>, PairSkips)> {
    let prompts: Vec<String> = questions
        .examples
        .iter()
        .map(|e| {
            text.template
                .prompt(&user_text(&e.question, text.instruction))
        })
        .collect::<Result<_>>()?;
    let eos_text = text.tokenizer.eos_text()?;
    let responses: Vec<String> = questions
        .completions
        .iter()
        .map(|c| text.tokenizer.decode(&c.token_ids))
        .collect::<Result<_>>()?;
    let inputs = PairInputs {
        examples: questions.examples,
        completions: questions.completions,
        graded: questions.graded,
        stats: questions.stats,
        weights: questions.weights,
        prompts: &prompts,
        responses: &responses,
        end_of_turn: &eos_text,
        gold_fallback: spec.gold_fallback,
        anchor_all_correct: spec.anchor_all_correct,
        seed,
    };
    build_pairs(&inputs, hook.0, hook.1)
}
