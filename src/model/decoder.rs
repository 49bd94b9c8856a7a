//! The decoder forward (Llama / Qwen2) from differentiable ops: embedding, RMSNorm, rotary
//! attention with grouped KV heads, SwiGLU MLP, with an optional KV cache for generation.

use candle_core::{DType, Device, Result, Tensor};

use super::config::ModelConfig;
use super::frozen_linear::matmul_t;
use super::fused;
use super::lora::{LayerLora, Target};
use super::ops::{Rotary, rms_norm, softmax_last};
use super::proj::Proj;

/// One layer's weights, HF layout (`[out, in]`, q/k rows in HF's non-interleaved rope order); the
/// seven projections dense, or quantized for sampling.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub q: Proj,
    pub k: Proj,
    pub v: Proj,
    pub q_bias: Option<Tensor>,
    pub k_bias: Option<Tensor>,
    pub v_bias: Option<Tensor>,
    pub o: Proj,
    pub mlp_norm: Tensor,
    pub gate: Proj,
    pub up: Proj,
    pub down: Proj,
    /// LoRA adapters on some projections (none when LoRA is off).
    pub lora: LayerLora,
}

/// All weights of a decoder.
#[derive(Debug, Clone)]
pub struct Weights {
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Tensor>,
    /// Quantized output projection used by [`Weights::head_logits`] instead of [`Weights::head`]
    /// (sampling only; `None` for the trainable weights).
    pub quant_head: Option<Proj>,
}

fn detach_opt(t: &Option<Tensor>) -> Option<Tensor> {
    t.as_ref().map(Tensor::detach)
}

impl Weights {
    /// The same weights (same storage) without gradient tracking, for generation and reference passes.
    pub fn detached(&self) -> Weights {
        Weights {
            embed: self.embed.detach(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    attn_norm: l.attn_norm.detach(),
                    q: l.q.detach(),
                    k: l.k.detach(),
                    v: l.v.detach(),
                    q_bias: detach_opt(&l.q_bias),
                    k_bias: detach_opt(&l.k_bias),
                    v_bias: detach_opt(&l.v_bias),
                    o: l.o.detach(),
                    mlp_norm: l.mlp_norm.detach(),
                    gate: l.gate.detach(),
                    up: l.up.detach(),
                    down: l.down.detach(),
                    lora: l.lora.detached(),
                })
                .collect(),
            norm: self.norm.detach(),
            lm_head: detach_opt(&self.lm_head),
            quant_head: self.quant_head.clone(),
        }
    }

    /// The output projection (the embedding when tied).
    ///
    /// # Shapes
    /// `[V, H]`.
    pub fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Logits of hidden states through the quantized head when there is one, else the dense.
    ///
    /// # Shapes
    /// `hidden`: `[N, H]` → `[N, V]`.
    pub fn head_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.quant_head {
            Some(head) => head.forward(hidden, None),
            None => matmul_t(hidden, self.head()),
        }
    }
}

/// Keys and values of the positions seen so far, per layer.
///
/// # Shapes
/// Each entry is `([B, kv_heads, S, head_dim], [B, kv_heads, S, head_dim])`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the batch rows in `keep` (finished sequences leave the batch).
    pub fn select_rows(&mut self, keep: &Tensor) -> Result<()> {
        for entry in self.layers.iter_mut().flatten() {
            entry.0 = entry.0.index_select(keep, 0)?;
            entry.1 = entry.1.index_select(keep, 0)?;
        }
        Ok(())
    }
}

/// The additive causal mask for `t` new positions after `past` cached ones.
///
/// # Shapes
/// → `[1, 1, t, past + t]` (0 where visible, −∞ where not).
pub fn causal_mask(t: usize, past: usize, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(causal_mask_values(t, past), (1, 1, t, past + t), device)
}

/// The values of [`causal_mask`], row-major `t × (past + t)`.
pub fn causal_mask_values(t: usize, past: usize) -> Vec<f32> {
    let s = past + t;
    (0..t)
        .flat_map(|i| {
            (0..s).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect()
}

/// Runs the decoder and returns the final-normed hidden states.
///
/// # Shapes
/// `ids`, `positions`: `[B, T]` (u32); `mask`: `[B or 1, 1, T, S]` additive with
/// `S = cache.len() + T` → `[B, T, H]`.
pub fn forward(
    cfg: &ModelConfig,
    w: &Weights,
    ids: &Tensor,
    positions: &Tensor,
    mask: &Tensor,
    mut cache: Option<&mut KvCache>,
) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let keys = mask.dim(3)?;
    if let Some(window) = cfg.sliding_window.filter(|&win| keys > win) {
        candle_core::bail!(
            "a sequence of {keys} tokens is longer than the model's sliding_window = {window}; \
             sliding-window attention is not implemented"
        );
    }
    let mut x = w
        .embed
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((b, t, cfg.hidden_size))?;
    let rotary = Rotary::new(positions, &cfg.inv_freq(), fused::applies(&x))?;
    for (i, layer) in w.layers.iter().enumerate() {
        let h = rms_norm(&x, &layer.attn_norm, cfg.rms_eps)?;
        let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
        let a = attention(cfg, layer, &h, &rotary, mask, slot)?;
        x = (x + a)?;
        let h = rms_norm(&x, &layer.mlp_norm, cfg.rms_eps)?;
        let gate = layer.project(Target::Gate, &h)?;
        let up = layer.project(Target::Up, &h)?;
        let act = if fused::applies(&gate) {
            fused::silu_mul(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        x = (x + layer.project(Target::Down, &act)?)?;
    }
    rms_norm(&x, &w.norm, cfg.rms_eps)
}

/// Above this size of one layer's attention probabilities (`B·heads·T·S` f32), attention takes
/// the kernel that recomputes them in backward instead of keeping them
/// ([`fused::flash_attention`]). Below it the kept probabilities cost little memory and the
/// results stay those of the earlier kernels bit for bit (every built-in run, and SmolLM2 on
/// GSM8K-length pairs); 4 SmolLM2 pairs of 3 × 512 packed tokens hold 85 MB per layer.
const FLASH_MIN_PROBS_BYTES: usize = 64 << 20;

/// Grouped-query attention. Query heads sharing a KV head are folded into the time axis so that
/// K and V are never copied per query head.
fn attention(
    cfg: &ModelConfig,
    l: &LayerWeights,
    h: &Tensor,
    rotary: &Rotary,
    mask: &Tensor,
    cache: Option<&mut Option<(Tensor, Tensor)>>,
) -> Result<Tensor> {
    let (b, t, _) = h.dims3()?;
    let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let heads = |x: Tensor, n: usize| x.reshape((b, t, n, hd));
    let q = rotary.apply(&heads(l.project(Target::Q, h)?, nh)?)?;
    let k = rotary.apply(&heads(l.project(Target::K, h)?, nkv)?)?;
    let v = heads(l.project(Target::V, h)?, nkv)?
        .transpose(1, 2)?
        .contiguous()?;
    let (k, v) = match cache {
        Some(slot) => {
            let kv = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            *slot = Some(kv.clone());
            kv
        }
        None => (k, v),
    };
    let flash = b * nh * t * k.dim(2)? * 4 > FLASH_MIN_PROBS_BYTES;
    l.project(Target::O, &attend(&q, &k, &v, mask, flash)?)
}

/// `softmax(q·kᵀ/√D + mask) · v` for every query head, laid out for the output projection;
/// `flash` picks the kernel that recomputes the probabilities in backward (CPU f32 only).
///
/// # Shapes
/// `q`: `[B, nh, T, D]`, `k`, `v`: `[B, nkv, S, D]`, `mask`: `[B or 1, 1, T, S]` →
/// `[B, T, nh·D]`.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, flash: bool) -> Result<Tensor> {
    let (b, nh, t, hd) = q.dims4()?;
    let (nkv, s) = (k.dim(1)?, k.dim(2)?);
    let rep = nh / nkv;
    let scale = 1.0 / (hd as f64).sqrt();
    let q = q.reshape((b, nkv, rep * t, hd))?;
    let fused = fused::applies(&q) && fused::applies(mask);
    if fused && flash {
        let kv = Tensor::cat(&[k, v], 3)?;
        return fused::flash_attention(&q, &kv, mask, scale)?
            .reshape((b, nkv, rep, t, hd))?
            .permute((0, 3, 1, 2, 4))?
            .reshape((b, t, nh * hd));
    }
    let probs = if fused {
        fused::attention_probs(&q, k, mask, scale)?
    } else {
        let scores = q.matmul(&k.t()?)?.reshape((b, nkv, rep, t, s))?;
        let masked = (scores * scale)?.broadcast_add(&mask.unsqueeze(1)?)?;
        softmax_last(&masked)?.reshape((b, nkv, rep * t, s))?
    };
    if fused::applies(&probs) && fused::applies(v) {
        fused::attention_out(&probs, v, t)
    } else {
        let out = probs.matmul(v)?.reshape((b, nh, t, hd))?.transpose(1, 2)?;
        out.reshape((b, t, nh * hd))
    }
}

/// Logits of the rows of `hidden` listed in `rows` (only those positions pay for the head).
///
/// # Shapes
/// `hidden`: `[B, T, H]`, `rows`: `[N]` (u32 indices into the flattened `B·T`) → `[N, V]`.
pub fn logits_at(w: &Weights, hidden: &Tensor, rows: &Tensor) -> Result<Tensor> {
    let (b, t, hsz) = hidden.dims3()?;
    let picked = hidden.reshape((b * t, hsz))?.index_select(rows, 0)?;
    w.head_logits(&picked)
}

/// Logits of every position.
///
/// # Shapes
/// `hidden`: `[B, T, H]` → `[B, T, V]`.
pub fn logits_all(w: &Weights, hidden: &Tensor) -> Result<Tensor> {
    let (b, t, hsz) = hidden.dims3()?;
    let out = matmul_t(&hidden.reshape((b * t, hsz))?, w.head())?;
    out.reshape((b, t, ())).and_then(|x| x.to_dtype(DType::F32))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::super::fused::testing::grads_of;
    use super::{attend, causal_mask};

    /// Three query heads per KV head, T = S = 70 with the causal mask: both kernels give the same
    /// output and the same gradients for q, k and v (to f32 rounding).
    #[test]
    fn flash_and_kept_probability_attention_agree_with_grouped_heads() {
        let dev = Device::Cpu;
        let var =
            |d: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, d, &dev).unwrap()).unwrap();
        let (q, k, v) = (
            var(&[2, 6, 70, 8]),
            var(&[2, 2, 70, 8]),
            var(&[2, 2, 70, 8]),
        );
        let mask = causal_mask(70, 0, &dev).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 70, 48), &dev).unwrap();
        let run = |flash: bool| {
            let out = attend(&q, &k, &v, &mask, flash).unwrap();
            let mut all = vec![out];
            let grads = grads_of(&[&q, &k, &v], &probe, |t| {
                attend(&t[0], &t[1], &t[2], &mask, flash)
            });
            all.extend(grads.unwrap());
            all
        };
        for (i, (a, b)) in run(true).iter().zip(&run(false)).enumerate() {
            let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
            let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(max <= 1e-5, "tensor {i}: max difference {max}");
        }
    }
}
