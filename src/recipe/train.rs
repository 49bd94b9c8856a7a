//! Resolving the `[train]` table: the optimizer and schedule, rounds, where metrics go, and
//! `[train.lora]`. Every error names the key and the layer its value came from.

use anyhow::Result;

use super::keyed::Ctx;
use super::schema::{RawLora, RawTrain};
use super::spec::*;

pub(super) fn train(ctx: &Ctx, r: &RawTrain) -> Result<TrainSpec> {
    let schedule = ctx.choice(
        "train.schedule",
        &r.schedule,
        &[
            ("constant", Schedule::Constant),
            ("linear", Schedule::Linear),
            ("cosine", Schedule::Cosine),
        ],
    )?;
    Ok(TrainSpec {
        lr: ctx.positive("train.lr", r.lr)?,
        epochs: ctx.at_least_one("train.epochs", r.epochs)?,
        batch_size: ctx.at_least_one("train.batch_size", r.batch_size)?,
        grad_accum: ctx.at_least_one("train.grad_accum", r.grad_accum)?,
        schedule,
        warmup_ratio: ctx.in_range("train.warmup_ratio", r.warmup_ratio, 0.0, 1.0)?,
        max_grad_norm: ctx.non_negative("train.max_grad_norm", r.max_grad_norm)?,
        weight_decay: ctx.non_negative("train.weight_decay", r.weight_decay)?,
        betas: (
            ctx.in_range("train.adam_beta1", r.adam_beta1, 0.0, 0.999_999)?,
            ctx.in_range("train.adam_beta2", r.adam_beta2, 0.0, 0.999_999_9)?,
        ),
        adam_eps: ctx.positive("train.adam_eps", r.adam_eps)?,
        max_steps: Limit::from_count(r.max_steps),
        max_length: if r.max_length >= 2 {
            r.max_length
        } else {
            return Err(ctx.bad(
                "train.max_length",
                "must be at least 2: a prompt token and a response token",
            ));
        },
        checkpoint_every: r.checkpoint_every,
        resume_every: r.resume_every,
        rounds: rounds(ctx, r)?,
        tensorboard: report_to(ctx, &r.report_to)?,
        logging_steps: ctx.at_least_one("train.logging_steps", r.logging_steps)?,
        lora: lora(ctx, &r.lora)?,
    })
}

/// `train.report_to`: "jsonl" (always: resuming and the summary read metrics.jsonl) and
/// optionally "tensorboard"; whether TensorBoard files are written.
fn report_to(ctx: &Ctx, list: &[String]) -> Result<bool> {
    for name in list {
        match name.as_str() {
            "jsonl" | "tensorboard" => {}
            "wandb" | "mlflow" | "comet_ml" | "clearml" => {
                return Err(ctx.bad(
                    "train.report_to",
                    format!(
                        "\"{name}\" is not supported: \"jsonl\" and \"tensorboard\" are (W&B \
                         imports TensorBoard files: `wandb sync --sync-tensorboard RUN`)"
                    ),
                ));
            }
            other => {
                return Err(ctx.bad(
                    "train.report_to",
                    format!("unknown \"{other}\": the choices are \"jsonl\" and \"tensorboard\""),
                ));
            }
        }
    }
    if !list.iter().any(|n| n == "jsonl") {
        return Err(ctx.bad(
            "train.report_to",
            "must include \"jsonl\": metrics.jsonl is what resuming and the summary read",
        ));
    }
    Ok(list.iter().any(|n| n == "tensorboard"))
}

/// `train.rounds`: at least 1; more than one needs full fine-tuning (the policy of each round
/// becomes the next round's starting point and reference).
fn rounds(ctx: &Ctx, r: &RawTrain) -> Result<usize> {
    let rounds = ctx.at_least_one("train.rounds", r.rounds)?;
    if rounds > 1 && r.lora.enabled {
        return Err(ctx.bad(
            "train.rounds",
            "more than one round with train.lora.enabled = true is not supported: each round \
             starts from the previous round's full weights; use full fine-tuning or one round",
        ));
    }
    Ok(rounds)
}

/// `[train.lora]`: checked even when disabled, so a typo shows before it is switched on.
fn lora(ctx: &Ctx, r: &RawLora) -> Result<LoraSpec> {
    let rank = ctx.at_least_one("train.lora.rank", r.rank)?;
    let alpha = ctx.positive("train.lora.alpha", r.alpha)?;
    let key = "train.lora.target_modules";
    if r.target_modules.is_empty() {
        return Err(ctx.bad(key, "must list at least one module"));
    }
    let mut targets = Vec::new();
    for name in &r.target_modules {
        let t = Target::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.hf_name()).collect();
            ctx.bad(key, format!("`{name}` is not one of: {}", known.join(", ")))
        })?;
        if targets.contains(&t) {
            return Err(ctx.bad(key, format!("`{name}` is listed twice")));
        }
        targets.push(t);
    }
    targets.sort();
    if !r.enabled {
        return Ok(LoraSpec::Off);
    }
    Ok(LoraSpec::On(LoraConfig {
        rank,
        alpha,
        targets,
    }))
}
