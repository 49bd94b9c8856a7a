//! The eval stage: greedy accuracy on held-out questions with the run's grader. Generations are
//! cached by content (the model's hash included) batch by batch, like samples, so a killed eval
//! resumes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::sample::user_text;
use crate::data::Example;
use crate::grade::{GradeSummary, Verdict};
use crate::model::{ChatTemplate, GenRequest, LoadedModel, SamplingParams, generate};
use crate::script::{HookRef, ScriptHost};
use crate::stats::wilson;
use crate::store::{Batches, Resumable};

/// One evaluated question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub response: String,
    pub verdict: Verdict,
    pub answer: String,
}

/// Accuracy on a set of questions, with its 95 % Wilson interval and, when the data gives
/// levels, per level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub accuracy: f64,
    /// The 95 % Wilson score interval of `accuracy`.
    #[serde(default)]
    pub ci95: [f64; 2],
    pub correct: usize,
    pub wrong: usize,
    pub invalid: usize,
    pub total: usize,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_level: BTreeMap<String, LevelResult>,
}

/// Accuracy on the questions of one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelResult {
    pub accuracy: f64,
    pub ci95: [f64; 2],
    pub correct: usize,
    pub total: usize,
}

impl LevelResult {
    fn of(correct: usize, total: usize) -> LevelResult {
        let (lo, hi) = wilson(correct, total);
        LevelResult {
            accuracy: correct as f64 / total.max(1) as f64,
            ci95: [lo, hi],
            correct,
            total,
        }
    }
}

/// How to generate the answers.
pub struct EvalSetup<'a> {
    pub template: &'a ChatTemplate,
    pub instruction: &'a str,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub stop: &'a [String],
}

#[derive(Serialize, Deserialize)]
struct Generated {
    id: String,
    response: String,
}

/// Greedy answers to every question, in order; with `cache`, finished batches are kept there and
/// reused. Stops between batches after Ctrl-C.
pub fn eval_generations(
    model: &LoadedModel,
    setup: &EvalSetup,
    examples: &[Example],
    cache: Option<&Path>,
    label: &str,
) -> Result<Vec<String>> {
    let mut done = Resumable::open(cache, |g: &Generated| g.id.clone())?;
    let params = SamplingParams {
        stop: setup.stop.to_vec(),
        ..SamplingParams::greedy(setup.max_new_tokens)
    };
    let weights = model.policy.frozen();
    let batches = Batches {
        size: setup.batch_size,
        label,
    };
    done.fill(
        examples,
        |ex| ex.id.clone(),
        batches,
        |chunk, _| {
            let reqs = chunk
                .iter()
                .map(|ex| {
                    let prompt = setup
                        .template
                        .prompt(&user_text(&ex.question, setup.instruction))?;
                    Ok(GenRequest {
                        prompt_ids: model.tokenizer.encode(&prompt)?,
                        seed: 0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let outs = generate(
                &model.policy.config,
                &weights,
                &model.tokenizer,
                &reqs,
                &params,
            )?;
            Ok(chunk
                .iter()
                .zip(outs)
                .map(|(ex, g)| Generated {
                    id: ex.id.clone(),
                    response: g.text,
                })
                .collect())
        },
    )?;
    Ok(examples
        .iter()
        .map(|ex| done.take(&ex.id).map(|g| g.response).unwrap_or_default())
        .collect())
}

/// Grades the answers.
pub fn grade_eval(
    host: &ScriptHost,
    hook: HookRef,
    examples: &[Example],
    responses: &[String],
    seconds: f64,
) -> Result<(EvalResult, Vec<EvalRecord>)> {
    let mut summary = GradeSummary::default();
    let mut records = Vec::with_capacity(examples.len());
    let mut levels: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (ex, response) in examples.iter().zip(responses) {
        let g = host.call_grade(hook, response, ex)?;
        summary.add(g.verdict);
        if let Some(level) = &ex.level {
            let entry = levels.entry(level.clone()).or_default();
            entry.0 += usize::from(g.is_correct());
            entry.1 += 1;
        }
        records.push(EvalRecord {
            id: ex.id.clone(),
            level: ex.level.clone(),
            response: response.clone(),
            verdict: g.verdict,
            answer: g.answer,
        });
    }
    let (lo, hi) = wilson(summary.correct, summary.total);
    let result = EvalResult {
        accuracy: summary.accuracy,
        ci95: [lo, hi],
        correct: summary.correct,
        wrong: summary.wrong,
        invalid: summary.invalid,
        total: summary.total,
        seconds,
        by_level: levels
            .into_iter()
            .map(|(level, (c, t))| (level, LevelResult::of(c, t)))
            .collect(),
    };
    Ok((result, records))
}

/// Generates and grades.
pub fn evaluate(
    model: &LoadedModel,
    setup: &EvalSetup,
    examples: &[Example],
    grader: (&ScriptHost, HookRef),
    cache: Option<&Path>,
    label: &str,
) -> Result<(EvalResult, Vec<EvalRecord>)> {
    let started = Instant::now();
    let responses = eval_generations(model, setup, examples, cache, label)?;
    grade_eval(
        grader.0,
        grader.1,
        examples,
        &responses,
        started.elapsed().as_secs_f64(),
    )
}
