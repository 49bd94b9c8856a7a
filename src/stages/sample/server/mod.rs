//! The openai sampling backend: the sample stage on an OpenAI-compatible server (vLLM, SGLang,
//! llama.cpp). One request per sample with the sample's own seed, `concurrency` requests in
//! flight, each completion appended to the same content-keyed cache as local sampling the moment
//! it arrives, so a rerun asks only for what is missing.

mod client;
mod wire;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Result;

pub use client::{SamplingServer, Server, backoff};
pub use wire::{Prompt, Reply, parse_reply, request_body};

use super::{Completion, CompletionCache, in_order, open_cache, sample_seed, user_text};
use crate::data::Example;
use crate::model::{ChatTemplate, Finish, Tokenizer};
use crate::progress;
use crate::recipe::{OpenAiApi, OpenAiSpec, SampleSpec};

/// What the stage needs besides the questions: the server, its settings, the prompt format and
/// the tokenizer that turns the returned text into token ids.
pub struct ServerSampling<'a> {
    pub server: &'a Server,
    pub openai: &'a OpenAiSpec,
    pub tokenizer: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    pub instruction: &'a str,
}

/// One missing sample.
struct Job {
    id: String,
    k: usize,
    prompt: Prompt,
}

/// Samples `spec.n` completions per example on the server, resuming from `cache`; returns them
/// ordered by (example, k). When a request fails for good, the completions that arrived stay in
/// the cache and the error names the server and the question.
pub fn sample_on_server(
    s: &ServerSampling,
    examples: &[Example],
    spec: &SampleSpec,
    cache: &Path,
) -> Result<Vec<Completion>> {
    let mut done = open_cache(cache)?;
    let jobs = missing_jobs(s, examples, spec.n, &done)?;
    let total = examples.len() * spec.n;
    let bar = progress::bar(total as u64, "sample");
    bar.skip((total - jobs.len()) as u64);
    let started = Instant::now();
    let mut new_tokens = 0usize;
    let failure = run_pool(s, spec, &jobs, |c| {
        new_tokens += c.token_ids.len();
        done.keep(c)?;
        done.flush()?;
        bar.inc(1);
        Ok(())
    })
    .err();
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.context(format!(
            "sampling on {} stopped; {} of {total} completions are kept in {}, and a rerun \
             requests only the rest",
            s.server.identity.base_url,
            done.len(),
            cache.display()
        )));
    }
    if !jobs.is_empty() {
        tracing::info!(
            "sampled {} completions ({new_tokens} tokens, {:.1} tokens/s) on {} in {seconds:.1} s",
            jobs.len(),
            new_tokens as f64 / seconds,
            s.server.identity.base_url
        );
    }
    Ok(in_order(done, examples, spec.n))
}

/// Runs `jobs` on `concurrency` workers and hands each completion to `keep` on this thread as it
/// arrives. After the first error (a request's or `keep`'s) no new request starts; the requests
/// in flight still finish and are kept, then that error is returned.
fn run_pool(
    s: &ServerSampling,
    spec: &SampleSpec,
    jobs: &[Job],
    mut keep: impl FnMut(Completion) -> Result<()>,
) -> Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Result<Completion>>();
    std::thread::scope(|scope| {
        for _ in 0..s.openai.concurrency.min(jobs.len()) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || worker(s, spec, jobs, next, stop, tx));
        }
        drop(tx);
        for result in rx {
            if let Err(e) = result.and_then(&mut keep) {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
        }
    });
    failure.map_or(Ok(()), Err)
}

/// The samples not yet in the cache, question by question.
fn missing_jobs(
    s: &ServerSampling,
    examples: &[Example],
    n: usize,
    done: &CompletionCache,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for ex in examples {
        let user = user_text(&ex.question, s.instruction);
        let prompt = match s.openai.api {
            OpenAiApi::Completions => Prompt::Text(s.template.prompt(&user)?),
            OpenAiApi::Chat => Prompt::Chat {
                system: s.template.system().to_string(),
                user,
            },
        };
        for k in (0..n).filter(|&k| !done.has(&(ex.id.clone(), k))) {
            jobs.push(Job {
                id: ex.id.clone(),
                k,
                prompt: prompt.clone(),
            });
        }
    }
    Ok(jobs)
}

/// Takes jobs until none is left or another worker failed; sends each result.
fn worker(
    s: &ServerSampling,
    spec: &SampleSpec,
    jobs: &[Job],
    next: &AtomicUsize,
    stop: &AtomicBool,
    tx: mpsc::Sender<Result<Completion>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        let result = request_one(s, spec, job);
        let failed = result.is_err();
        if tx.send(result).is_err() || failed {
            return;
        }
    }
}

/// One sample: the request with its seed, the reply, its token ids.
fn request_one(s: &ServerSampling, spec: &SampleSpec, job: &Job) -> Result<Completion> {
    let seed = sample_seed(spec.seed, &job.id, job.k);
    let body = request_body(
        &s.server.identity.model,
        &job.prompt,
        spec,
        &s.openai.params,
        seed,
    );
    let url = format!("{}/{}", s.server.identity.base_url, job.prompt.endpoint());
    let context = || format!("question `{}` sample {}", job.id, job.k);
    let text = s
        .server
        .call(&url, Some(&body), seed)
        .map_err(|e| e.context(context()))?;
    let reply = parse_reply(job.prompt.api(), &text)
        .map_err(|e| e.context(format!("{url}: {}", context())))?;
    Ok(Completion {
        example_id: job.id.clone(),
        k: job.k,
        token_ids: token_ids(s.tokenizer, &reply)?,
        text: reply.text,
        finish: reply.finish,
    })
}

/// The reply re-tokenized with the local tokenizer, laid out as the local sampler lays it out:
/// the stop string kept in the ids when the server named it, the end-of-sequence id appended when
/// the text ended there.
pub fn token_ids(tokenizer: &Tokenizer, reply: &Reply) -> Result<Vec<u32>> {
    let mut ids = match (&reply.finish, &reply.stop) {
        (Finish::Stop, Some(stop)) => tokenizer.encode(&format!("{}{stop}", reply.text))?,
        _ => tokenizer.encode(&reply.text)?,
    };
    if reply.finish == Finish::Eos {
        ids.extend(tokenizer.eos_ids().first());
    }
    Ok(ids)
}
