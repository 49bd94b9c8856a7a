//! Generation: batched prompts of unequal length (left padding), a KV cache, greedy or
//! temperature / top-k / top-p sampling, stop on EOS or stop strings. Each request carries its
//! own seed, so a sample never depends on which other requests share its batch.

use anyhow::Result;
use candle_core::{DType, Device, IndexOp, Tensor};
use rayon::prelude::*;

use super::config::ModelConfig;
use super::decoder::{KvCache, Weights, forward, logits_at};
use super::pick::{SamplingParams, pick_token};
use super::tokenizer::Tokenizer;
use crate::error::user_error;
use crate::rng::Rng;

/// Vocabulary size from which rows pick their tokens in parallel.
const PARALLEL_PICK_FROM: usize = 4096;

/// One prompt to continue.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt_ids: Vec<u32>,
    /// The seed of this request's own generator (derive it from seed, example id, sample index).
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    Eos,
    Stop,
    Length,
}

/// A finished continuation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// New tokens, the EOS token included when generation ended on it.
    pub token_ids: Vec<u32>,
    /// Their text, without the EOS token and cut before a stop string when one was hit.
    pub text: String,
    pub finish: Finish,
}

struct Row {
    rng: Rng,
    tokens: Vec<u32>,
    done: Option<(Finish, String)>,
}

/// Continues every request; returns one generation per request, in order.
pub fn generate(
    cfg: &ModelConfig,
    w: &Weights,
    tok: &Tokenizer,
    requests: &[GenRequest],
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let device = w.embed.device().clone();
    let mut cache = KvCache::new(cfg.num_layers);
    let (pads, mut logits) = prefill(cfg, w, tok.pad_id(), requests, params, &mut cache)?;
    let mut rows: Vec<Row> = requests
        .iter()
        .map(|r| Row {
            rng: Rng::new(r.seed),
            tokens: Vec::new(),
            done: None,
        })
        .collect();
    // `active[j]` is the request index of batch row j.
    let mut active: Vec<usize> = (0..requests.len()).collect();
    for step in 0..params.max_new_tokens {
        let mut next = pick_tokens(&logits, &active, &mut rows, tok, params, step)?;
        let keep: Vec<usize> = (0..active.len())
            .filter(|&j| rows[active[j]].done.is_none())
            .collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let idx = Tensor::new(keep.iter().map(|&j| j as u32).collect::<Vec<_>>(), &device)?;
            cache.select_rows(&idx)?;
            next = keep.iter().map(|&j| next[j]).collect();
            active = keep.iter().map(|&j| active[j]).collect();
        }
        let s = cache.len();
        let n = active.len();
        let ids = Tensor::from_vec(next, (n, 1), &device)?;
        let pos: Vec<u32> = active.iter().map(|&r| (s - pads[r]) as u32).collect();
        let pos = Tensor::from_vec(pos, (n, 1), &device)?;
        let step_pads: Vec<usize> = active.iter().map(|&r| pads[r]).collect();
        let mask = decode_mask(&step_pads, s + 1, &device)?;
        let hidden = forward(cfg, w, &ids, &pos, &mask, Some(&mut cache))?;
        logits = w.head_logits(&hidden.i((.., 0, ..))?)?;
    }
    rows.into_iter()
        .map(|row| {
            let (finish, text) = match row.done {
                Some(done) => done,
                None => (Finish::Length, tok.decode(&row.tokens)?),
            };
            Ok(Generation {
                token_ids: row.tokens,
                text,
                finish,
            })
        })
        .collect()
}

/// One forward of the left-padded prompts into `cache`: each request's left padding and the
/// logits at its last prompt position.
///
/// # Shapes
/// → (`[B]` pads, `[B, V]` logits).
fn prefill(
    cfg: &ModelConfig,
    w: &Weights,
    pad_id: u32,
    requests: &[GenRequest],
    params: &SamplingParams,
    cache: &mut KvCache,
) -> Result<(Vec<usize>, Tensor)> {
    let device = w.embed.device();
    let b = requests.len();
    let longest = requests
        .iter()
        .map(|r| r.prompt_ids.len())
        .max()
        .unwrap_or(0)
        .max(1);
    warn_past_context(cfg, longest, params.max_new_tokens);
    let pads: Vec<usize> = requests
        .iter()
        .map(|r| longest - r.prompt_ids.len())
        .collect();
    let mut ids = Vec::with_capacity(b * longest);
    let mut positions = Vec::with_capacity(b * longest);
    for (r, &pad) in requests.iter().zip(&pads) {
        ids.extend(std::iter::repeat_n(pad_id, pad));
        ids.extend_from_slice(&r.prompt_ids);
        positions.extend((0..longest).map(|j| j.saturating_sub(pad) as u32));
    }
    let ids = Tensor::from_vec(ids, (b, longest), device)?;
    let pos = Tensor::from_vec(positions, (b, longest), device)?;
    let mask = prefill_mask(&pads, longest, device)?;
    let hidden = forward(cfg, w, &ids, &pos, &mask, Some(cache))?;
    let last: Vec<u32> = (0..b).map(|i| (i * longest + longest - 1) as u32).collect();
    let logits = logits_at(w, &hidden, &Tensor::new(last, device)?)?;
    Ok((pads, logits))
}

/// Picks new token `step + 1` of every active row from its logits and marks the rows it
/// finishes; returns the picked tokens in batch order.
///
/// # Shapes
/// `logits`: `[active, V]`.
fn pick_tokens(
    logits: &Tensor,
    active: &[usize],
    rows: &mut [Row],
    tok: &Tokenizer,
    params: &SamplingParams,
    step: usize,
) -> Result<Vec<u32>> {
    let logits_rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    if logits_rows.iter().flatten().any(|x| x.is_nan()) {
        return Err(user_error(format!(
            "the model's logits are NaN at new token {}: its weights or its config values \
             (rms_norm_eps, rope_theta, …) cannot be used",
            step + 1
        )));
    }
    let picks = pick_rows(&logits_rows, active, rows, params);
    let mut next = Vec::with_capacity(active.len());
    for (&req, (token, rng)) in active.iter().zip(picks) {
        let row = &mut rows[req];
        row.rng = rng;
        row.tokens.push(token);
        row.done = finished(row, token, tok, params, step + 1 == params.max_new_tokens)?;
        next.push(token);
    }
    Ok(next)
}

/// Each active row's token and its generator after the draw; rows in parallel when the
/// vocabulary is large (each row draws from its own generator, so the result is the same).
fn pick_rows(
    logits_rows: &[Vec<f32>],
    active: &[usize],
    rows: &[Row],
    params: &SamplingParams,
) -> Vec<(u32, Rng)> {
    let pick = |(logits, &req): (&Vec<f32>, &usize)| {
        let mut rng = rows[req].rng.clone();
        (pick_token(logits, params, &mut rng), rng)
    };
    let vocab = logits_rows.first().map_or(0, Vec::len);
    if logits_rows.len() > 1 && vocab >= PARALLEL_PICK_FROM {
        logits_rows.par_iter().zip(active).map(pick).collect()
    } else {
        logits_rows.iter().zip(active).map(pick).collect()
    }
}

fn warn_past_context(cfg: &ModelConfig, prompt: usize, new_tokens: usize) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if prompt + new_tokens > cfg.max_position
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            "a prompt of {prompt} tokens plus {new_tokens} new tokens runs past the model's \
             context of {} positions (max_position_embeddings); what lies beyond it was never \
             trained, and a long prompt samples slowly",
            cfg.max_position
        );
    }
}

/// Whether a row is finished after `token`, and with what text.
fn finished(
    row: &Row,
    token: u32,
    tok: &Tokenizer,
    params: &SamplingParams,
    last: bool,
) -> Result<Option<(Finish, String)>> {
    if tok.eos_ids().contains(&token) {
        let body = &row.tokens[..row.tokens.len() - 1];
        return Ok(Some((Finish::Eos, tok.decode(body)?)));
    }
    if !params.stop.is_empty() || last {
        let text = tok.decode(&row.tokens)?;
        if let Some(cut) = params
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            return Ok(Some((Finish::Stop, text[..cut].to_string())));
        }
        if last {
            return Ok(Some((Finish::Length, text)));
        }
    }
    Ok(None)
}

/// Causal mask that also hides left padding; a padding query sees itself so no row is empty.
///
/// # Shapes
/// → `[B, 1, T, T]`.
fn prefill_mask(pads: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let mut v = Vec::with_capacity(pads.len() * t * t);
    for &pad in pads {
        for i in 0..t {
            for j in 0..t {
                let visible = j <= i && (j >= pad || j == i);
                v.push(if visible { 0f32 } else { f32::NEG_INFINITY });
            }
        }
    }
    Ok(Tensor::from_vec(v, (pads.len(), 1, t, t), device)?)
}

/// One new query per row over `s` keys; left padding hidden.
///
/// # Shapes
/// → `[B, 1, 1, S]`.
fn decode_mask(pads: &[usize], s: usize, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = pads
        .iter()
        .flat_map(|&pad| (0..s).map(move |j| if j >= pad { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(v, (pads.len(), 1, 1, s), device)?)
}
