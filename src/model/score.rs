//! Scoring responses: summed log-probs of response tokens (prompt masked) and the WPO aligned
//! term `log p(y_t) − log Σ_v p_v²`, in one forward, with the head computed only at response
//! positions.

use anyhow::{Result, bail};
use candle_core::{D, DType, Tensor};

use super::config::ModelConfig;
use super::decoder::{Weights, causal_mask_values, forward, logits_at};
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

/// A right-padded batch of token rows ready for one forward, and the tokens to score in it.
///
/// # Shapes
/// `ids`, `positions`: `B·T` row-major; `mask`: `T·T` (one causal mask for every row) or
/// `B·T·T` (a mask per row, additive: 0 visible, −∞ hidden).
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub rows: usize,
    pub len: usize,
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub mask: Vec<f32>,
    /// `(flat position whose logits predict the token, token, scored sequence)`.
    pub targets: Vec<(u32, u32, usize)>,
    /// Scored tokens of each sequence.
    pub seq_tokens: Vec<usize>,
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
    let t = seqs
        .iter()
        .map(|(p, r)| p.len() + r.len())
        .max()
        .unwrap_or(0);
    let mut packed = Packed {
        rows: seqs.len(),
        len: t,
        ..Packed::default()
    };
    for (i, (prompt, response)) in seqs.iter().enumerate() {
        if prompt.is_empty() || response.is_empty() {
            bail!("sequence {i}: prompt and response must each have at least one token");
        }
        for (j, &tok) in response.iter().enumerate() {
            let pos = prompt.len() + j;
            packed.targets.push(((i * t + pos - 1) as u32, tok, i));
        }
        packed.seq_tokens.push(response.len());
        let len = prompt.len() + response.len();
        packed.ids.extend(prompt.iter().chain(response));
        packed.ids.extend(std::iter::repeat_n(pad_id, t - len));
        packed.positions.extend(0..t as u32);
    }
    packed.mask = causal_mask_values(t, 0);
    score_packed(cfg, w, &packed)
}

/// Scores the targets of a packed batch: one forward, the head only at the target positions,
/// per-sequence sums of log-probs and means of the WPO aligned term.
pub fn score_packed(cfg: &ModelConfig, w: &Weights, packed: &Packed) -> Result<SeqScores> {
    let device = w.embed.device().clone();
    let (b, t, s) = (packed.rows, packed.len, packed.seq_tokens.len());
    let ids = Tensor::from_slice(&packed.ids, (b, t), &device)?;
    let positions = Tensor::from_slice(&packed.positions, (b, t), &device)?;
    let mask_rows = if packed.mask.len() == t * t { 1 } else { b };
    let mask = Tensor::from_slice(&packed.mask, (mask_rows, 1, t, t), &device)?;
    let hidden = forward(cfg, w, &ids, &positions, &mask, None)?;
    let n = packed.targets.len();
    let rows: Vec<u32> = packed.targets.iter().map(|x| x.0).collect();
    let logits = logits_at(w, &hidden, &Tensor::new(rows, &device)?)?;
    let targets: Vec<u32> = packed.targets.iter().map(|x| x.1).collect();
    let targets = Tensor::from_vec(targets, (n, 1), &device)?;
    let (logp, aligned) = token_logprobs(&logits, &targets)?;
    let mut seg = vec![0f32; s * n];
    for (col, &(_, _, seq)) in packed.targets.iter().enumerate() {
        seg[seq * n + col] = 1.0;
    }
    let seg = Tensor::from_vec(seg, (s, n), &device)?;
    let logps = seg.matmul(&logp.unsqueeze(1)?)?.squeeze(1)?;
    let counts: Vec<f32> = packed.seq_tokens.iter().map(|&c| c as f32).collect();
    let wpo_mean = seg
        .matmul(&aligned.unsqueeze(1)?)?
        .squeeze(1)?
        .div(&Tensor::new(counts, &device)?)?;
    Ok(SeqScores {
        logps,
        wpo_mean,
        tokens: packed.seq_tokens.clone(),
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
