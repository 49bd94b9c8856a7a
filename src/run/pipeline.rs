//! The order of stages: eval before, sample, grade, weigh, pair, reference, train, eval after,
//! each stage's output written into the run folder as it finishes.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::context::{Run, Timings};
use super::evals::{eval_examples, eval_model, paired_change};
use super::manifest::write_manifest;
use super::round::{RoundInputs, RoundOutcome, RoundPlace, round};
use super::summary::{RunSummary, write_plots};
use super::{RunRequest, Until, keys};
use crate::data::{
    Example, ExampleFormat, PairFinish, PairRecord, local_path, overlap, read_examples,
    read_training_pairs,
};
use crate::error::user_error;
use crate::recipe::{DataFormat, PairMode};
use crate::stages::eval::EvalResult;
use crate::stages::sample::connect;
use crate::store::{sha256_path, write_json_atomic};
use crate::train::{StepMetrics, loss_spikes};

/// Runs the pipeline up to `until`.
pub fn run(request: &RunRequest, until: Until) -> Result<()> {
    let started = Instant::now();
    crate::interrupt::install()?;
    let mut run = Run::open(request, until.name())?;
    let mut timings = Timings::default();
    let mut summary = RunSummary::default();
    pipeline(&mut run, until, &mut summary, &mut timings)?;
    run.finish(summary, timings, started)
}

/// `trainer eval`: the accuracy of `model.path` on the eval questions.
pub fn eval(request: &RunRequest) -> Result<()> {
    let started = Instant::now();
    crate::interrupt::install()?;
    let run = Run::open(request, "eval")?;
    let Some((path, examples)) = eval_examples(&run)? else {
        return Err(user_error(
            "eval.data is empty: there is nothing to evaluate",
        ));
    };
    write_manifest(&run, (&path, &sha256_path(&path)?), None, None, None)?;
    let mut timings = Timings::default();
    let result = timings.time("eval", || {
        eval_model(
            &run,
            (&path, &examples),
            (&run.dir, "before"),
            &run.model_sha,
        )
    })?;
    write_json_atomic(
        &run.dir.join("eval.json"),
        &serde_json::json!({ "before": result }),
    )?;
    let summary = RunSummary {
        eval_before: Some(result),
        ..RunSummary::default()
    };
    run.finish(summary, timings, started)
}

fn pipeline(
    run: &mut Run,
    until: Until,
    summary: &mut RunSummary,
    timings: &mut Timings,
) -> Result<()> {
    let spec = run.recipe.data.clone();
    let train_path = local_path(&spec.source, "data.train", &run.recipe)?;
    let evals = if until == Until::All {
        eval_examples(run)?
    } else {
        None
    };
    let data_sha = sha256_path(&train_path)?;
    // The training questions, read before any model work so that an eval set sharing questions
    // with them stops the run first.
    let questions = training_questions(run, &train_path)?;
    if let (Some(train), Some((_, eval))) = (&questions, &evals) {
        check_overlap(run, train, eval)?;
    }
    // A sampling server is needed exactly when there are questions to sample.
    let server = if questions.is_some() {
        connect(&run.recipe.sampling)?
    } else {
        None
    };
    let sample_key = (spec.format != DataFormat::Pairs).then(|| {
        keys::sample_key(
            &run.model_sha,
            &data_sha,
            &spec,
            &run.template,
            &run.recipe.sampling,
            server.as_ref().map(|s| &s.identity),
        )
    });
    write_manifest(
        run,
        (&train_path, &data_sha),
        evals.as_ref().map(|(p, _)| p.as_path()),
        sample_key.clone(),
        server.as_ref().map(|s| &s.identity),
    )?;
    if let (Some((path, ex)), true) = (&evals, run.recipe.eval.before) {
        let r = timings.time("eval before", || {
            eval_model(run, (path, ex), (&run.dir, "before"), &run.model_sha)
        })?;
        summary.eval_before = Some(r);
    }
    let given_pairs = pairs_from_files(run, &train_path)?;
    let inputs = RoundInputs {
        examples: questions.as_deref(),
        data_sha: &data_sha,
        given_pairs: &given_pairs,
        server: server.as_ref(),
        evals: evals.as_ref(),
        until,
    };
    run_rounds(run, &inputs, summary, timings)
}

/// The questions to sample from `data.train`, or `None` when every pair comes from a file.
fn training_questions(run: &Run, train_path: &Path) -> Result<Option<Vec<Example>>> {
    let spec = &run.recipe.data;
    if spec.format == DataFormat::Pairs || matches!(run.recipe.pairs.mode, PairMode::OffPolicy(_)) {
        return Ok(None);
    }
    let fmt = ExampleFormat {
        format: spec.format,
        prompt_field: &spec.prompt_field,
        gold_field: &spec.gold_field,
        split: spec.split,
    };
    Ok(Some(read_examples(
        train_path,
        &fmt,
        spec.limit,
        spec.shuffle_seed,
    )?))
}

/// The pairs that come from files: `data.train` in the pairs format (selected by `data.limit`
/// and `data.shuffle_seed`) and then `pairs.off_policy`, finished as TRL finishes them:
/// conversations rendered through the run's chat template, the tokenizer's EOS appended to chosen
/// and rejected.
fn pairs_from_files(run: &Run, train_path: &Path) -> Result<Vec<PairRecord>> {
    let spec = &run.recipe.data;
    let eos = run.model.tokenizer.eos_text()?;
    let finish = PairFinish {
        template: &run.template,
        eos: &eos,
    };
    let mut given = match &run.recipe.pairs.mode {
        PairMode::OnPolicy => Vec::new(),
        PairMode::OffPolicy(p) | PairMode::Hybrid(p) => read_training_pairs(p, &finish)?,
    };
    if spec.format == DataFormat::Pairs && !matches!(run.recipe.pairs.mode, PairMode::OffPolicy(_))
    {
        let pairs = read_training_pairs(train_path, &finish)?;
        let mut file = crate::data::select(pairs, spec.limit, spec.shuffle_seed);
        file.append(&mut given);
        given = file;
    }
    Ok(given)
}

/// Runs `train.rounds` rounds (one when the command stops before training), each from the
/// policy the last one left, then the run's totals.
fn run_rounds(
    run: &mut Run,
    inputs: &RoundInputs,
    summary: &mut RunSummary,
    timings: &mut Timings,
) -> Result<()> {
    let rounds = if inputs.until >= Until::Train {
        run.recipe.train.rounds
    } else {
        1
    };
    let mut model_sha = run.model_sha.clone();
    let mut outcomes: Vec<RoundOutcome> = Vec::new();
    for k in 1..=rounds {
        let place = RoundPlace::new(&run.dir, k, rounds);
        let Some(outcome) = round(run, inputs, &place, &model_sha, (summary, timings))? else {
            return Ok(());
        };
        if rounds > 1 {
            write_plots(&place.dir, &outcome.metrics, &outcome.weights, &[])?;
        }
        outcomes.push(outcome);
        model_sha = sha256_path(&place.final_dir.join("model.safetensors"))?;
    }
    finish_rounds(run, &outcomes, summary)
}

/// The run's totals from its rounds: the summary (the last round's figures, and every round's
/// own), `eval.json` and the plots of the whole run.
fn finish_rounds(run: &Run, outcomes: &[RoundOutcome], summary: &mut RunSummary) -> Result<()> {
    let metrics = joined_metrics(outcomes);
    let last = outcomes.last().map(|o| &o.summary);
    summary.steps = metrics.len();
    summary.first_loss = metrics.first().map(|m| m.loss);
    summary.last_loss = metrics.last().map(|m| m.loss);
    let with_rewards = metrics.iter().rev().find(|m| m.has_rewards());
    summary.last_margin = with_rewards.map(|m| m.margin);
    summary.last_reward_accuracy = with_rewards.map(|m| m.reward_accuracy);
    summary.tail_reward_accuracy = last.and_then(|r| r.tail_reward_accuracy);
    summary.loss_spikes = Some(outcomes.iter().map(|o| loss_spikes(&o.metrics, 5.0)).sum());
    summary.eval_after = last.and_then(|r| r.eval_after.clone());
    if summary.eval_before.is_some() && summary.eval_after.is_some() {
        summary.change = Some(paired_change(&run.dir)?);
    }
    if outcomes.len() > 1 {
        summary.rounds = outcomes.iter().map(|o| o.summary.clone()).collect();
    }
    write_json_atomic(
        &run.dir.join("eval.json"),
        &serde_json::json!({
            "before": summary.eval_before,
            "after": summary.eval_after,
            "rounds": summary.rounds.iter().map(|r| &r.eval_after).collect::<Vec<_>>(),
        }),
    )?;
    let weights: Vec<f64> = outcomes
        .last()
        .map(|o| o.weights.clone())
        .unwrap_or_default();
    write_plots(&run.dir, &metrics, &weights, &plotted_evals(summary))
}

/// The rounds' steps one after the other, numbered on.
fn joined_metrics(outcomes: &[RoundOutcome]) -> Vec<StepMetrics> {
    let mut metrics: Vec<StepMetrics> = Vec::new();
    for o in outcomes {
        let offset = metrics.len();
        metrics.extend(o.metrics.iter().map(|m| StepMetrics {
            step: m.step + offset,
            ..m.clone()
        }));
    }
    metrics
}

/// The accuracies the run's plot shows: before, then after each round (or after, with one).
fn plotted_evals(summary: &RunSummary) -> Vec<(String, &EvalResult)> {
    let mut evals: Vec<(String, &EvalResult)> = Vec::new();
    if let Some(b) = &summary.eval_before {
        evals.push(("before".into(), b));
    }
    for r in &summary.rounds {
        if let Some(a) = &r.eval_after {
            evals.push((format!("round {}", r.round), a));
        }
    }
    if summary.rounds.is_empty()
        && let Some(a) = &summary.eval_after
    {
        evals.push(("after".into(), a));
    }
    evals
}

/// Stops the run (or warns, with `eval.allow_overlap`) when eval questions are training questions.
fn check_overlap(run: &Run, train: &[Example], eval: &[Example]) -> Result<()> {
    let (count, first) = overlap(train, eval);
    let Some(first) = first else {
        return Ok(());
    };
    let what = format!(
        "{count} of the {} eval questions are also training questions (the first: {first})",
        eval.len()
    );
    if run.recipe.eval.allow_overlap {
        tracing::warn!("{what}; eval.allow_overlap = true, so the eval goes on");
        return Ok(());
    }
    Err(user_error(format!(
        "{what}: the eval would measure memorisation. Split one file into disjoint halves with \
         data.split = \"train\" and eval.split = \"eval\", or set eval.allow_overlap = true"
    )))
}
