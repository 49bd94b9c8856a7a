//! `trainer score`: per-pair log-probs, WPO means and loss of a pairs file under a model, and
//! the gradient norm of the mean loss — the numbers to compare with TRL.

use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::batch::{forward_pairs, loss_inputs, tokenize_pair};
use crate::cli::ScoreArgs;
use crate::data::{PairRecord, read_pairs};
use crate::error::user_error;
use crate::hookset::from_source;
use crate::loss::{reduce, weighted_per_pair};
use crate::model::{LoadedModel, load_model_on};
use crate::recipe::{self, HookSource, LossSpec, RecipeInput, TokenizerChoice};
use crate::script::{HookKind, HookRef, ScriptHost};
use crate::train::grad_norm;

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

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Scores `pairs`; with `with_grad`, also backpropagates the mean loss over all pairs.
pub fn score_pairs(
    model: &LoadedModel,
    pairs: &[PairRecord],
    host: &ScriptHost,
    hook: HookRef,
    loss: &LossSpec,
    with_grad: bool,
    max_length: usize,
) -> Result<ScoreReport> {
    let cfg = &model.policy.config;
    let params = loss.hook_params();
    let vars = model.policy.vars();
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut rows = Vec::with_capacity(pairs.len());
    let mut loss_sum = 0.0;
    for (chunk_index, chunk) in pairs.chunks(CHUNK).enumerate() {
        let tokens: Vec<_> = chunk
            .iter()
            .map(|p| tokenize_pair(&model.tokenizer, p, max_length))
            .collect::<Result<_>>()?;
        let weights = if with_grad {
            model.policy.weights().clone()
        } else {
            model.policy.frozen()
        };
        let fwd = forward_pairs(cfg, &weights, &tokens, model.tokenizer.pad_id())?;
        let (chosen, rejected) = (to_f64(&fwd.chosen_logps)?, to_f64(&fwd.rejected_logps)?);
        let ref_chosen: Vec<f64> = chunk
            .iter()
            .zip(&chosen)
            .map(|(p, c)| p.ref_chosen_logps.unwrap_or(*c))
            .collect();
        let ref_rejected: Vec<f64> = chunk
            .iter()
            .zip(&rejected)
            .map(|(p, r)| p.ref_rejected_logps.unwrap_or(*r))
            .collect();
        let weight: Vec<f64> = chunk.iter().map(|p| p.weight.unwrap_or(1.0)).collect();
        let inputs = loss_inputs(&fwd, &ref_chosen, &ref_rejected, &weight)?;
        let output = host.call_loss(hook, &inputs, &params)?;
        let per_pair = weighted_per_pair(&output, &inputs, loss.weighting)?;
        let chunk_loss = reduce(&output, &inputs, loss.weighting)?;
        let value = chunk_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            let first = chunk_index * CHUNK + 1;
            return Err(user_error(format!(
                "the loss of pairs {first}..{} is {value} (hook {})",
                first + chunk.len() - 1,
                host.file(hook.unit)
            )));
        }
        loss_sum += value * chunk.len() as f64;
        if with_grad {
            let scaled = (chunk_loss * (chunk.len() as f64 / pairs.len() as f64))?;
            let store = scaled.backward()?;
            for (slot, (_, var)) in grads.iter_mut().zip(&vars) {
                if let Some(g) = store.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let per_pair = per_pair.map(|t| to_f64(&t)).transpose()?;
        let (cw, rw) = (to_f64(&fwd.chosen_wpo)?, to_f64(&fwd.rejected_wpo)?);
        let clamp = !matches!(
            loss.weighting,
            crate::recipe::Weighting::Wpo { clamp: false }
        );
        let wpo = to_f64(&crate::loss::wpo_weight(&inputs, clamp)?)?;
        for i in 0..chunk.len() {
            rows.push(ScoreRow {
                chosen_logps: chosen[i],
                rejected_logps: rejected[i],
                chosen_tokens: fwd.chosen_tokens[i],
                rejected_tokens: fwd.rejected_tokens[i],
                chosen_wpo: cw[i],
                rejected_wpo: rw[i],
                wpo_weight: wpo[i],
                loss: per_pair.as_ref().map(|v| v[i]),
            });
        }
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
pub fn run(args: &ScoreArgs) -> Result<()> {
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
    let model = load_model_on(&args.model, tokenizer, &device)?;
    let report = score_pairs(
        &model,
        &pairs,
        &host,
        hook,
        &recipe.loss,
        args.grad_norm,
        recipe.train.max_length,
    )?;
    for row in &report.rows {
        println!("{}", serde_json::to_string(row)?);
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
