//! One on-policy round of a run: sample from the policy as it stands, grade, weigh, pair, score
//! the pairs under the reference (the policy at the start of the round), train, and evaluate;
//! each round's files in its own folder.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::context::{Run, Timings};
use super::evals::eval_model;
use super::summary::{RoundSummary, RunSummary};
use super::{Until, keys, write_jsonl};
use crate::data::{Example, PairRecord};
use crate::error::user_error;
use crate::grade::Verdict;
use crate::stages::eval::EvalResult;
use crate::stages::grade::grade_completions;
use crate::stages::pair::{PairRow, PairSkips, PairText, Questions, pair};
use crate::stages::reference::fill_reference;
use crate::stages::sample::{Completion, SampleInputs, Server, sample};
use crate::stages::train::{TrainInputs, train};
use crate::stages::weigh::{question_stats, weigh};
use crate::store::{EVENT_FILE, append_scalars};
use crate::train::{StepMetrics, TrainOutputs, tail_mean};

/// Where round `k` of `of` writes: with one round, the run folder itself; otherwise `round-k/`,
/// except that the last round's model and eval are the run's own `final/` and
/// `eval_after.jsonl`.
pub(super) struct RoundPlace {
    pub k: usize,
    pub of: usize,
    pub dir: PathBuf,
    pub final_dir: PathBuf,
    pub eval_dir: PathBuf,
}

impl RoundPlace {
    pub fn new(run_dir: &Path, k: usize, of: usize) -> RoundPlace {
        let dir = if of == 1 {
            run_dir.to_path_buf()
        } else {
            run_dir.join(format!("round-{k}"))
        };
        let last = k == of;
        RoundPlace {
            k,
            of,
            final_dir: if last { run_dir } else { &dir }.join("final"),
            eval_dir: if last {
                run_dir.to_path_buf()
            } else {
                dir.clone()
            },
            dir,
        }
    }

    /// The stage's name in the timings: `sample`, or `round 2 sample` when there are rounds.
    pub fn stage(&self, stage: &str) -> String {
        if self.of == 1 {
            stage.to_string()
        } else {
            format!("round {} {stage}", self.k)
        }
    }
}

/// What the rest of the run needs from a round.
pub(super) struct RoundOutcome {
    pub metrics: Vec<StepMetrics>,
    pub weights: Vec<f64>,
    pub summary: RoundSummary,
}

/// The inputs every round shares.
pub(super) struct RoundInputs<'a> {
    /// The questions to sample, or `None` when every pair comes from a file.
    pub examples: Option<&'a [Example]>,
    pub data_sha: &'a str,
    /// Pairs from files: `data.train` in the pairs format, `pairs.off_policy`.
    pub given_pairs: &'a [PairRecord],
    pub server: Option<&'a Server>,
    pub evals: Option<&'a (PathBuf, Vec<Example>)>,
    pub until: Until,
}

/// Runs round `place.k` from the policy in `run.model`, whose weights hash to `model_sha`;
/// `None` when the command stops before training.
pub(super) fn round(
    run: &mut Run,
    inputs: &RoundInputs,
    place: &RoundPlace,
    model_sha: &str,
    (summary, timings): (&mut RunSummary, &mut Timings),
) -> Result<Option<RoundOutcome>> {
    if place.of > 1 {
        tracing::info!("round {} of {}", place.k, place.of);
        std::fs::create_dir_all(&place.dir)?;
    }
    let rows = match inputs.examples {
        Some(examples) => {
            let key = keys::sample_key(
                model_sha,
                inputs.data_sha,
                &run.recipe.data,
                &run.template,
                &run.recipe.sampling,
                inputs.server.map(|s| &s.identity),
            );
            let stage = QuestionStage {
                run,
                server: inputs.server,
                until: inputs.until,
                place,
            };
            let Some(rows) = stage.run(examples, &key, summary, timings)? else {
                return Ok(None);
            };
            Some(rows)
        }
        None => None,
    };
    let mut records: Vec<PairRecord> = rows.iter().flatten().map(PairRow::record).collect();
    let own = records.len();
    records.extend(inputs.given_pairs.iter().cloned());
    summary.pairs = records.len();
    if records.is_empty() {
        return Err(user_error("no preference pairs to train on"));
    }
    fill_reference_pass(run, &mut records, model_sha, place, timings)?;
    write_pair_files(&place.dir, rows, &records, own)?;
    if inputs.until == Until::Pairs {
        return Ok(None);
    }
    let metrics = timings.time(&place.stage("train"), || {
        train_stage(run, &records, place, model_sha)
    })?;
    let eval_after = eval_round(run, inputs, place, timings)?;
    if run.recipe.train.tensorboard {
        // The round's first step is 1; its start model's accuracy goes at step 0.
        let before = summary.eval_before.as_ref().filter(|_| place.k == 1);
        log_accuracy(place, [(0, before), (metrics.len(), eval_after.as_ref())])?;
    }
    let summary = round_summary(place.k, summary, records.len(), &metrics, eval_after);
    Ok(Some(RoundOutcome {
        metrics,
        weights: records.iter().filter_map(|p| p.weight).collect(),
        summary,
    }))
}

/// What round `k` did: its samples' accuracy, pairs, mean weight, training and eval.
fn round_summary(
    k: usize,
    run_summary: &RunSummary,
    pairs: usize,
    metrics: &[StepMetrics],
    eval_after: Option<EvalResult>,
) -> RoundSummary {
    RoundSummary {
        round: k,
        sample_accuracy: run_summary.sample_accuracy,
        pairs,
        weight_mean: run_summary.weight_mean,
        steps: metrics.len(),
        first_loss: metrics.first().map(|m| m.loss),
        last_loss: metrics.last().map(|m| m.loss),
        tail_reward_accuracy: tail_mean(metrics, |m| m.reward_accuracy),
        eval_after,
    }
}

/// The accuracy of the round's final model on the eval questions, when the recipe asks for it.
fn eval_round(
    run: &Run,
    inputs: &RoundInputs,
    place: &RoundPlace,
    timings: &mut Timings,
) -> Result<Option<EvalResult>> {
    let (Some((path, ex)), true) = (inputs.evals, run.recipe.eval.after) else {
        return Ok(None);
    };
    let sha = crate::store::sha256_path(&place.final_dir.join("model.safetensors"))?;
    Ok(Some(timings.time(&place.stage("eval after"), || {
        eval_model(run, (path, ex), (&place.eval_dir, "after"), &sha)
    })?))
}

/// Appends `eval/accuracy` at the given steps to the round's TensorBoard event file.
fn log_accuracy(place: &RoundPlace, evals: [(usize, Option<&EvalResult>); 2]) -> Result<()> {
    let path = place.dir.join(EVENT_FILE);
    for (step, eval) in evals {
        if let Some(e) = eval {
            append_scalars(&path, step as u64, &[("eval/accuracy", e.accuracy)])?;
        }
    }
    Ok(())
}

/// Fills in the reference log-probs of `records` with the policy as it stands (cached by its
/// hash and the pairs).
fn fill_reference_pass(
    run: &Run,
    records: &mut [PairRecord],
    model_sha: &str,
    place: &RoundPlace,
    timings: &mut Timings,
) -> Result<()> {
    let (batch, max_len) = (run.recipe.train.batch_size, run.recipe.train.max_length);
    let key = keys::reference_key(model_sha, records, batch, max_len);
    let cache = run
        .recipe
        .run
        .cache
        .join("reference")
        .join(format!("{key}.jsonl"));
    timings.time(&place.stage("reference"), || {
        fill_reference(&run.model, records, batch, max_len, &cache)
    })
}

/// The stages that work per question: sample, grade, weigh and pair.
struct QuestionStage<'a> {
    run: &'a Run,
    server: Option<&'a Server>,
    until: Until,
    place: &'a RoundPlace,
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
        let (run, place) = (self.run, self.place);
        let recipe = &run.recipe;
        summary.questions = examples.len();
        let completions = self.sample(examples, key, timings)?;
        summary.samples = completions.len();
        if self.until == Until::Sample {
            return Ok(None);
        }
        let host = &run.hooks.host;
        let graded = timings.time(&place.stage("grade"), || {
            grade_completions(host, run.hooks.grade, examples, &completions)
        })?;
        write_jsonl(&place.dir.join("grades.jsonl"), &graded)?;
        let correct = graded
            .iter()
            .filter(|g| g.verdict == Verdict::Correct)
            .count();
        summary.sample_accuracy = correct as f64 / graded.len().max(1) as f64;
        let stats = question_stats(examples, &graded);
        let weights = timings.time(&place.stage("weigh"), || {
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
        summary.anchors = rows.iter().filter(|r| r.is_anchor()).count();
        summary.skipped = skips.clone();
        if rows.is_empty() && self.until > Until::Pairs {
            return Err(self.no_pairs(&skips));
        }
        Ok(Some(rows))
    }

    /// The round's samples (from the cache under `key` where it has them), also written to
    /// `samples.jsonl`.
    fn sample(
        &self,
        examples: &[Example],
        key: &str,
        timings: &mut Timings,
    ) -> Result<Vec<Completion>> {
        let (run, place) = (self.run, self.place);
        let recipe = &run.recipe;
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
        let completions = timings.time(&place.stage("sample"), || {
            sample(&inputs, examples, &recipe.sampling, &cache)
        })?;
        write_jsonl(&place.dir.join("samples.jsonl"), &completions)?;
        Ok(completions)
    }

    /// The error for a round whose every question was skipped, with the counts of why.
    fn no_pairs(&self, skips: &PairSkips) -> anyhow::Error {
        let (run, place) = (self.run, self.place);
        let pair_rule = match run.hooks.pair {
            Some(h) => format!("fn pair(group) in {}", run.hooks.host.file(h.unit)),
            None => "the pair rule".to_string(),
        };
        user_error(format!(
            "no preference pairs{}: every question was skipped ({} by {pair_rule}, {} with no \
             wrong sample, {} with nothing correct and no gold to fall back on; see grades.jsonl)",
            if place.of > 1 {
                format!(" in round {}", place.k)
            } else {
                String::new()
            },
            skips.by_hook,
            skips.no_wrong_sample,
            skips.no_chosen
        ))
    }
}

/// `pairs.jsonl` (the on-policy rows with their reference log-probs, or the given pairs) and
/// `off_policy_pairs.jsonl` in hybrid mode, in `dir`.
pub(super) fn write_pair_files(
    dir: &Path,
    rows: Option<Vec<PairRow>>,
    records: &[PairRecord],
    own: usize,
) -> Result<()> {
    match rows {
        Some(mut rows) => {
            for (row, rec) in rows.iter_mut().zip(&records[..own]) {
                row.ref_chosen_logps = rec.ref_chosen_logps;
                row.ref_rejected_logps = rec.ref_rejected_logps;
            }
            write_jsonl(&dir.join("pairs.jsonl"), &rows)?;
            if records.len() > own {
                write_jsonl(&dir.join("off_policy_pairs.jsonl"), &records[own..])?;
            }
            Ok(())
        }
        None => write_jsonl(&dir.join("pairs.jsonl"), records),
    }
}

/// The train stage with its outputs in the round's folder.
pub(super) fn train_stage(
    run: &mut Run,
    records: &[PairRecord],
    place: &RoundPlace,
    model_sha: &str,
) -> Result<Vec<StepMetrics>> {
    let out = TrainOutputs {
        metrics: place.dir.join("metrics.jsonl"),
        tensorboard: (run.recipe.train.tensorboard).then(|| place.dir.join(EVENT_FILE)),
        checkpoints: place.dir.join("checkpoints"),
        final_dir: place.final_dir.clone(),
    };
    let inputs = TrainInputs {
        model: &mut run.model,
        model_path: &run.model_path,
        model_sha,
        host: &run.hooks.host,
        hook: run.hooks.loss,
        seed: run.recipe.run.seed,
    };
    train(inputs, records, &run.recipe.train, &run.recipe.loss, &out)
}
