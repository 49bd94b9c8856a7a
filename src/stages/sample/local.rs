//! Sampling from the policy in this process: requests cut into fixed batches over the full list,
//! each finished batch kept in the completion cache.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::{
    Completion, SampleInputs, in_order, open_cache, sample_seed, sampling_params, user_text,
};
use crate::data::Example;
use crate::model::{GenRequest, LoadedModel, Weights, generate, quantized_weights};
use crate::recipe::SampleSpec;
use crate::store::Batches;

/// One completion to draw: question id, sample index, prompt token ids.
struct Request {
    id: String,
    k: usize,
    prompt_ids: Vec<u32>,
}

/// Samples `spec.n` completions per example with the local policy, resuming from `cache`;
/// returns them ordered by (example, k). Stops between batches after Ctrl-C.
pub fn sample_locally(
    inputs: &SampleInputs,
    examples: &[Example],
    spec: &SampleSpec,
    cache: &Path,
) -> Result<Vec<Completion>> {
    let model = inputs.model;
    let mut done = open_cache(cache)?;
    let requests = requests_for(inputs, examples, spec.n)?;
    let key = |r: &Request| (r.id.clone(), r.k);
    let missing = requests.iter().filter(|r| !done.has(&key(r))).count();
    log_cached(cache, requests.len(), missing);
    let params = sampling_params(spec);
    let weights = sampling_weights(model, spec)?;
    let started = Instant::now();
    let mut new_tokens = 0usize;
    let batches = Batches {
        size: spec.batch_size,
        label: "sample",
    };
    done.fill(&requests, key, batches, |chunk, bar| {
        let reqs: Vec<GenRequest> = chunk
            .iter()
            .map(|r| GenRequest {
                prompt_ids: r.prompt_ids.clone(),
                seed: sample_seed(spec.seed, &r.id, r.k),
            })
            .collect();
        let outs = generate(
            &model.policy.config,
            &weights,
            &model.tokenizer,
            &reqs,
            &params,
        )?;
        new_tokens += outs.iter().map(|g| g.token_ids.len()).sum::<usize>();
        bar.set_message(format!(
            "{:.1} tok/s",
            new_tokens as f64 / started.elapsed().as_secs_f64()
        ));
        Ok(chunk
            .iter()
            .zip(outs)
            .map(|(r, g)| Completion {
                example_id: r.id.clone(),
                k: r.k,
                text: g.text,
                token_ids: g.token_ids,
                finish: g.finish,
            })
            .collect())
    })?;
    if missing > 0 {
        tracing::info!(
            "sampled {missing} completions ({new_tokens} tokens) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(in_order(done, examples, spec.n))
}

/// Says how much of the work the cache already holds, when it holds any.
fn log_cached(cache: &Path, total: usize, missing: usize) {
    if missing < total {
        tracing::info!(
            "sample cache {}: {} of {total} completions already there",
            cache.display(),
            total - missing
        );
    }
}

/// The weights that sample: the policy's own, or its GGUF file's quantized blocks when
/// `sampling.quantized` is set.
fn sampling_weights(model: &LoadedModel, spec: &SampleSpec) -> Result<Weights> {
    if spec.quantized {
        tracing::info!("sampling from the quantized GGUF weights (sampling.quantized)");
        quantized_weights(model, "sampling.quantized = true")
    } else {
        Ok(model.policy.frozen())
    }
}

/// `n` requests per question, each with the question rendered through the template.
fn requests_for(inputs: &SampleInputs, examples: &[Example], n: usize) -> Result<Vec<Request>> {
    let mut requests = Vec::with_capacity(examples.len() * n);
    for ex in examples {
        let prompt = inputs
            .template
            .prompt(&user_text(&ex.question, inputs.instruction))?;
        let ids = inputs.model.tokenizer.encode(&prompt)?;
        for k in 0..n {
            requests.push(Request {
                id: ex.id.clone(),
                k,
                prompt_ids: ids.clone(),
            });
        }
    }
    Ok(requests)
}
