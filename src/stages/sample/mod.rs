//! The sample stage: N completions per question from the current policy (`local.rs`) or from an
//! OpenAI-compatible server (`server/`), each seeded per (seed, question, sample index) and kept in
//! a content-keyed cache as it finishes, so a rerun only samples what is missing.

mod local;
mod server;

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use local::sample_locally;
pub use server::{
    Prompt, Reply, SamplingServer, Server, ServerSampling, backoff, parse_reply, request_body,
    sample_on_server, token_ids,
};

use crate::data::Example;
use crate::model::{ChatTemplate, Finish, LoadedModel, SamplingParams};
use crate::recipe::{SampleSpec, SamplingBackend};
use crate::rng;
use crate::store::Resumable;

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

/// The cache of finished completions, keyed by (question id, sample index).
pub type CompletionCache = Resumable<(String, usize), Completion>;

/// Opens the completion cache at `path`.
pub fn open_cache(path: &Path) -> Result<CompletionCache> {
    Resumable::open(Some(path), |c: &Completion| (c.example_id.clone(), c.k))
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

/// The completions of `examples` with `k < n` taken from the cache, ordered by (example, k).
pub fn in_order(mut cache: CompletionCache, examples: &[Example], n: usize) -> Vec<Completion> {
    let mut out = Vec::with_capacity(examples.len() * n);
    for ex in examples {
        for k in 0..n {
            out.extend(cache.take(&(ex.id.clone(), k)));
        }
    }
    out
}

/// What the sample stage needs besides the questions and `[sampling]`.
pub struct SampleInputs<'a> {
    pub model: &'a LoadedModel,
    pub template: &'a ChatTemplate,
    pub instruction: &'a str,
    /// The connected server when `sampling.backend = "openai"`.
    pub server: Option<&'a Server>,
}

/// Samples `spec.n` completions per example on the recipe's backend, resuming from `cache`;
/// returns them ordered by (example, k).
pub fn sample(
    inputs: &SampleInputs,
    examples: &[Example],
    spec: &SampleSpec,
    cache: &Path,
) -> Result<Vec<Completion>> {
    match (&spec.backend, inputs.server) {
        (SamplingBackend::OpenAi(openai), Some(server)) => {
            let s = ServerSampling {
                server,
                openai,
                tokenizer: &inputs.model.tokenizer,
                template: inputs.template,
                instruction: inputs.instruction,
            };
            sample_on_server(&s, examples, spec, cache)
        }
        _ => sample_locally(inputs, examples, spec, cache),
    }
}

/// Connects to the sampling server when `[sampling]` samples on one (`None` for local sampling).
pub fn connect(spec: &SampleSpec) -> Result<Option<Server>> {
    match &spec.backend {
        SamplingBackend::Local => Ok(None),
        SamplingBackend::OpenAi(openai) => {
            let server = Server::connect(openai)?;
            tracing::info!(
                "sampling on {} (model `{}`)",
                server.identity.base_url,
                server.identity.model
            );
            Ok(Some(server))
        }
    }
}
