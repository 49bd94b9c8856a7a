//! The sample stage: N completions per question from the current policy, appended to a
//! content-keyed cache as each batch finishes, so a rerun (or another experiment with the same
//! model, data and sampling settings) only generates what is missing.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::jsonl_log::JsonlLog;
use crate::model::{
    ChatTemplate, Finish, GenRequest, LoadedModel, SamplingParams, generate, quantized_weights,
};
use crate::progress;
use crate::recipe::SampleSpec;
use crate::rng;

/// One sampled response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub example_id: String,
    /// Sample index within the question, `0..n`.
    pub k: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish: Finish,
}

/// The user turn for a question: the question, then the recipe's instruction.
pub fn user_text(question: &str, instruction: &str) -> String {
    if instruction.is_empty() {
        question.to_string()
    } else {
        format!("{question}\n\n{instruction}")
    }
}

/// The seed of sample `k` of question `id`.
pub fn sample_seed(seed: u64, id: &str, k: usize) -> u64 {
    rng::derive(
        seed,
        &[rng::hash_str("sample"), rng::hash_str(id), k as u64],
    )
}

/// Sampling settings as the generator takes them.
pub fn sampling_params(spec: &SampleSpec) -> SamplingParams {
    SamplingParams {
        temperature: spec.temperature,
        top_p: spec.top_p,
        top_k: spec.top_k,
        max_new_tokens: spec.max_new_tokens,
        stop: spec.stop.clone(),
    }
}

/// Samples `spec.n` completions per example, resuming from `cache`; returns them ordered by
/// (example, k). Requests are cut into fixed batches over the full list, so a resumed run forms
/// the same batches as an uninterrupted one. Stops between batches after Ctrl-C.
pub fn run_sampling(
    model: &LoadedModel,
    template: &ChatTemplate,
    instruction: &str,
    examples: &[Example],
    spec: &SampleSpec,
    cache: &Path,
) -> Result<Vec<Completion>> {
    let (mut done, mut log) = JsonlLog::open::<Completion>(cache)?;
    let have: HashSet<(String, usize)> = done.iter().map(|c| (c.example_id.clone(), c.k)).collect();
    let mut requests = Vec::with_capacity(examples.len() * spec.n);
    for ex in examples {
        let prompt = template.prompt(&user_text(&ex.question, instruction));
        let ids = model.tokenizer.encode(&prompt)?;
        for k in 0..spec.n {
            requests.push((ex.id.clone(), k, ids.clone()));
        }
    }
    let total = requests.len();
    let missing = requests
        .iter()
        .filter(|(id, k, _)| !have.contains(&(id.clone(), *k)))
        .count();
    if missing < total {
        tracing::info!(
            "sample cache {}: {} of {total} completions already there",
            cache.display(),
            total - missing
        );
    }
    let bar = progress::bar(total as u64, "sample");
    bar.inc((total - missing) as u64);
    let params = sampling_params(spec);
    let weights = if spec.quantized {
        tracing::info!("sampling from the quantized GGUF weights (sampling.quantized)");
        quantized_weights(model, "sampling.quantized = true")?
    } else {
        model.policy.frozen()
    };
    let started = Instant::now();
    let mut new_tokens = 0usize;
    let batches = total.div_ceil(spec.batch_size);
    for (b, chunk) in requests.chunks(spec.batch_size).enumerate() {
        if chunk
            .iter()
            .all(|(id, k, _)| have.contains(&(id.clone(), *k)))
        {
            continue;
        }
        crate::interrupt::check("sample", || format!("batch {} of {batches}", b + 1))?;
        let reqs: Vec<GenRequest> = chunk
            .iter()
            .map(|(id, k, ids)| GenRequest {
                prompt_ids: ids.clone(),
                seed: sample_seed(spec.seed, id, *k),
            })
            .collect();
        let outs = generate(
            &model.policy.config,
            &weights,
            &model.tokenizer,
            &reqs,
            &params,
        )?;
        for ((id, k, _), g) in chunk.iter().zip(outs) {
            new_tokens += g.token_ids.len();
            if have.contains(&(id.clone(), *k)) {
                continue;
            }
            let c = Completion {
                example_id: id.clone(),
                k: *k,
                text: g.text,
                token_ids: g.token_ids,
                finish: g.finish,
            };
            log.append(&c)?;
            done.push(c);
            bar.inc(1);
        }
        log.flush()?;
        bar.set_message(format!(
            "{:.1} tok/s",
            new_tokens as f64 / started.elapsed().as_secs_f64()
        ));
    }
    bar.finish_and_clear();
    if missing > 0 {
        tracing::info!(
            "sampled {missing} completions ({new_tokens} tokens) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(in_order(done, examples, spec.n))
}

/// The completions of `examples` with `k < n`, ordered by (example, k); others are dropped.
pub fn in_order(mut done: Vec<Completion>, examples: &[Example], n: usize) -> Vec<Completion> {
    let order: std::collections::HashMap<&str, usize> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    done.retain(|c| order.contains_key(c.example_id.as_str()) && c.k < n);
    done.sort_by_key(|c| (order[c.example_id.as_str()], c.k));
    done
}
