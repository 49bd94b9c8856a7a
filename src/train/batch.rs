//! Preference pairs as model inputs: tokenizing (prompt and responses separately, as TRL does),
//! one forward of chosen + rejected, and the per-pair tensors a loss hook receives.

use anyhow::{Result, bail};
use candle_core::Tensor;

use crate::data::PairRecord;
use crate::model::{ModelConfig, Packed, Tokenizer, Weights, score_packed};
use crate::script::LossInputs;

/// A pair as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl TokenPair {
    /// An anchor (`pairs.all_correct = "anchor"`): the same response as chosen and rejected.
    pub fn is_anchor(&self) -> bool {
        self.chosen == self.rejected
    }
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

/// Scores chosen and rejected responses of `pairs` in one forward that runs each prompt once:
/// a row holds `prompt | chosen | rejected`, the rejected tokens take the positions right after
/// the prompt and attend to the prompt and to themselves only, so each response sees exactly
/// what it would see after its prompt alone, and gradients from both flow through the prompt.
pub fn forward_pairs(
    cfg: &ModelConfig,
    w: &Weights,
    pairs: &[TokenPair],
    pad_id: u32,
) -> Result<PairForward> {
    let p = pairs.len();
    let scores = score_packed(cfg, w, &pack_pairs(pairs, pad_id)?)?;
    Ok(PairForward {
        chosen_logps: scores.logps.narrow(0, 0, p)?,
        rejected_logps: scores.logps.narrow(0, p, p)?,
        chosen_wpo: scores.wpo_mean.narrow(0, 0, p)?,
        rejected_wpo: scores.wpo_mean.narrow(0, p, p)?,
        chosen_tokens: scores.tokens[..p].to_vec(),
        rejected_tokens: scores.tokens[p..].to_vec(),
    })
}

/// Packs pairs into rows `prompt | chosen | rejected` (right-padded): scored sequence `i` is
/// pair `i`'s chosen response and `P + i` its rejected one. An anchor's row is `prompt | chosen`
/// and its rejected sequence reads the chosen positions: the same log-probs, and the gradients of
/// both uses summed, exactly as if the response had been written twice.
pub fn pack_pairs(pairs: &[TokenPair], pad_id: u32) -> Result<Packed> {
    if pairs.is_empty() {
        bail!("no pairs to score");
    }
    let t = pairs
        .iter()
        .map(|x| x.prompt.len() + x.chosen.len() + usize::from(!x.is_anchor()) * x.rejected.len())
        .max()
        .unwrap_or(0);
    let n = pairs.len();
    let mut packed = Packed {
        rows: n,
        len: t,
        seq_tokens: vec![0; 2 * n],
        ..Packed::default()
    };
    for (i, x) in pairs.iter().enumerate() {
        let (pl, cl, rl) = (x.prompt.len(), x.chosen.len(), x.rejected.len());
        if pl == 0 || cl == 0 || rl == 0 {
            bail!("pair {i}: prompt, chosen and rejected must each have at least one token");
        }
        let base = (i * t) as u32;
        let row = |pos: usize| base + pos as u32;
        for (j, &tok) in x.chosen.iter().enumerate() {
            packed.targets.push((row(pl + j - 1), tok, i));
        }
        let anchor = x.is_anchor();
        for (j, &tok) in x.rejected.iter().enumerate() {
            let from = match (anchor, j) {
                (true, _) | (false, 0) => pl + j - 1,
                (false, _) => pl + cl + j - 1,
            };
            packed.targets.push((row(from), tok, n + i));
        }
        packed.seq_tokens[i] = cl;
        packed.seq_tokens[n + i] = rl;
        let rejected: &[u32] = if anchor { &[] } else { &x.rejected };
        let rl = rejected.len();
        let used = pl + cl + rl;
        packed
            .ids
            .extend(x.prompt.iter().chain(&x.chosen).chain(rejected));
        packed.ids.extend(std::iter::repeat_n(pad_id, t - used));
        packed.positions.extend((0..pl + cl).map(|p| p as u32));
        packed.positions.extend((pl..pl + rl).map(|p| p as u32));
        packed.positions.extend((used..t).map(|p| p as u32));
        packed.mask.extend(pair_mask(t, pl, cl));
    }
    Ok(packed)
}

/// The additive mask of one packed row of length `t` with a prompt of `pl` tokens followed by a
/// chosen response of `cl` tokens: causal, except that positions after the chosen response
/// (the rejected one and the padding) do not see the chosen response.
///
/// # Shapes
/// → `t · t` row-major.
fn pair_mask(t: usize, pl: usize, cl: usize) -> Vec<f32> {
    let mut m = vec![f32::NEG_INFINITY; t * t];
    for q in 0..t {
        for k in 0..=q {
            if q < pl + cl || k < pl || k >= pl + cl {
                m[q * t + k] = 0.0;
            }
        }
    }
    m
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{Device, Tensor};

    use super::{TokenPair, forward_pairs};
    use crate::model::{Arch, ModelConfig, Policy, score_sequences};
    use crate::rng::Rng;

    fn policy() -> Policy {
        let cfg = ModelConfig::tiny_for_tests(Arch::Qwen2);
        let mut rng = Rng::new(3);
        let tensors: HashMap<String, Tensor> = crate::model::expected_tensors(&cfg)
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.5) as f32).collect();
                (name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
            })
            .collect();
        Policy::from_tensors(cfg, tensors, "test").unwrap()
    }

    #[test]
    fn shared_prompt_scores_equal_separate_prompt_response_sequences() {
        let policy = policy();
        let pairs = vec![
            TokenPair {
                prompt: vec![1, 2, 3],
                chosen: vec![4, 5],
                rejected: vec![6, 7, 8, 9],
            },
            TokenPair {
                prompt: vec![10, 11, 12, 13, 14],
                chosen: vec![15, 16, 17],
                rejected: vec![18],
            },
        ];
        let w = policy.weights();
        let packed = forward_pairs(&policy.config, w, &pairs, 0).unwrap();
        let mut seqs: Vec<_> = pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.chosen.clone()))
            .collect();
        seqs.extend(pairs.iter().map(|p| (p.prompt.clone(), p.rejected.clone())));
        let apart = score_sequences(&policy.config, w, &seqs, 0).unwrap();
        let both = Tensor::cat(&[&packed.chosen_logps, &packed.rejected_logps], 0).unwrap();
        let a = both.to_vec1::<f32>().unwrap();
        let b = apart.logps.to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        // The packing must not be trivially right: changing a chosen token moves the chosen
        // score but leaves the rejected one exactly as it was.
        let mut moved = pairs.clone();
        moved[0].chosen[0] = 30;
        let m = forward_pairs(&policy.config, w, &moved, 0).unwrap();
        let r0 = m.rejected_logps.to_vec1::<f32>().unwrap();
        assert_eq!(r0, packed.rejected_logps.to_vec1::<f32>().unwrap());
        assert_ne!(
            m.chosen_logps.to_vec1::<f32>().unwrap()[0],
            packed.chosen_logps.to_vec1::<f32>().unwrap()[0]
        );
        assert!(b.iter().all(|v| v.is_finite()) && b[0] != b[1]);
    }

    #[test]
    fn an_anchor_scores_its_response_once_and_gives_it_to_both_sides() {
        let policy = policy();
        let w = policy.weights();
        let anchor = TokenPair {
            prompt: vec![1, 2, 3],
            chosen: vec![4, 5, 6],
            rejected: vec![4, 5, 6],
        };
        let other = TokenPair {
            prompt: vec![7, 8],
            chosen: vec![9],
            rejected: vec![10, 11],
        };
        let pairs = vec![anchor.clone(), other.clone()];
        assert!(anchor.is_anchor() && !other.is_anchor());
        // The anchor's row is prompt | chosen only: 6 tokens, shorter than 3 + 3 + 3.
        assert_eq!(super::pack_pairs(&pairs, 0).unwrap().len, 6);
        let f = forward_pairs(&policy.config, w, &pairs, 0).unwrap();
        let c = f.chosen_logps.to_vec1::<f32>().unwrap();
        let r = f.rejected_logps.to_vec1::<f32>().unwrap();
        assert_eq!(c[0], r[0]);
        assert_eq!(f.rejected_tokens, vec![3, 2]);
        let apart = score_sequences(
            &policy.config,
            w,
            &[
                (anchor.prompt.clone(), anchor.chosen.clone()),
                (other.prompt.clone(), other.rejected.clone()),
            ],
            0,
        )
        .unwrap()
        .logps
        .to_vec1::<f32>()
        .unwrap();
        assert!((r[0] - apart[0]).abs() < 1e-5 && (r[1] - apart[1]).abs() < 1e-5);
    }
}
