//! The eval stage: greedy accuracy on held-out questions with the run's grader. Generations are
//! cached by content (the model's hash included) batch by batch, like samples, so a killed eval
//! resumes.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::sample::user_text;
use crate::data::Example;
use crate::grade::{GradeSummary, Verdict};
use crate::model::{ChatTemplate, GenRequest, LoadedModel, SamplingParams, generate};
use crate::script::{HookRef, ScriptHost};
use crate::store::{Batches, Resumable};

/// One evaluated question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub id: String,
    pub response: String,
    pub verdict: Verdict,
    pub answer: String,
}

/// Accuracy on a set of questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub correct: usize,
    pub wrong: usize,
    pub invalid: usize,
    pub total: usize,
    pub seconds: f64,
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
                        .prompt(&user_text(&ex.question, setup.instruction));
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
    for (ex, response) in examples.iter().zip(responses) {
        let g = host.call_grade(hook, response, ex)?;
        summary.add(g.verdict);
        records.push(EvalRecord {
            id: ex.id.clone(),
            response: response.clone(),
            verdict: g.verdict,
            answer: g.answer,
        });
    }
    let result = EvalResult {
        accuracy: summary.accuracy,
        correct: summary.correct,
        wrong: summary.wrong,
        invalid: summary.invalid,
        total: summary.total,
        seconds,
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
