//! Content keys of the caches: a sample set is identified by what determines it (model and data
//! hashes, prompt format, sampling settings, seed, trainer version), never by when it was made.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::PairRecord;
use crate::model::{ChatTemplate, QUANTIZED_PRODUCT};
use crate::recipe::{DataSpec, HashSplit, OpenAiApi, SampleSpec, SamplingBackend};
use crate::stages::eval::EvalSetup;
use crate::stages::sample::SamplingServer;
use crate::store::{Hasher, content_key, trainer_version};

#[derive(Serialize)]
struct PromptKey<'a> {
    template: String,
    instruction: &'a str,
}

fn prompt_key<'a>(template: &ChatTemplate, instruction: &'a str) -> PromptKey<'a> {
    PromptKey {
        template: format!("{template:?}"),
        instruction,
    }
}

fn data_key(data: &DataSpec) -> String {
    let key = format!(
        "{:?}|{}|{}|{:?}|{}",
        data.format, data.prompt_field, data.gold_field, data.limit, data.shuffle_seed
    );
    // Only a real split joins the key, so the keys of existing caches do not move.
    match data.split {
        HashSplit::All => key,
        split => format!("{key}|{split:?}"),
    }
}

/// What identifies samples drawn on a server: where, which model, which endpoint, which extra
/// request fields (never the API key, the concurrency or the timeouts, which change no sample).
#[derive(Serialize)]
struct ServerKey<'a> {
    base_url: &'a str,
    model: &'a str,
    api: OpenAiApi,
    params: &'a BTreeMap<String, f64>,
}

fn server_key<'a>(
    spec: &'a SampleSpec,
    server: Option<&'a SamplingServer>,
) -> Option<ServerKey<'a>> {
    match (&spec.backend, server) {
        (SamplingBackend::OpenAi(o), Some(s)) => Some(ServerKey {
            base_url: &s.base_url,
            model: &s.model,
            api: o.api,
            params: &o.params,
        }),
        _ => None,
    }
}

/// The key of the training samples; `server` is the sampling server with the openai backend
/// (local keys are unchanged by it: no `server` field, and the batch size counts only locally).
pub fn sample_key(
    model_sha: &str,
    data_sha: &str,
    data: &DataSpec,
    template: &ChatTemplate,
    spec: &SampleSpec,
    server: Option<&SamplingServer>,
) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        kind: &'static str,
        version: String,
        model: &'a str,
        data: &'a str,
        selection: String,
        prompt: PromptKey<'a>,
        n: usize,
        temperature: f64,
        top_p: f64,
        top_k: usize,
        max_new_tokens: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch_size: Option<usize>,
        seed: u64,
        stop: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<ServerKey<'a>>,
        /// Only for quantized samples, so the keys of f32 samples are unchanged: the quantized
        /// product's version (samples of an earlier one are not reused).
        #[serde(skip_serializing_if = "Option::is_none")]
        quantized: Option<&'static str>,
    }
    let server = server_key(spec, server);
    let key = Key {
        kind: "samples",
        version: trainer_version(),
        model: model_sha,
        data: data_sha,
        selection: data_key(data),
        prompt: prompt_key(template, &data.instruction),
        n: spec.n,
        temperature: spec.temperature,
        top_p: spec.top_p,
        top_k: spec.top_k,
        max_new_tokens: spec.max_new_tokens,
        batch_size: server.is_none().then_some(spec.batch_size),
        seed: spec.seed,
        stop: &spec.stop,
        server,
        quantized: spec.quantized.then_some(QUANTIZED_PRODUCT),
    };
    content_key(&key)
}

/// The key of a model's greedy answers to the eval questions (the initial model before training,
/// the trained one after).
pub fn eval_key(model_sha: &str, eval_sha: &str, selection: &str, setup: &EvalSetup) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        kind: &'static str,
        version: String,
        model: &'a str,
        data: &'a str,
        selection: &'a str,
        prompt: PromptKey<'a>,
        max_new_tokens: usize,
        batch_size: usize,
        stop: &'a [String],
    }
    content_key(&Key {
        kind: "eval",
        version: trainer_version(),
        model: model_sha,
        data: eval_sha,
        selection,
        prompt: prompt_key(setup.template, setup.instruction),
        max_new_tokens: setup.max_new_tokens,
        batch_size: setup.batch_size,
        stop: setup.stop,
    })
}

/// The key of a run folder: the command, the resolved recipe (with its sources) and every script,
/// so that rerunning the same command finds the unfinished run.
pub fn run_key(command: &str, recipe: &str, scripts: &[(String, String)]) -> String {
    content_key(&serde_json::json!({
        "kind": "run",
        "version": trainer_version(),
        "command": command,
        "recipe": recipe,
        "scripts": scripts,
    }))
}

/// The key of a reference pass: the model, the pairs still lacking reference log-probs, in order,
/// and the batching.
pub fn reference_key(
    model_sha: &str,
    records: &[PairRecord],
    batch_size: usize,
    max_length: usize,
) -> String {
    let mut pairs = Hasher::default();
    for r in records.iter().filter(|r| r.ref_chosen_logps.is_none()) {
        for text in [&r.prompt, &r.chosen, &r.rejected] {
            pairs.update((text.len() as u64).to_le_bytes());
            pairs.update(text.as_bytes());
        }
    }
    content_key(&serde_json::json!({
        "kind": "reference",
        "version": trainer_version(),
        "model": model_sha,
        "pairs": pairs.hex(),
        "batch_size": batch_size,
        "max_length": max_length,
    }))
}
