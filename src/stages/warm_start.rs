//! The warm-start stage: the built-in tiny model (a Llama-config decoder with the character
//! tokenizer) trained with cross-entropy on the worked solutions of generated arithmetic
//! problems, cached by content; and the path of the model a recipe names.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::data::arith::{ArithProblem, Split, generate_mix};
use crate::error::user_error;
use crate::model::{
    Arch, CHAR_EOS, ChatTemplate, LoadedModel, ModelConfig, char_tokenizer, load_model,
    random_policy, score_sequences,
};
use crate::recipe::{ModelSource, Recipe, SftSpec};
use crate::rng::{self, Rng};
use crate::store::{content_key, write_json_atomic};
use crate::train::{AdamW, AdamWConfig, LrSchedule, clip_scale, grad_norm, save_checkpoint_with};

/// The architecture of the built-in model.
pub fn tiny_config(spec: &SftSpec, vocab_size: usize) -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        vocab_size,
        hidden_size: spec.hidden_size,
        intermediate_size: spec.intermediate_size,
        num_layers: spec.num_layers,
        num_heads: spec.num_heads,
        num_kv_heads: spec.num_kv_heads,
        head_dim: spec.hidden_size / spec.num_heads,
        rope_theta: 10_000.0,
        rms_eps: 1e-6,
        max_position: 1024,
        tie_embeddings: true,
        bos_token_id: None,
        eos_token_id: Some(CHAR_EOS),
        rope_scaling: None,
        sliding_window: None,
    }
}

/// The content key of a warm-started model.
pub fn sft_key(spec: &SftSpec, template: &ChatTemplate) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        kind: &'static str,
        version: String,
        generator: u32,
        spec: &'a SftSpec,
        template: String,
    }
    let key = Key {
        kind: "sft",
        version: crate::store::trainer_version(),
        generator: crate::data::arith::GENERATOR_VERSION,
        spec,
        template: format!("{template:?}"),
    };
    content_key(&key)
}

/// The folder of the warm-started built-in model, trained now unless `cache` already has it.
pub fn builtin_tiny(spec: &SftSpec, template: &ChatTemplate, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("sft").join(sft_key(spec, template));
    if dir.join("config.json").is_file() {
        tracing::info!("built-in model from the cache: {}", dir.display());
        return Ok(dir);
    }
    let tokenizer = char_tokenizer()?;
    let config = tiny_config(spec, tokenizer.vocab_size());
    let policy = random_policy(&config, spec.init_seed)?;
    tracing::info!(
        "warm-starting the built-in model ({:.2} M parameters, {} SFT steps)",
        config.param_count() as f64 / 1e6,
        spec.steps
    );
    let model = LoadedModel {
        policy,
        tokenizer,
        source: dir.clone(),
        chat_template: template.to_jinja(),
    };
    let problems = generate_mix(spec.examples, &spec.level_mix, Split::Train, spec.data_seed);
    let losses = train_sft(&model, template, &problems, spec)?;
    if let Some(last) = losses.last() {
        tracing::info!("SFT loss {:.4} -> {last:.4}", losses[0]);
    }
    save_checkpoint_with(&model, &dir, |tmp| {
        write_json_atomic(&tmp.join("sft_losses.json"), &losses)
    })?;
    Ok(dir)
}

/// Cross-entropy on the solution tokens (prompt masked) for `spec.steps` steps; returns the loss
/// of every step.
pub fn train_sft(
    model: &LoadedModel,
    template: &ChatTemplate,
    problems: &[ArithProblem],
    spec: &SftSpec,
) -> Result<Vec<f64>> {
    let tok = &model.tokenizer;
    let eos = tok.decode(&[CHAR_EOS])?;
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = problems
        .iter()
        .map(|p| {
            Ok((
                tok.encode(&template.prompt(&p.question)?)?,
                tok.encode(&format!("{}{eos}", p.answer))?,
            ))
        })
        .collect::<Result<_>>()?;
    let vars: Vec<_> = model.policy.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )?;
    let schedule = LrSchedule::new(
        spec.lr,
        spec.warmup_ratio,
        spec.steps,
        crate::recipe::Schedule::Cosine,
    );
    let mut order: Vec<usize> = Vec::new();
    let mut epoch = 0u64;
    let bar = crate::progress::bar(spec.steps as u64, "sft");
    let mut losses = Vec::with_capacity(spec.steps);
    for step in 0..spec.steps {
        crate::interrupt::check("the warm start", || {
            format!("step {} of {}", step + 1, spec.steps)
        })?;
        if order.len() < spec.batch_size {
            order = shuffled(seqs.len(), spec.data_seed, epoch);
            epoch += 1;
        }
        let batch: Vec<(Vec<u32>, Vec<u32>)> = order
            .drain(..spec.batch_size.min(order.len()))
            .map(|i| seqs[i].clone())
            .collect();
        let value = sft_step(model, &mut opt, &batch, schedule.lr(step))?;
        losses.push(value);
        bar.set_message(format!("loss {value:.3}"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(losses)
}

/// One step of cross-entropy on the response tokens of `batch` (prompt, response) at rate `lr`,
/// the gradient clipped to norm 1; returns the loss (mean NLL per response token).
fn sft_step(
    model: &LoadedModel,
    opt: &mut AdamW,
    batch: &[(Vec<u32>, Vec<u32>)],
    lr: f64,
) -> Result<f64> {
    let scores = score_sequences(
        &model.policy.config,
        model.policy.weights(),
        batch,
        model.tokenizer.pad_id(),
    )?;
    let tokens: usize = scores.tokens.iter().sum();
    let loss = (scores.logps.sum_all()? * (-1.0 / tokens as f64))?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let store = loss.backward()?;
    let grads: Vec<Option<Tensor>> = opt
        .vars()
        .iter()
        .map(|v| store.get(v.as_tensor()).cloned())
        .collect();
    let norm = grad_norm(&grads)?;
    opt.step(&grads, lr, clip_scale(norm, 1.0))?;
    Ok(value)
}

fn shuffled(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    Rng::derived(seed, &[rng::hash_str("sft"), epoch]).shuffle(&mut v);
    v
}

/// Loads the built-in model (warm-starting it first when not cached).
pub fn load_builtin(
    spec: &SftSpec,
    template: &ChatTemplate,
    cache: &Path,
) -> Result<(PathBuf, LoadedModel)> {
    let dir = builtin_tiny(spec, template, cache)?;
    let model = load_model(&dir, None)?;
    Ok((dir, model))
}

/// The model folder or file; the built-in model is warm-started (or taken from the cache).
pub fn model_path(recipe: &Recipe, template: &ChatTemplate) -> Result<PathBuf> {
    match &recipe.model.source {
        ModelSource::Path(p) => Ok(p.clone()),
        ModelSource::Hub(id) => Ok(crate::model::fetch(id, "model.path")?.path),
        ModelSource::Builtin(name) if name == "tiny" => {
            builtin_tiny(&recipe.sft, template, &recipe.run.cache)
        }
        ModelSource::Builtin(name) => Err(user_error(format!(
            "model.path = \"builtin:{name}\": unknown built-in model (tiny)"
        ))),
    }
}
