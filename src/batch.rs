//! Preference pairs as model inputs: tokenizing (prompt and responses separately, as TRL does),
//! one forward of chosen + rejected, and the per-pair tensors a loss hook receives.

use anyhow::Result;
use candle_core::Tensor;

use crate::data::PairRecord;
use crate::loss::LossInputs;
use crate::model::{ModelConfig, Tokenizer, Weights, score_sequences};

/// A pair as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// Tokenizes a pair; when prompt + response exceeds `max_length`, the response is cut at the end
/// and, if the prompt alone is too long, the prompt keeps its last `max_length / 2` tokens.
pub fn tokenize_pair(tok: &Tokenizer, rec: &PairRecord, max_length: usize) -> Result<TokenPair> {
    let mut prompt = tok.encode(&rec.prompt)?;
    let mut chosen = tok.encode(&rec.chosen)?;
    let mut rejected = tok.encode(&rec.rejected)?;
    if prompt.len() + 1 > max_length {
        let keep = (max_length / 2).max(1);
        prompt.drain(..prompt.len() - keep);
    }
    let room = max_length.saturating_sub(prompt.len()).max(1);
    chosen.truncate(room);
    rejected.truncate(room);
    Ok(TokenPair {
        prompt,
        chosen,
        rejected,
    })
}

/// The policy's view of a batch of pairs, from one forward.
///
/// # Shapes
/// Every tensor is `[P]`; `*_logps` carry gradients when the weights do; `*_wpo` are detached.
#[derive(Debug, Clone)]
pub struct PairForward {
    pub chosen_logps: Tensor,
    pub rejected_logps: Tensor,
    pub chosen_wpo: Tensor,
    pub rejected_wpo: Tensor,
    pub chosen_tokens: Vec<usize>,
    pub rejected_tokens: Vec<usize>,
}

/// Scores chosen and rejected responses of `pairs` in one forward.
pub fn forward_pairs(
    cfg: &ModelConfig,
    w: &Weights,
    pairs: &[TokenPair],
    pad_id: u32,
) -> Result<PairForward> {
    let p = pairs.len();
    let mut seqs: Vec<(Vec<u32>, Vec<u32>)> = pairs
        .iter()
        .map(|x| (x.prompt.clone(), x.chosen.clone()))
        .collect();
    seqs.extend(pairs.iter().map(|x| (x.prompt.clone(), x.rejected.clone())));
    let scores = score_sequences(cfg, w, &seqs, pad_id)?;
    Ok(PairForward {
        chosen_logps: scores.logps.narrow(0, 0, p)?,
        rejected_logps: scores.logps.narrow(0, p, p)?,
        chosen_wpo: scores.wpo_mean.narrow(0, 0, p)?,
        rejected_wpo: scores.wpo_mean.narrow(0, p, p)?,
        chosen_tokens: scores.tokens[..p].to_vec(),
        rejected_tokens: scores.tokens[p..].to_vec(),
    })
}

/// Assembles the loss hook's batch.
///
/// # Shapes
/// `ref_chosen`, `ref_rejected`, `weights`: `[P]` → every field `[P]`.
pub fn loss_inputs(
    fwd: &PairForward,
    ref_chosen: &[f64],
    ref_rejected: &[f64],
    weights: &[f64],
) -> Result<LossInputs> {
    let d = fwd.chosen_logps.device().clone();
    let f32s = |v: &[f64]| Tensor::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), &d);
    let counts = |v: &[usize]| Tensor::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), &d);
    Ok(LossInputs {
        chosen_logps: fwd.chosen_logps.clone(),
        rejected_logps: fwd.rejected_logps.clone(),
        ref_chosen_logps: f32s(ref_chosen)?,
        ref_rejected_logps: f32s(ref_rejected)?,
        chosen_tokens: counts(&fwd.chosen_tokens)?,
        rejected_tokens: counts(&fwd.rejected_tokens)?,
        weight: f32s(weights)?,
        chosen_wpo: fwd.chosen_wpo.clone(),
        rejected_wpo: fwd.rejected_wpo.clone(),
    })
}
