//! `trainer score`: per-pair log-probs, WPO means and loss of a pairs file under a model, and
//! the gradient norm of the mean loss — the numbers to compare with TRL.

use std::path::Path;

use anyhow::Result;
use candle_core::Tensor;
use serde::Serialize;

use crate::cli::ScoreArgs;
use crate::data::{PairRecord, read_pairs};
use crate::error::user_error;
use crate::model::{LoadedModel, load_model_on, local_model};
use crate::recipe::{self, HookSource, RecipeInput, TokenizerChoice, Weighting};
use crate::script::{HookKind, HookRef, ScriptHost, from_source};
use crate::train::{
    LossFn, StepBatch, StepLoss, add_grads, backward, grad_norm, step_loss, tokenize_pair, values,
    wpo_weight,
};

/// Pairs per forward pass.
const CHUNK: usize = 8;

/// One pair's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRow {
    pub chosen_logps: f64,
    pub rejected_logps: f64,
    pub chosen_tokens: usize,
    pub rejected_tokens: usize,
    pub chosen_wpo: f64,
    pub rejected_wpo: f64,
    /// `exp(chosen_wpo + rejected_wpo)`, clamped at 1 unless `loss.wpo_clamp = false`.
    pub wpo_weight: f64,
    /// The pair's loss (after any WPO weighting); `None` when the hook returns a scalar.
    pub loss: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    #[serde(skip)]
    pub rows: Vec<ScoreRow>,
    pub mean_loss: f64,
    pub grad_norm: Option<f64>,
}

/// Scores `pairs`; with `with_grad`, also backpropagates the mean loss over all pairs. Each chunk
/// runs the training step's forward and loss; a pair without reference log-probs takes the
/// model's own (the model is its own reference).
pub fn score_pairs(
    model: &LoadedModel,
    pairs: &[PairRecord],
    loss: LossFn,
    with_grad: bool,
    max_length: usize,
) -> Result<ScoreReport> {
    let policy = &model.policy;
    let mut grads: Vec<Option<Tensor>> = vec![None; policy.vars().len()];
    let mut rows = Vec::with_capacity(pairs.len());
    let mut loss_sum = 0.0;
    let clamp = !matches!(loss.spec.weighting, Weighting::Wpo { clamp: false });
    for (chunk_index, chunk) in pairs.chunks(CHUNK).enumerate() {
        let tokens: Vec<_> = chunk
            .iter()
            .map(|p| tokenize_pair(&model.tokenizer, p, max_length))
            .collect::<Result<_>>()?;
        let ref_chosen: Vec<Option<f64>> = chunk.iter().map(|p| p.ref_chosen_logps).collect();
        let ref_rejected: Vec<Option<f64>> = chunk.iter().map(|p| p.ref_rejected_logps).collect();
        let weight: Vec<f64> = chunk.iter().map(|p| p.weight.unwrap_or(1.0)).collect();
        let batch = StepBatch {
            pairs: &tokens,
            ref_chosen: &ref_chosen,
            ref_rejected: &ref_rejected,
            weights: &weight,
        };
        let weights = if with_grad {
            policy.weights().clone()
        } else {
            policy.frozen()
        };
        let step = step_loss(policy, &weights, model.tokenizer.pad_id(), loss, &batch)?;
        if !step.value.is_finite() {
            let first = chunk_index * CHUNK + 1;
            return Err(user_error(format!(
                "the loss of pairs {first}..{} is {} (hook {})",
                first + chunk.len() - 1,
                step.value,
                loss.host.file(loss.hook.unit)
            )));
        }
        loss_sum += step.value * chunk.len() as f64;
        if with_grad {
            let scaled = (&step.total * (chunk.len() as f64 / pairs.len() as f64))?;
            add_grads(&mut grads, backward(policy, &scaled)?)?;
        }
        rows.extend(score_rows(&step, chunk.len(), clamp)?);
    }
    let grad_norm = if with_grad {
        Some(grad_norm(&grads)?)
    } else {
        None
    };
    Ok(ScoreReport {
        rows,
        mean_loss: loss_sum / pairs.len() as f64,
        grad_norm,
    })
}

/// One row per pair of a scored chunk of `n` pairs.
fn score_rows(step: &StepLoss, n: usize, clamp: bool) -> Result<Vec<ScoreRow>> {
    let fwd = &step.forward;
    let per_pair = step.per_pair.as_ref().map(values).transpose()?;
    let (chosen, rejected) = (values(&fwd.chosen_logps)?, values(&fwd.rejected_logps)?);
    let (cw, rw) = (values(&fwd.chosen_wpo)?, values(&fwd.rejected_wpo)?);
    let wpo = values(&wpo_weight(&step.inputs, clamp)?)?;
    Ok((0..n)
        .map(|i| ScoreRow {
            chosen_logps: chosen[i],
            rejected_logps: rejected[i],
            chosen_tokens: fwd.chosen_tokens[i],
            rejected_tokens: fwd.rejected_tokens[i],
            chosen_wpo: cw[i],
            rejected_wpo: rw[i],
            wpo_weight: wpo[i],
            loss: per_pair.as_ref().map(|v| v[i]),
        })
        .collect())
}

/// The loss hook `trainer score` uses: the script's, the named plugin, or the recipe's.
pub fn score_hook(
    host: &mut ScriptHost,
    script: Option<&Path>,
    loss_name: Option<&str>,
    recipe_hook: &HookSource,
) -> Result<HookRef> {
    match (script, loss_name) {
        (Some(path), _) => {
            let unit = host.load_file(path)?;
            host.require_hook(unit, HookKind::Loss)
        }
        (None, Some(name)) => {
            from_source(host, HookKind::Loss, &HookSource::Plugin(name.to_string()))
        }
        (None, None) => from_source(host, HookKind::Loss, recipe_hook),
    }
}

/// The `trainer score` command.
pub fn score(args: &ScoreArgs) -> Result<()> {
    let input = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        ..RecipeInput::default()
    };
    let recipe = recipe::load(&input)?.resolve()?;
    let mut host = ScriptHost::new(&recipe.script, args.script.as_deref());
    let hook = score_hook(
        &mut host,
        args.script.as_deref(),
        args.loss.as_deref(),
        &recipe.loss.hook,
    )?;
    let pairs = read_pairs(&args.pairs)?;
    let tokenizer = match &recipe.model.tokenizer {
        TokenizerChoice::File(p) => Some(p.as_path()),
        TokenizerChoice::FromModel => None,
    };
    let device = recipe.model.device.open("model.device")?;
    let model = load_model_on(&local_model(&args.model, "--model")?, tokenizer, &device)?;
    let loss = LossFn {
        host: &host,
        hook,
        spec: &recipe.loss,
    };
    let report = score_pairs(
        &model,
        &pairs,
        loss,
        args.grad_norm,
        recipe.train.max_length,
    )?;
    for row in &report.rows {
        println!("{}", serde_json::to_string(row)?);
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
