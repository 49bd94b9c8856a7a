//! The HTTP side of the openai backend: one blocking `ureq` agent per run, the API key from the
//! environment, and retries with exponential backoff and seeded jitter on 429, 408, 5xx, timeouts
//! and dropped connections. Other 4xx answers stop at once as a user error.

use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::error::user_error;
use crate::recipe::{ApiKey, OpenAiSpec, ServedModel};
use crate::rng::Rng;

/// The first backoff delay; each retry doubles it, up to [`MAX_DELAY`].
const BASE_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// An OpenAI-compatible sampling server: its API root and the model id it serves (recorded in
/// `manifest.json` and in the sample cache key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingServer {
    pub base_url: String,
    pub model: String,
}

/// A connected server: where it is, which model it serves, how to reach it.
#[derive(Clone)]
pub struct Server {
    agent: ureq::Agent,
    key: Option<String>,
    max_retries: usize,
    pub identity: SamplingServer,
}

/// How one attempt ended when it did not succeed.
enum Failure {
    /// Worth another try (429, 408, 5xx, timeout, refused or dropped connection).
    Transient(String),
    /// Retrying cannot help.
    Fatal(anyhow::Error),
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

impl Server {
    /// Reads the API key, asks `<base_url>/models` which models are served (with retries) and
    /// resolves the model name the requests will carry.
    pub fn connect(spec: &OpenAiSpec) -> Result<Server> {
        let key = match &spec.api_key {
            ApiKey::None => None,
            ApiKey::Env(var) => Some(std::env::var(var).map_err(|_| {
                user_error(format!(
                    "recipe key `sampling.openai.api_key_env` names the environment variable \
                     `{var}`, which is not set"
                ))
            })?),
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(spec.timeout_secs)))
            .http_status_as_error(false)
            .build();
        let mut server = Server {
            agent: config.into(),
            key,
            max_retries: spec.max_retries,
            identity: SamplingServer {
                base_url: spec.base_url.clone(),
                model: String::new(),
            },
        };
        let url = format!("{}/models", spec.base_url);
        let body = server.call(&url, None, 0)?;
        let list: ModelList = serde_json::from_str(&body)
            .map_err(|e| anyhow!("{url}: not an OpenAI model list ({e}): {}", excerpt(&body)))?;
        let ids: Vec<String> = list.data.into_iter().map(|m| m.id).collect();
        server.identity.model = match &spec.model {
            ServedModel::First => ids
                .first()
                .cloned()
                .ok_or_else(|| anyhow!("{url}: the server lists no model"))?,
            ServedModel::Named(name) if ids.contains(name) => name.clone(),
            ServedModel::Named(name) => {
                return Err(user_error(format!(
                    "recipe key `sampling.openai.model`: `{name}` is not served by {url} \
                     (it serves: {})",
                    ids.join(", ")
                )));
            }
        };
        Ok(server)
    }

    /// GET (`body = None`) or POST a JSON body to `url`; the response text of the first 2xx
    /// answer. `seed` drives the jitter of the backoff delays.
    pub fn call(&self, url: &str, body: Option<&serde_json::Value>, seed: u64) -> Result<String> {
        let mut rng = Rng::derived(seed, &[crate::rng::hash_str("backoff")]);
        let mut last = String::new();
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt, &mut rng));
                tracing::debug!("{url}: retry {attempt} after {last}");
            }
            match self.attempt(url, body) {
                Ok(text) => return Ok(text),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(why)) => last = why,
            }
        }
        Err(anyhow!(
            "{url}: {last} (gave up after {} retries)",
            self.max_retries
        ))
    }

    fn attempt(&self, url: &str, body: Option<&serde_json::Value>) -> Result<String, Failure> {
        let sent = match body {
            None => self.with_key(self.agent.get(url)).call(),
            Some(json) => self.with_key(self.agent.post(url)).send_json(json),
        };
        let mut resp = sent.map_err(|e| classify(url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| classify(url, e))?;
        match status {
            200..=299 => Ok(text),
            408 | 429 | 500..=599 => Err(Failure::Transient(format!(
                "HTTP {status}: {}",
                excerpt(&text)
            ))),
            _ => Err(Failure::Fatal(user_error(format!(
                "{url} answered HTTP {status}: {} (check sampling.openai.base_url, model, \
                 api_key_env and params)",
                excerpt(&text)
            )))),
        }
    }

    fn with_key<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(key) => req.header("Authorization", format!("Bearer {key}")),
            None => req,
        }
    }
}

/// Whether a transport error is worth retrying.
fn classify(url: &str, e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_) => Failure::Transient(e.to_string()),
        other => Failure::Fatal(anyhow!("{url}: {other}")),
    }
}

/// The delay before retry `attempt` (1-based): `BASE_DELAY · 2^(attempt−1)`, capped at
/// `MAX_DELAY`, times a seeded factor in [0.5, 1).
pub fn backoff(attempt: usize, rng: &mut Rng) -> Duration {
    let doubling = 1u32 << (attempt.saturating_sub(1)).min(16) as u32;
    let full = BASE_DELAY.saturating_mul(doubling).min(MAX_DELAY);
    full.mul_f64(0.5 + 0.5 * rng.next_f64())
}

/// The start of a response body, on one line, for error messages.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_half() {
        let mut rng = Rng::new(7);
        for attempt in 1..=12 {
            let d = backoff(attempt, &mut rng);
            let full = BASE_DELAY.saturating_mul(1 << (attempt - 1)).min(MAX_DELAY);
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?}");
        }
        let a: Vec<Duration> = (1..5).map(|i| backoff(i, &mut Rng::new(3))).collect();
        let b: Vec<Duration> = (1..5).map(|i| backoff(i, &mut Rng::new(3))).collect();
        assert_eq!(a, b, "the same seed gives the same delays");
    }

    #[test]
    fn a_long_body_is_cut_to_one_short_line() {
        let body = format!("line one\nline two {}", "x".repeat(1000));
        let e = excerpt(&body);
        assert!(e.starts_with("line one line two"));
        assert!(e.chars().count() <= 301 && e.ends_with('…'));
    }
}
