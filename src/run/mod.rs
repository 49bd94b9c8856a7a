//! Stage orchestration: the whole pipeline (`trainer --script S`) or its first stages
//! (`trainer sample`, `trainer pairs`, `trainer train`), writing every stage's file into the run
//! folder and reusing content-keyed caches.

mod eval_stage;
mod fingerprint;
mod folder;
mod inputs;
mod keys;
mod manifest_file;
mod sampling;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

pub use fingerprint::{Fingerprint, fingerprints};
pub use folder::{create_run_dir, timestamp, write_jsonl};
pub use summary::{RunSummary, render, write_plots};

use crate::batch::tokenize_pair;
use crate::cli::RunArgs;
use crate::data::{Example, ExampleFormat, PairRecord, read_examples, read_pairs};
use crate::error::user_error;
use crate::grade::{Verdict, grade_completions};
use crate::hookset::HookSet;
use crate::manifest::{sha256_path, write_atomic, write_json_atomic};
use crate::model::{ChatTemplate, LoadedModel, check_quantizable, load_model_on};
use crate::pair::{PairInputs, PairRow, build_pairs};
use crate::recipe::{DataFormat, LoraSpec, PairMode, Recipe, TokenizerChoice};
use crate::reference::fill_reference;
use crate::train::{StepMetrics, TrainOutputs, TrainPair, Trainer};
use crate::weigh::{question_stats, weigh};
use eval_stage::{eval_examples, eval_stage};
use inputs::{local_path, model_path};
use manifest_file::write_manifest;

/// How far a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    Sample,
    Pairs,
    Train,
    All,
}

impl Until {
    /// The name recorded in `manifest.json`.
    pub fn name(self) -> &'static str {
        match self {
            Until::Sample => "sample",
            Until::Pairs => "pairs",
            Until::Train => "train",
            Until::All => "all",
        }
    }
}

/// The state of a run in progress.
struct Run {
    recipe: Recipe,
    hooks: HookSet,
    dir: PathBuf,
    model: LoadedModel,
    template: ChatTemplate,
    model_sha: String,
    model_path: PathBuf,
    /// The last stage this command runs (`manifest.json`'s `until`).
    until: &'static str,
    timings: Vec<(String, f64)>,
    /// The sampling server (`sampling.backend = "openai"`), connected when sampling is ahead.
    server: Option<crate::openai::Server>,
}

impl Run {
    fn timed<T>(&mut self, stage: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let out = f(self).with_context(|| format!("stage `{stage}`"))?;
        self.timings
            .push((stage.to_string(), started.elapsed().as_secs_f64()));
        Ok(out)
    }
}

/// Runs the pipeline up to `until`.
pub fn run(args: &RunArgs, until: Until) -> Result<()> {
    let started = Instant::now();
    let mut run = open_run(args, until.name())?;
    crate::interrupt::install()?;
    let model_path = run.model_path.clone();
    let mut summary = RunSummary {
        run_dir: run.dir.display().to_string(),
        ..RunSummary::default()
    };
    pipeline(&mut run, until, &mut summary, &model_path)?;
    finish(&run, summary, started)
}

/// `trainer eval`: the accuracy of `model.path` on the eval questions.
pub fn run_eval(args: &RunArgs) -> Result<()> {
    let started = Instant::now();
    let mut run = open_run(args, "eval")?;
    crate::interrupt::install()?;
    let Some((path, examples)) = eval_examples(&run)? else {
        return Err(user_error(
            "eval.data is empty: there is nothing to evaluate",
        ));
    };
    let model_path = run.model_path.clone();
    write_manifest(&run, &model_path, (&path, &sha256_path(&path)?), None, None)?;
    let sha = run.model_sha.clone();
    let result = run.timed("eval", |r| eval_stage(r, &examples, "before", &sha))?;
    write_json_atomic(
        &run.dir.join("eval.json"),
        &serde_json::json!({ "before": result }),
    )?;
    let summary = RunSummary {
        run_dir: run.dir.display().to_string(),
        eval_before: Some(result),
        ..RunSummary::default()
    };
    finish(&run, summary, started)
}

fn finish(run: &Run, mut summary: RunSummary, started: Instant) -> Result<()> {
    summary.hooks = run
        .hooks
        .describe()
        .into_iter()
        .map(|(k, v)| (k.name().to_string(), v))
        .collect();
    summary.weighting = match run.recipe.loss.weighting {
        crate::recipe::Weighting::None => "none".into(),
        crate::recipe::Weighting::Wpo { .. } => "wpo".into(),
    };
    summary.seed = run.recipe.run.seed;
    summary.timings = run.timings.clone();
    summary.total_seconds = started.elapsed().as_secs_f64();
    write_json_atomic(&run.dir.join("summary.json"), &summary)?;
    folder::mark_finished(&run.dir)?;
    print!("{}", render(&summary));
    Ok(())
}

/// Resolves the recipe (checking an exported recipe's inputs), compiles the hooks, loads the
/// model, then opens the run folder (an unfinished one of the same command `until` and recipe
/// when the folder name is timestamped).
fn open_run(args: &RunArgs, until: &'static str) -> Result<Run> {
    let (layered, exported) = crate::export::load_recipe(&crate::app::recipe_input(args))?;
    let recipe = layered.resolve()?;
    let near = exported.as_ref().map(|e| e.plugins_near());
    let hooks = HookSet::load_near(&recipe, near.as_deref())?;
    if let Some(e) = &exported {
        e.check_inputs(&recipe, args.allow_different_inputs)?;
    }
    for (kind, source) in hooks.describe() {
        tracing::info!("hook {}: {source}", kind.signature());
    }
    let template = ChatTemplate::from_recipe(&recipe.model.template, &recipe.model.system);
    let tokenizer = match &recipe.model.tokenizer {
        TokenizerChoice::File(p) => Some(p.clone()),
        TokenizerChoice::FromModel => None,
    };
    let device = recipe.model.device.open("model.device")?;
    let model_path = model_path(&recipe, &template)?;
    if recipe.sampling.quantized {
        check_quantizable(&model_path, &device, "sampling.quantized = true")?;
    }
    tracing::info!("loading {}", model_path.display());
    let model = load_model_on(&model_path, tokenizer.as_deref(), &device)?;
    let model_sha = sha256_path(&model_path)?;
    // The run folder is made only once the model has loaded: a bad model or export leaves none.
    let recipe_text = layered.annotated_toml()?;
    let run_key = keys::run_key(until, &recipe_text, &hooks.host.sources());
    let dir = folder::open_run_dir(&recipe.run, &run_key)?;
    write_atomic(&dir.join("recipe.toml"), recipe_text.as_bytes())?;
    folder::copy_scripts(&dir, &hooks.host.sources())?;
    Ok(Run {
        recipe,
        hooks,
        dir,
        model,
        template,
        model_sha,
        model_path,
        until,
        timings: Vec::new(),
        server: None,
    })
}

fn pipeline(
    run: &mut Run,
    until: Until,
    summary: &mut RunSummary,
    model_path: &Path,
) -> Result<()> {
    let spec = run.recipe.data.clone();
    let train_path = local_path(&spec.source, "data.train", &run.recipe)?;
    let eval_examples = if until == Until::All {
        eval_examples(run)?
    } else {
        None
    };
    let data_sha = sha256_path(&train_path)?;
    if spec.format != DataFormat::Pairs && !matches!(run.recipe.pairs.mode, PairMode::OffPolicy(_))
    {
        run.server = sampling::connect(run)?;
    }
    let server = run.server.as_ref().map(|s| &s.identity);
    let sample_key = (spec.format != DataFormat::Pairs).then(|| {
        keys::sample_key(
            &run.model_sha,
            &data_sha,
            &spec,
            &run.template,
            &run.recipe.sampling,
            server,
        )
    });
    write_manifest(
        run,
        model_path,
        (&train_path, &data_sha),
        eval_examples.as_ref().map(|(p, _)| p.as_path()),
        sample_key.clone(),
    )?;
    if let (Some((_, ex)), true) = (&eval_examples, run.recipe.eval.before) {
        let sha = run.model_sha.clone();
        let r = run.timed("eval before", |r| eval_stage(r, ex, "before", &sha))?;
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
        let fmt = ExampleFormat {
            format: spec.format,
            prompt_field: &spec.prompt_field,
            gold_field: &spec.gold_field,
        };
        let examples = read_examples(&train_path, &fmt, spec.limit, spec.shuffle_seed)?;
        let key = sample_key.clone().unwrap_or_default();
        let rows = match question_stage(run, &examples, &key, until, summary)? {
            Some(rows) => rows,
            None => return Ok(()),
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
    let cache = run.recipe.run.cache.join("reference");
    run.timed("reference", |r| {
        let cache = cache.join(format!("{key}.jsonl"));
        fill_reference(&r.model, &mut records, batch, max_len, &cache)
    })?;
    write_pair_files(run, rows.as_mut(), &records, own)?;
    if until == Until::Pairs {
        return Ok(());
    }
    let metrics = run.timed("train", |r| train_stage(r, &records))?;
    summary.steps = metrics.len();
    summary.first_loss = metrics.first().map(|m| m.loss);
    summary.last_loss = metrics.last().map(|m| m.loss);
    summary.last_margin = metrics.last().map(|m| m.margin);
    summary.last_reward_accuracy = metrics.last().map(|m| m.reward_accuracy);
    if let (Some((_, ex)), true) = (&eval_examples, run.recipe.eval.after) {
        let sha = sha256_path(&run.dir.join("final").join("model.safetensors"))?;
        let r = run.timed("eval after", |r| eval_stage(r, ex, "after", &sha))?;
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

/// Sample, grade, weigh and pair the questions; `None` when the command stops after sampling.
fn question_stage(
    run: &mut Run,
    examples: &[Example],
    key: &str,
    until: Until,
    summary: &mut RunSummary,
) -> Result<Option<Vec<PairRow>>> {
    summary.questions = examples.len();
    let cache = run
        .recipe
        .run
        .cache
        .join("samples")
        .join(format!("{key}.jsonl"));
    let completions = run.timed("sample", |r| sampling::sample(r, examples, &cache))?;
    write_jsonl(&run.dir.join("samples.jsonl"), &completions)?;
    summary.samples = completions.len();
    if until == Until::Sample {
        return Ok(None);
    }
    let graded = run.timed("grade", |r| {
        grade_completions(&r.hooks.host, r.hooks.grade, examples, &completions)
    })?;
    write_jsonl(&run.dir.join("grades.jsonl"), &graded)?;
    let correct = graded
        .iter()
        .filter(|g| g.verdict == Verdict::Correct)
        .count();
    summary.sample_accuracy = correct as f64 / graded.len().max(1) as f64;
    let stats = question_stats(examples, &graded);
    let weights = run.timed("weigh", |r| {
        weigh(&r.hooks.host, r.hooks.weight, &stats, &r.recipe.weight)
    })?;
    summary.weight_mean = weights.iter().sum::<f64>() / weights.len().max(1) as f64;
    let prompts: Vec<String> = examples
        .iter()
        .map(|e| {
            run.template.prompt(&crate::sample::user_text(
                &e.question,
                &run.recipe.data.instruction,
            ))
        })
        .collect();
    let first_eos: Vec<u32> = run
        .model
        .tokenizer
        .eos_ids()
        .iter()
        .take(1)
        .copied()
        .collect();
    let eos_text = run.model.tokenizer.decode(&first_eos)?;
    let responses: Vec<String> = completions
        .iter()
        .map(|c| run.model.tokenizer.decode(&c.token_ids))
        .collect::<Result<_>>()?;
    let inputs = PairInputs {
        examples,
        completions: &completions,
        graded: &graded,
        stats: &stats,
        weights: &weights,
        prompts: &prompts,
        responses: &responses,
        end_of_turn: &eos_text,
        gold_fallback: run.recipe.pairs.gold_fallback,
        seed: run.recipe.run.seed,
    };
    let (rows, skips) = build_pairs(&inputs, &run.hooks.host, run.hooks.pair)?;
    summary.pairs = rows.len();
    summary.skipped = skips;
    if rows.is_empty() && until > Until::Pairs {
        return Err(user_error(
            "no preference pairs: every question was skipped (see pairs.jsonl and grades.jsonl)",
        ));
    }
    Ok(Some(rows))
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

fn train_stage(run: &mut Run, records: &[PairRecord]) -> Result<Vec<StepMetrics>> {
    if let LoraSpec::On(lora) = &run.recipe.train.lora {
        // After the reference pass, which uses the base model either way.
        let base = run.model_path.display().to_string();
        run.model
            .policy
            .attach_lora(lora, run.recipe.run.seed, &base)?;
    }
    let pairs: Vec<TrainPair> = records
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(TrainPair {
                id: format!("{}", i + 1),
                tokens: tokenize_pair(&run.model.tokenizer, p, run.recipe.train.max_length)?,
                ref_chosen: p.ref_chosen_logps.unwrap_or_default(),
                ref_rejected: p.ref_rejected_logps.unwrap_or_default(),
                weight: p.weight.unwrap_or(1.0),
            })
        })
        .collect::<Result<_>>()?;
    let key = keys::train_key(
        &run.model_sha,
        &pairs,
        &run.recipe.train,
        &run.recipe.loss,
        &run.hooks.host.sources(),
        run.recipe.run.seed,
    );
    let trainer = Trainer {
        model: &run.model,
        host: &run.hooks.host,
        hook: run.hooks.loss,
        loss: &run.recipe.loss,
        spec: &run.recipe.train,
        seed: run.recipe.run.seed,
        key: &key,
    };
    let out = TrainOutputs {
        metrics: run.dir.join("metrics.jsonl"),
        checkpoints: run.dir.join("checkpoints"),
        final_dir: run.dir.join("final"),
    };
    trainer.run(&pairs, &out)
}
