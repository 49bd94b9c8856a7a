//! Which backend samples: the local policy, or the OpenAI-compatible server of
//! `sampling.backend = "openai"`, connected once per run before the sample cache key is made.

use std::path::Path;

use anyhow::Result;

use super::Run;
use crate::data::Example;
use crate::openai::{Server, ServerSampling, sample_on_server};
use crate::recipe::SamplingBackend;
use crate::sample::{Completion, run_sampling};

/// Connects to the sampling server when the recipe samples on one (`None` for local sampling).
pub(super) fn connect(run: &Run) -> Result<Option<Server>> {
    match &run.recipe.sampling.backend {
        SamplingBackend::Local => Ok(None),
        SamplingBackend::OpenAi(spec) => {
            let server = Server::connect(spec)?;
            tracing::info!(
                "sampling on {} (model `{}`)",
                server.identity.base_url,
                server.identity.model
            );
            Ok(Some(server))
        }
    }
}

/// The sample stage on the recipe's backend, resuming from `cache`.
pub(super) fn sample(run: &Run, examples: &[Example], cache: &Path) -> Result<Vec<Completion>> {
    let spec = &run.recipe.sampling;
    let instruction = &run.recipe.data.instruction;
    match (&spec.backend, &run.server) {
        (SamplingBackend::OpenAi(openai), Some(server)) => {
            let s = ServerSampling {
                server,
                openai,
                tokenizer: &run.model.tokenizer,
                template: &run.template,
                instruction,
            };
            sample_on_server(&s, examples, spec, cache)
        }
        _ => run_sampling(
            &run.model,
            &run.template,
            instruction,
            examples,
            spec,
            cache,
        ),
    }
}
