//! Resolves `sampling.backend` and `[sampling.openai]` (the OpenAI-compatible sampling server)
//! into a [`SamplingBackend`], naming the recipe key of any bad value.

use anyhow::Result;

use super::keyed::Ctx;
use super::schema::{RawOpenAi, RawSampling};
use super::spec::{ApiKey, OpenAiApi, OpenAiSpec, SamplingBackend, ServedModel};

pub(super) fn sampling_backend(ctx: &Ctx, r: &RawSampling) -> Result<SamplingBackend> {
    match r.backend.as_str() {
        "local" => Ok(SamplingBackend::Local),
        "openai" => Ok(SamplingBackend::OpenAi(openai(ctx, &r.openai)?)),
        other => Err(ctx.bad(
            "sampling.backend",
            format!("`{other}` is not one of: local, openai"),
        )),
    }
}

fn openai(ctx: &Ctx, r: &RawOpenAi) -> Result<OpenAiSpec> {
    let base_url = r.base_url.trim().trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(ctx.bad(
            "sampling.openai.base_url",
            format!(
                "sampling.backend = \"openai\" needs the server's URL here, such as \
                 \"http://127.0.0.1:8000/v1\"; got \"{}\"",
                r.base_url
            ),
        ));
    }
    let api = ctx.choice(
        "sampling.openai.api",
        &r.api,
        &[
            ("completions", OpenAiApi::Completions),
            ("chat", OpenAiApi::Chat),
        ],
    )?;
    let env = r.api_key_env.trim();
    if !env.is_empty() && !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ctx.bad(
            "sampling.openai.api_key_env",
            "must be the name of an environment variable (letters, digits, `_`), not the key",
        ));
    }
    if r.timeout_secs == 0 {
        return Err(ctx.bad("sampling.openai.timeout_secs", "must be at least 1"));
    }
    for (name, value) in &r.params {
        if !value.is_finite() {
            return Err(ctx.bad(
                &format!("sampling.openai.params.{name}"),
                format!("must be finite, got {value}"),
            ));
        }
    }
    Ok(OpenAiSpec {
        base_url,
        model: match r.model.trim() {
            "" => ServedModel::First,
            name => ServedModel::Named(name.to_string()),
        },
        api_key: match env {
            "" => ApiKey::None,
            name => ApiKey::Env(name.to_string()),
        },
        api,
        concurrency: ctx.at_least_one("sampling.openai.concurrency", r.concurrency)?,
        timeout_secs: r.timeout_secs,
        max_retries: r.max_retries,
        params: r.params.clone(),
    })
}
