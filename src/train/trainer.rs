//! The training loop: epochs of seeded-shuffled pairs, micro-batches with gradient accumulation,
//! clipping, the learning-rate schedule, AdamW, per-step metrics, and checkpoints it resumes from.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;

use super::batch::TokenPair;
use super::checkpoint::save_checkpoint_with;
use super::metrics::{StepMetrics, Tally, write_metrics};
use super::report::Report;
use super::schedule::LrSchedule;
use super::state::{self, TrainState, write_state};
use super::step::{LossFn, StepBatch, StepOutput, add_grads, forward_backward};
use super::{AdamW, AdamWConfig, clip_scale, grad_norm};
use crate::error::user_error;
use crate::model::LoadedModel;
use crate::recipe::{Limit, LossSpec, TrainSpec};
use crate::rng::{self, Rng};
use crate::script::{HookRef, ScriptHost};
use crate::store::JsonlLog;
use crate::store::remove_dir_atomic;

/// A pair ready for training.
#[derive(Debug, Clone)]
pub struct TrainPair {
    pub id: String,
    pub tokens: TokenPair,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
    pub weight: f64,
}

/// Where the loop writes.
pub struct TrainOutputs {
    pub metrics: PathBuf,
    /// The TensorBoard event file, when `train.report_to` asks for one.
    pub tensorboard: Option<PathBuf>,
    pub checkpoints: PathBuf,
    pub final_dir: PathBuf,
}

/// Everything the loop uses.
pub struct Trainer<'a> {
    pub model: &'a LoadedModel,
    pub host: &'a ScriptHost,
    pub hook: HookRef,
    pub loss: &'a LossSpec,
    pub spec: &'a TrainSpec,
    pub seed: u64,
    /// The content key of the training inputs; only checkpoints with this key are resumed from.
    pub key: &'a str,
}

/// The optimizer steps: each a list of micro-batches, each a list of pair indices.
pub fn plan_steps(n: usize, spec: &TrainSpec, seed: u64) -> Vec<(usize, Vec<Vec<usize>>)> {
    let mut steps = Vec::new();
    for epoch in 0..spec.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::derived(seed, &[rng::hash_str("train"), epoch as u64]).shuffle(&mut order);
        let micro: Vec<Vec<usize>> = order
            .chunks(spec.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        for group in micro.chunks(spec.grad_accum) {
            steps.push((epoch, group.to_vec()));
        }
    }
    if let Limit::First(max) = spec.max_steps {
        steps.truncate(max);
    }
    steps
}

impl Trainer<'_> {
    /// Trains on `pairs`, continuing from the furthest checkpoint of the same inputs; returns the
    /// metrics of every step. Stops with [`Interrupted`](crate::interrupt::Interrupted) between
    /// steps after a signal, with the state saved in `checkpoints/latest`.
    pub fn run(&self, pairs: &[TrainPair], out: &TrainOutputs) -> Result<Vec<StepMetrics>> {
        let steps = plan_steps(pairs.len(), self.spec, self.seed);
        let schedule = LrSchedule::new(
            self.spec.lr,
            self.spec.warmup_ratio,
            steps.len(),
            self.spec.schedule,
        );
        let (names, vars): (Vec<String>, Vec<_>) = self.model.policy.vars().into_iter().unzip();
        let mut opt = AdamW::new(vars, self.adamw_config())?;
        let mut metrics = self.resume(out, &mut opt, steps.len())?;
        write_metrics(&out.metrics, &metrics)?;
        let report = Report::start(out.tensorboard.clone(), &metrics)?;
        let per_epoch = pairs
            .len()
            .div_ceil(self.spec.batch_size)
            .div_ceil(self.spec.grad_accum)
            .max(1);
        let (_, mut log) = JsonlLog::open_plain::<StepMetrics>(&out.metrics)?;
        let bar = crate::progress::bar(steps.len() as u64, "train");
        bar.skip(metrics.len() as u64);
        let mut saved = metrics.len();
        for (step, (_, micro)) in steps.iter().enumerate().skip(metrics.len()) {
            if crate::interrupt::requested() {
                bar.finish_and_clear();
                if saved != step {
                    let dir = out.checkpoints.join("latest");
                    self.save(&dir, &opt, &names, &metrics, steps.len())?;
                }
                let item = format!("step {} of {}", step + 1, steps.len());
                return Err(crate::interrupt::interrupted("train", item));
            }
            // Epochs done, as TRL counts them: 0.5 halfway through the first.
            let epoch = (step + 1) as f64 / per_epoch as f64;
            let m = self.step(pairs, &mut opt, &schedule, step, epoch, micro)?;
            bar.set_message(format!("loss {:.4} margin {:.3}", m.loss, m.margin));
            bar.inc(1);
            log.append(&m)?;
            log.flush()?;
            report.step(&m, steps.len(), self.spec.logging_steps)?;
            metrics.push(m);
            if let Some(dir) = self.checkpoint_dir(out, step + 1, steps.len()) {
                self.save(&dir, &opt, &names, &metrics, steps.len())?;
                saved = step + 1;
            }
        }
        bar.finish_and_clear();
        if saved < steps.len() {
            self.save(&out.final_dir, &opt, &names, &metrics, steps.len())?;
        }
        remove_dir_atomic(&out.checkpoints.join("latest"))?;
        Ok(metrics)
    }

    fn adamw_config(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.spec.betas.0,
            beta2: self.spec.betas.1,
            eps: self.spec.adam_eps,
            weight_decay: self.spec.weight_decay,
        }
    }

    /// Loads the furthest checkpoint of these inputs into the model and the optimizer; returns
    /// the metrics of the steps it holds (none when training starts afresh).
    fn resume(
        &self,
        out: &TrainOutputs,
        opt: &mut AdamW,
        total: usize,
    ) -> Result<Vec<StepMetrics>> {
        let dirs = state::candidates(&out.checkpoints, &out.final_dir)?;
        let Some((dir, saved)) = state::find_latest(&dirs, self.key)? else {
            return Ok(Vec::new());
        };
        if saved.total_steps != total {
            bail!(
                "{}: a checkpoint of {} steps, but these inputs plan {total}",
                dir.display(),
                saved.total_steps
            );
        }
        state::restore(self.model, opt, &dir, &saved)?;
        tracing::info!(
            "resuming training after step {} of {total} from {}",
            saved.step,
            dir.display()
        );
        Ok(saved.metrics)
    }

    /// Where the state after `done` steps goes, if anywhere: a numbered checkpoint every
    /// `checkpoint_every` steps, else `checkpoints/latest` every `resume_every` steps.
    fn checkpoint_dir(&self, out: &TrainOutputs, done: usize, total: usize) -> Option<PathBuf> {
        let every = |k: usize| k > 0 && done.is_multiple_of(k) && done < total;
        if every(self.spec.checkpoint_every) {
            Some(out.checkpoints.join(format!("step-{done:06}")))
        } else if every(self.spec.resume_every) {
            Some(out.checkpoints.join("latest"))
        } else {
            None
        }
    }

    /// A checkpoint folder with the resume state (the moments only while training is unfinished).
    fn save(
        &self,
        dir: &std::path::Path,
        opt: &AdamW,
        names: &[String],
        metrics: &[StepMetrics],
        total: usize,
    ) -> Result<()> {
        let state = TrainState {
            key: self.key.to_string(),
            step: metrics.len(),
            total_steps: total,
            optimizer_step: opt.step,
            seed: self.seed,
            metrics: metrics.to_vec(),
        };
        let moments = (!state.is_complete()).then_some((opt, names));
        save_checkpoint_with(self.model, dir, |tmp| write_state(tmp, &state, moments))
    }

    /// One optimizer step: forward and backward over each micro-batch of `micro` (indices into
    /// `pairs`), the summed gradients clipped, AdamW at the schedule's rate.
    fn step(
        &self,
        pairs: &[TrainPair],
        opt: &mut AdamW,
        schedule: &LrSchedule,
        step: usize,
        epoch: f64,
        micro: &[Vec<usize>],
    ) -> Result<StepMetrics> {
        let started = Instant::now();
        let mut grads: Vec<Option<Tensor>> = vec![None; opt.vars().len()];
        let (mut loss, mut tokens) = (0.0, 0usize);
        let mut hook: std::collections::BTreeMap<String, f64> = Default::default();
        let mut tally = Tally::default();
        for batch in micro {
            let members: Vec<&TrainPair> = batch.iter().map(|&i| &pairs[i]).collect();
            let out = self
                .micro_step(&members, 1.0 / micro.len() as f64)
                .with_context(|| {
                    let ids: Vec<&str> = members.iter().map(|p| p.id.as_str()).collect();
                    format!("training step {} (pairs {})", step + 1, ids.join(", "))
                })?;
            loss += out.loss / micro.len() as f64;
            for (name, value) in &out.metrics {
                *hook.entry(name.clone()).or_default() += value / micro.len() as f64;
            }
            tokens += tally_members(&mut tally, &members, &out, self.loss.beta);
            add_grads(&mut grads, out.grads)?;
        }
        let norm = grad_norm(&grads)?;
        if !norm.is_finite() {
            return Err(user_error(format!(
                "training step {}: the gradient norm is {norm}",
                step + 1
            )));
        }
        let lr = schedule.lr(step);
        opt.step(&grads, lr, clip_scale(norm, self.spec.max_grad_norm))?;
        Ok(StepMetrics {
            grad_norm: norm,
            lr,
            tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64(),
            hook,
            ..tally.into_metrics(step + 1, epoch, loss)
        })
    }

    /// Forward and backward over one micro-batch, its loss and gradients scaled by `scale`.
    fn micro_step(&self, members: &[&TrainPair], scale: f64) -> Result<StepOutput> {
        let tok: Vec<TokenPair> = members.iter().map(|p| p.tokens.clone()).collect();
        let rc: Vec<Option<f64>> = members.iter().map(|p| Some(p.ref_chosen)).collect();
        let rr: Vec<Option<f64>> = members.iter().map(|p| Some(p.ref_rejected)).collect();
        let w: Vec<f64> = members.iter().map(|p| p.weight).collect();
        let sb = StepBatch {
            pairs: &tok,
            ref_chosen: &rc,
            ref_rejected: &rr,
            weights: &w,
        };
        let loss_fn = LossFn {
            host: self.host,
            hook: self.hook,
            spec: self.loss,
        };
        forward_backward(
            &self.model.policy,
            self.model.tokenizer.pad_id(),
            loss_fn,
            &sb,
            scale,
        )
    }
}

/// Adds a micro-batch's pairs to the step's reward tally; returns the tokens its forward passes
/// covered (an anchor's one pass, a pair's two).
fn tally_members(tally: &mut Tally, members: &[&TrainPair], out: &StepOutput, beta: f64) -> usize {
    let mut tokens = 0;
    for (i, p) in members.iter().enumerate() {
        let policy = (out.chosen_logps[i], out.rejected_logps[i]);
        let reference = (p.ref_chosen, p.ref_rejected);
        if p.tokens.is_anchor() {
            tally.add_anchor(p.weight);
            tokens += p.tokens.prompt.len() + p.tokens.chosen.len();
        } else {
            tally.add(policy, reference, beta, p.weight);
            tokens += p.tokens.prompt.len() * 2 + p.tokens.chosen.len() + p.tokens.rejected.len();
        }
    }
    tokens
}
