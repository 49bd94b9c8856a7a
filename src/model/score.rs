//! Scoring responses: summed log-probs of response tokens (prompt masked) and the WPO aligned
//! term `log p(y_t) − log Σ_v p_v²`, in one forward, with the head computed only at response
//! positions.

use anyhow::{Result, bail};
use candle_core::{D, DType, Tensor};

use super::config::ModelConfig;
use super::decoder::{Weights, causal_mask, forward, logits_at};
use super::fused;
use super::ops::logsumexp_last;

/// Scores of a batch of sequences.
///
/// # Shapes
/// `logps`: `[S]` (with gradient when the weights carry it), `wpo_mean`: `[S]` detached.
#[derive(Debug, Clone)]
pub struct SeqScores {
    pub logps: Tensor,
    pub wpo_mean: Tensor,
    pub tokens: Vec<usize>,
}

/// Scores `(prompt, response)` token sequences: one forward of the right-padded batch.
pub fn score_sequences(
    cfg: &ModelConfig,
    w: &Weights,
    seqs: &[(Vec<u32>, Vec<u32>)],
    pad_id: u32,
) -> Result<SeqScores> {
    if seqs.is_empty() {
        bail!("no sequences to score");
    }
    let device = w.embed.device().clone();
    let t = seqs
        .iter()
        .map(|(p, r)| p.len() + r.len())
        .max()
        .unwrap_or(0);
    let s = seqs.len();
    let mut ids = Vec::with_capacity(s * t);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut owner = Vec::new();
    for (i, (prompt, response)) in seqs.iter().enumerate() {
        if prompt.is_empty() || response.is_empty() {
            bail!("sequence {i}: prompt and response must each have at least one token");
        }
        let seq: Vec<u32> = prompt.iter().chain(response).copied().collect();
        for (j, &tok) in response.iter().enumerate() {
            let pos = prompt.len() + j;
            rows.push((i * t + pos - 1) as u32);
            targets.push(tok);
            owner.push(i);
        }
        ids.extend_from_slice(&seq);
        ids.extend(std::iter::repeat_n(pad_id, t - seq.len()));
    }
    let ids = Tensor::from_vec(ids, (s, t), &device)?;
    let positions = Tensor::arange(0u32, t as u32, &device)?
        .unsqueeze(0)?
        .repeat((s, 1))?;
    let hidden = forward(cfg, w, &ids, &positions, &causal_mask(t, 0, &device)?, None)?;
    let n = rows.len();
    let logits = logits_at(w, &hidden, &Tensor::new(rows, &device)?)?;
    let targets = Tensor::from_vec(targets, (n, 1), &device)?;
    let (logp, aligned) = token_logprobs(&logits, &targets)?;
    let mut seg = vec![0f32; s * n];
    for (col, &row) in owner.iter().enumerate() {
        seg[row * n + col] = 1.0;
    }
    let seg = Tensor::from_vec(seg, (s, n), &device)?;
    let logps = seg.matmul(&logp.unsqueeze(1)?)?.squeeze(1)?;
    let tokens: Vec<usize> = seqs.iter().map(|(_, r)| r.len()).collect();
    let counts = Tensor::new(
        tokens.iter().map(|&c| c as f32).collect::<Vec<_>>(),
        &device,
    )?;
    let wpo_mean = seg
        .matmul(&aligned.unsqueeze(1)?)?
        .squeeze(1)?
        .div(&counts)?;
    Ok(SeqScores {
        logps,
        wpo_mean,
        tokens,
    })
}

/// Per-token log-prob of each target and the WPO aligned term. On the CPU one fused pass over the
/// logits gives both, and the backward keeps only the logits and the row logsumexps.
///
/// # Shapes
/// `logits`: `[N, V]`, `targets`: `[N, 1]` (u32) → (`[N]` with gradient, `[N]` detached).
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
    let logits = logits.to_dtype(DType::F32)?;
    if fused::applies(&logits) {
        let ids = targets.flatten_all()?.to_vec1::<u32>()?;
        let (logp, log_sq) = fused::target_logprobs(&logits, ids)?;
        let aligned = (logp.detach() - log_sq)?;
        return Ok((logp, aligned));
    }
    Ok(token_logprobs_composed(&logits, targets)?)
}

/// [`token_logprobs`] from candle primitives (autograd keeps several `[N, V]` intermediates).
///
/// # Shapes
/// `logits`: `[N, V]` (f32), `targets`: `[N, 1]` (u32) → (`[N]` with gradient, `[N]` detached).
pub fn token_logprobs_composed(
    logits: &Tensor,
    targets: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let lse = logsumexp_last(logits)?;
    let picked = logits.gather(targets, D::Minus1)?.squeeze(D::Minus1)?;
    let logp = (picked - &lse)?;
    let frozen = logits.detach();
    let lse2 = logsumexp_last(&(&frozen * 2.0)?)?;
    let aligned = (logp.detach() - (lse2 - (lse.detach() * 2.0)?)?)?;
    Ok((logp, aligned))
}
