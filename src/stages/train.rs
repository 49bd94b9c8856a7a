//! The train stage: the pairs tokenized with their reference log-probs and weights, LoRA adapters
//! attached when the recipe asks, and the training loop, resumed from any checkpoint of the same
//! inputs.

use std::path::Path;

use anyhow::Result;

use crate::data::PairRecord;
use crate::model::LoadedModel;
use crate::recipe::{LoraSpec, LossSpec, TrainSpec};
use crate::script::{HookRef, ScriptHost};
use crate::store::{Hasher, content_key, trainer_version};
use crate::train::{StepMetrics, TrainOutputs, TrainPair, Trainer, tokenize_pair};

/// What the train stage needs besides the pairs and its recipe sections.
pub struct TrainInputs<'a> {
    /// The policy; LoRA adapters are attached to it here when `[train.lora]` asks.
    pub model: &'a mut LoadedModel,
    /// Where the initial weights came from (recorded in a LoRA adapter's config).
    pub model_path: &'a Path,
    /// The sha256 of the initial weights (part of the checkpoint key).
    pub model_sha: &'a str,
    pub host: &'a ScriptHost,
    pub hook: HookRef,
    pub seed: u64,
}

/// Trains on `records` (reference log-probs filled in); returns the metrics of every step.
pub fn train(
    inputs: TrainInputs,
    records: &[PairRecord],
    spec: &TrainSpec,
    loss: &LossSpec,
    out: &TrainOutputs,
) -> Result<Vec<StepMetrics>> {
    if let LoraSpec::On(lora) = &spec.lora {
        // After the reference pass, which uses the base model either way.
        let base = inputs.model_path.display().to_string();
        inputs.model.policy.attach_lora(lora, inputs.seed, &base)?;
    }
    let model = &*inputs.model;
    let pairs: Vec<TrainPair> = records
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(TrainPair {
                id: format!("{}", i + 1),
                tokens: tokenize_pair(&model.tokenizer, p, spec.max_length)?,
                ref_chosen: p.ref_chosen_logps.unwrap_or_default(),
                ref_rejected: p.ref_rejected_logps.unwrap_or_default(),
                weight: p.weight.unwrap_or(1.0),
            })
        })
        .collect::<Result<_>>()?;
    let key = train_key(
        inputs.model_sha,
        &pairs,
        spec,
        loss,
        &inputs.host.sources(),
        inputs.seed,
    );
    let trainer = Trainer {
        model,
        host: inputs.host,
        hook: inputs.hook,
        loss,
        spec,
        seed: inputs.seed,
        key: &key,
    };
    trainer.run(&pairs, out)
}

/// The key of a training run: the initial model, every pair's tokens, reference log-probs and
/// weight (as exact bits), the loss and train settings (less the checkpoint cadence), the scripts
/// and the seed. A checkpoint is resumed from only when its key is this one.
pub fn train_key(
    model_sha: &str,
    pairs: &[TrainPair],
    spec: &TrainSpec,
    loss: &LossSpec,
    scripts: &[(String, String)],
    seed: u64,
) -> String {
    let mut h = Hasher::default();
    for p in pairs {
        for ids in [&p.tokens.prompt, &p.tokens.chosen, &p.tokens.rejected] {
            h.update((ids.len() as u64).to_le_bytes());
            for id in ids.iter() {
                h.update(id.to_le_bytes());
            }
        }
        for x in [p.ref_chosen, p.ref_rejected, p.weight] {
            h.update(x.to_bits().to_le_bytes());
        }
    }
    let cadence_free = TrainSpec {
        tensorboard: false,
        logging_steps: 1,
        checkpoint_every: 0,
        resume_every: 0,
        rounds: 1,
        ..spec.clone()
    };
    content_key(&serde_json::json!({
        "kind": "train",
        "version": trainer_version(),
        "model": model_sha,
        "pairs": h.hex(),
        "train": format!("{cadence_free:?}"),
        "loss": format!("{loss:?}"),
        "scripts": scripts,
        "seed": seed,
    }))
}
