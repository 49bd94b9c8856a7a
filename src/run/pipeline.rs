//! The order of stages: eval before, sample, grade, weigh, pair, reference, train, eval after,
//! each stage's output written into the run folder as it finishes.

use std::time::Instant;

use anyhow::Result;

use super::context::{Run, Timings};
use super::evals::{eval_examples, eval_model};
use super::manifest::write_manifest;
use super::summary::{RunSummary, write_plots};
use super::{RunRequest, Until, keys, write_jsonl};
use crate::data::{
    Example, ExampleFormat, PairRecord, local_path, overlap, read_examples, read_pairs,
};
use crate::error::user_error;
use crate::grade::Verdict;
use crate::recipe::{DataFormat, PairMode};
use crate::stages::grade::grade_completions;
use crate::stages::pair::{PairRow, PairText, Questions, pair};
use crate::stages::reference::fill_reference;
use crate::stages::sample::{SampleInputs, Server, connect, sample};
use crate::stages::train::{TrainInputs, train};
use crate::stages::weigh::{question_stats, weigh};
use crate::store::{sha256_path, write_json_atomic};
use crate::train::TrainOutputs;

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
        eval_model(&run, (&path, &examples), "before", &run.model_sha)
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
    let questions = if spec.format == DataFormat::Pairs
        || matches!(run.recipe.pairs.mode, PairMode::OffPolicy(_))
    {
        None
    } else {
        let fmt = ExampleFormat {
            format: spec.format,
            prompt_field: &spec.prompt_field,
            gold_field: &spec.gold_field,
            split: spec.split,
        };
        Some(read_examples(
            &train_path,
            &fmt,
            spec.limit,
            spec.shuffle_seed,
        )?)
    };
    if let (Some(train), Some((_, eval))) = (&questions, &evals) {
        check_overlap(run, train, eval)?;
    }
    let samples_ahead = spec.format != DataFormat::Pairs
        && !matches!(run.recipe.pairs.mode, PairMode::OffPolicy(_));
    let server = if samples_ahead {
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
            eval_model(run, (path, ex), "before", &run.model_sha)
        })?;
        summary.eval_before = Some(r);
    }
    let (off_policy, only_off_policy) = match &run.recipe.pairs.mode {
        PairMode::OnPolicy => (Vec::new(), false),
        PairMode::OffPolicy(p) => (read_pairs(p)?, true),
        PairMode::Hybrid(p) => (read_pairs(p)?, false),
    };
    let (mut records, mut rows) = if only_off_policy {
        (Vec::new(), None)
    } else if spec.format == DataFormat::Pairs {
        let pairs = read_pairs(&train_path)?;
        (
            crate::data::select(pairs, spec.limit, spec.shuffle_seed),
            None,
        )
    } else {
        let examples = questions.unwrap_or_default();
        let key = sample_key.clone().unwrap_or_default();
        let stage = QuestionStage {
            run,
            server: server.as_ref(),
            until,
        };
        let Some(rows) = stage.run(&examples, &key, summary, timings)? else {
            return Ok(());
        };
        (rows.iter().map(PairRow::record).collect(), Some(rows))
    };
    let own = records.len();
    records.extend(off_policy);
    summary.pairs = records.len();
    if records.is_empty() {
        return Err(user_error("no preference pairs to train on"));
    }
    let (batch, max_len) = (run.recipe.train.batch_size, run.recipe.train.max_length);
    let key = keys::reference_key(&run.model_sha, &records, batch, max_len);
    let cache = run
        .recipe
        .run
        .cache
        .join("reference")
        .join(format!("{key}.jsonl"));
    timings.time("reference", || {
        fill_reference(&run.model, &mut records, batch, max_len, &cache)
    })?;
    write_pair_files(run, rows.as_mut(), &records, own)?;
    if until == Until::Pairs {
        return Ok(());
    }
    let metrics = timings.time("train", || train_stage(run, &records))?;
    summary.steps = metrics.len();
    summary.first_loss = metrics.first().map(|m| m.loss);
    summary.last_loss = metrics.last().map(|m| m.loss);
    summary.last_margin = metrics.last().map(|m| m.margin);
    summary.last_reward_accuracy = metrics.last().map(|m| m.reward_accuracy);
    if let (Some((path, ex)), true) = (&evals, run.recipe.eval.after) {
        let sha = sha256_path(&run.dir.join("final").join("model.safetensors"))?;
        let r = timings.time("eval after", || eval_model(run, (path, ex), "after", &sha))?;
        summary.eval_after = Some(r);
    }
    let weights: Vec<f64> = records.iter().filter_map(|p| p.weight).collect();
    write_json_atomic(
        &run.dir.join("eval.json"),
        &serde_json::json!({"before": summary.eval_before, "after": summary.eval_after}),
    )?;
    write_plots(
        &run.dir,
        &metrics,
        &weights,
        summary.eval_before.as_ref(),
        summary.eval_after.as_ref(),
    )
}

/// The stages that work per question: sample, grade, weigh and pair.
struct QuestionStage<'a> {
    run: &'a Run,
    server: Option<&'a Server>,
    until: Until,
}

impl QuestionStage<'_> {
    /// Sample, grade, weigh and pair the questions; `None` when the command stops after sampling.
    fn run(
        &self,
        examples: &[Example],
        key: &str,
        summary: &mut RunSummary,
        timings: &mut Timings,
    ) -> Result<Option<Vec<PairRow>>> {
        let run = self.run;
        let recipe = &run.recipe;
        summary.questions = examples.len();
        let cache = recipe
            .run
            .cache
            .join("samples")
            .join(format!("{key}.jsonl"));
        let inputs = SampleInputs {
            model: &run.model,
            template: &run.template,
            instruction: &recipe.data.instruction,
            server: self.server,
        };
        let completions = timings.time("sample", || {
            sample(&inputs, examples, &recipe.sampling, &cache)
        })?;
        write_jsonl(&run.dir.join("samples.jsonl"), &completions)?;
        summary.samples = completions.len();
        if self.until == Until::Sample {
            return Ok(None);
        }
        let host = &run.hooks.host;
        let graded = timings.time("grade", || {
            grade_completions(host, run.hooks.grade, examples, &completions)
        })?;
        write_jsonl(&run.dir.join("grades.jsonl"), &graded)?;
        let correct = graded
            .iter()
            .filter(|g| g.verdict == Verdict::Correct)
            .count();
        summary.sample_accuracy = correct as f64 / graded.len().max(1) as f64;
        let stats = question_stats(examples, &graded);
        let weights = timings.time("weigh", || {
            weigh(host, run.hooks.weight, &stats, &recipe.weight)
        })?;
        summary.weight_mean = weights.iter().sum::<f64>() / weights.len().max(1) as f64;
        let text = PairText {
            tokenizer: &run.model.tokenizer,
            template: &run.template,
            instruction: &recipe.data.instruction,
        };
        let questions = Questions {
            examples,
            completions: &completions,
            graded: &graded,
            stats: &stats,
            weights: &weights,
        };
        let (rows, skips) = pair(
            &text,
            &questions,
            &recipe.pairs,
            recipe.run.seed,
            (host, run.hooks.pair),
        )?;
        summary.pairs = rows.len();
        summary.skipped = skips.clone();
        if rows.is_empty() && self.until > Until::Pairs {
            let pair_rule = match run.hooks.pair {
                Some(h) => format!("fn pair(group) in {}", run.hooks.host.file(h.unit)),
                None => "the pair rule".to_string(),
            };
            return Err(user_error(format!(
                "no preference pairs: every question was skipped ({} by {pair_rule}, {} with no \
                 wrong sample, {} with nothing correct and no gold to fall back on; see \
                 grades.jsonl)",
                skips.by_hook, skips.no_wrong_sample, skips.no_chosen
            )));
        }
        Ok(Some(rows))
    }
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

/// `pairs.jsonl` (the on-policy rows with their reference log-probs, or the given pairs) and
/// `off_policy_pairs.jsonl` in hybrid mode.
fn write_pair_files(
    run: &Run,
    rows: Option<&mut Vec<PairRow>>,
    records: &[PairRecord],
    own: usize,
) -> Result<()> {
    match rows {
        Some(rows) => {
            for (row, rec) in rows.iter_mut().zip(&records[..own]) {
                row.ref_chosen_logps = rec.ref_chosen_logps;
                row.ref_rejected_logps = rec.ref_rejected_logps;
            }
            write_jsonl(&run.dir.join("pairs.jsonl"), rows)?;
            if records.len() > own {
                write_jsonl(&run.dir.join("off_policy_pairs.jsonl"), &records[own..])?;
            }
            Ok(())
        }
        None => write_jsonl(&run.dir.join("pairs.jsonl"), records),
    }
}

/// The train stage with its outputs in the run folder.
fn train_stage(run: &mut Run, records: &[PairRecord]) -> Result<Vec<crate::train::StepMetrics>> {
    let out = TrainOutputs {
        metrics: run.dir.join("metrics.jsonl"),
        checkpoints: run.dir.join("checkpoints"),
        final_dir: run.dir.join("final"),
    };
    let inputs = TrainInputs {
        model: &mut run.model,
        model_path: &run.model_path,
        model_sha: &run.model_sha,
        host: &run.hooks.host,
        hook: run.hooks.loss,
        seed: run.recipe.run.seed,
    };
    train(inputs, records, &run.recipe.train, &run.recipe.loss, &out)
}
