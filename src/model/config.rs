//! The resolved architecture of a decoder, read from an HF `config.json` or GGUF metadata.

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::error::user_error;

/// The model families the trainer can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 1-3.x, Mistral (sequences within its window), SmolLM2 (RMSNorm, SwiGLU, rope, GQA).
    Llama,
    /// Qwen2: Llama plus a bias on the q/k/v projections.
    Qwen2,
}

/// Everything the decoder needs to know about its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    pub max_position: usize,
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Llama 3's rope scaling (`rope_scaling.rope_type = "llama3"`), `None` for plain rope.
    #[serde(default)]
    pub rope_scaling: Option<Llama3Rope>,
    /// Mistral's sliding attention window; sequences must fit in it (no windowed attention).
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

/// Llama 3's rope scaling: wavelengths longer than `original_max_position / low_freq_factor`
/// are slowed by `factor`, those shorter than `original_max_position / high_freq_factor` kept,
/// and the band between blended smoothly (HF's `_compute_llama3_parameters`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position: usize,
}

impl Llama3Rope {
    /// One inverse frequency, scaled.
    pub fn scale(&self, inv_freq: f32) -> f32 {
        let f = f64::from(inv_freq);
        let wavelen = 2.0 * std::f64::consts::PI / f;
        let old = self.original_max_position as f64;
        if wavelen < old / self.high_freq_factor {
            inv_freq
        } else if wavelen > old / self.low_freq_factor {
            (f / self.factor) as f32
        } else {
            let smooth = (old / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            ((1.0 - smooth) * f / self.factor + smooth * f) as f32
        }
    }

    /// The parameters whose per-frequency divisors are `factors` (a GGUF's `rope_freqs`, which
    /// llama.cpp's converter writes from them), among the values Llama 3.x ships with.
    pub fn fit(factors: &[f32], base: &[f32]) -> Option<Llama3Rope> {
        let candidates = [8.0, 16.0, 32.0, 64.0].map(|factor| Llama3Rope {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 8192,
        });
        candidates.into_iter().find(|c| {
            factors.len() == base.len()
                && factors.iter().zip(base).all(|(&got, &f)| {
                    let want = f64::from(f) / f64::from(c.scale(f));
                    (f64::from(got) - want).abs() <= 1e-4 * want
                })
        })
    }

    fn to_hf_json(self) -> serde_json::Value {
        serde_json::json!({
            "rope_type": "llama3",
            "factor": self.factor,
            "low_freq_factor": self.low_freq_factor,
            "high_freq_factor": self.high_freq_factor,
            "original_max_position_embeddings": self.original_max_position,
        })
    }

    /// `rope_scaling` of an HF config: `null`, `default`, or `llama3` with its four numbers.
    fn from_hf_json(v: &serde_json::Value, origin: &str) -> Result<Option<Llama3Rope>> {
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let bad = |why: String| user_error(format!("{origin}: rope_scaling {v}: {why}"));
        match kind {
            "default" => Ok(None),
            "llama3" => {
                let num = |k: &str| {
                    v.get(k)
                        .and_then(serde_json::Value::as_f64)
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .ok_or_else(|| bad(format!("`{k}` must be a number > 0")))
                };
                let rope = Llama3Rope {
                    factor: num("factor")?,
                    low_freq_factor: num("low_freq_factor")?,
                    high_freq_factor: num("high_freq_factor")?,
                    original_max_position: num("original_max_position_embeddings")? as usize,
                };
                if rope.high_freq_factor <= rope.low_freq_factor {
                    return Err(bad("high_freq_factor must exceed low_freq_factor".into()));
                }
                Ok(Some(rope))
            }
            other => Err(bad(format!(
                "rope type `{other}` is not supported (only Llama 3's `llama3`)"
            ))),
        }
    }
}

impl ModelConfig {
    /// The rotary inverse frequencies, `[head_dim / 2]`, scaled when the model says so.
    pub fn inv_freq(&self) -> Vec<f32> {
        let base = super::ops::default_inv_freq(self.head_dim, self.rope_theta);
        match &self.rope_scaling {
            None => base,
            Some(r) => base.into_iter().map(|f| r.scale(f)).collect(),
        }
    }

    /// A two-layer decoder of `arch` with 16 hidden units, 4 query and 2 KV heads, for unit tests.
    #[cfg(test)]
    pub(crate) fn tiny_for_tests(arch: Arch) -> ModelConfig {
        ModelConfig {
            arch,
            vocab_size: 40,
            hidden_size: 16,
            intermediate_size: 24,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 4,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            max_position: 64,
            tie_embeddings: true,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: None,
            sliding_window: None,
        }
    }

    pub fn qkv_bias(&self) -> bool {
        self.arch == Arch::Qwen2
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let bias = if self.qkv_bias() { q + 2 * kv } else { 0 };
        let layer = 2 * h + h * q + 2 * h * kv + q * h + bias + 3 * h * i;
        let head = if self.tie_embeddings { 0 } else { v * h };
        v * h + self.num_layers * layer + h + head
    }

    /// Checks that the numbers fit together (heads divide, sizes non-zero).
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |what: String| Err(user_error(format!("{origin}: {what}")));
        if self.vocab_size == 0
            || self.hidden_size == 0
            || self.num_layers == 0
            || self.num_heads == 0
        {
            return bad(
                "vocab_size, hidden_size, num_hidden_layers and num_attention_heads must be > 0"
                    .into(),
            );
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim == 0 {
            return bad(format!("head_dim = {} must be even and > 0", self.head_dim));
        }
        if self.intermediate_size == 0 {
            return bad("intermediate_size must be > 0".into());
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps = {} must be a finite number > 0",
                self.rms_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta = {} must be a finite number > 0",
                self.rope_theta
            ));
        }
        Ok(())
    }

    /// `hidden / heads`, the head size when a config does not give it; a user error when the
    /// heads do not divide the hidden size.
    fn head_dim_of(origin: &str, hidden: usize, heads: usize) -> Result<usize> {
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(user_error(format!(
                "{origin}: hidden_size = {hidden} is not a multiple of num_attention_heads = {heads}"
            )));
        }
        Ok(hidden / heads)
    }

    /// Reads an HF `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<ModelConfig> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| user_error(format!("{origin}: cannot read: {e}")))?;
        let raw: HfConfig =
            serde_json::from_str(&text).map_err(|e| user_error(format!("{origin}: {e}")))?;
        let arch = match raw.model_type.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(user_error(format!(
                    "{origin}: model_type `{other}` is not supported (llama, mistral, qwen2)"
                )));
            }
        };
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None => Self::head_dim_of(&origin, raw.hidden_size, raw.num_attention_heads)?,
        };
        let cfg = ModelConfig {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim,
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rms_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            max_position: raw.max_position_embeddings.unwrap_or(4096),
            tie_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            bos_token_id: raw.bos_token_id.as_ref().and_then(first_id),
            eos_token_id: raw.eos_token_id.as_ref().and_then(first_id),
            rope_scaling: match raw.rope_scaling.filter(|v| !v.is_null()) {
                Some(v) => Llama3Rope::from_hf_json(&v, &origin)?,
                None => None,
            },
            // Qwen2 configs carry a window they use only with `use_sliding_window = true`
            // (transformers' default is false); Mistral's always applies.
            sliding_window: raw.sliding_window.filter(|_| match arch {
                Arch::Qwen2 => raw.use_sliding_window == Some(true),
                Arch::Llama => raw.use_sliding_window != Some(false),
            }),
        };
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// The HF `config.json` for this config (for checkpoints).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let (model_type, arch) = match self.arch {
            Arch::Llama => ("llama", "LlamaForCausalLM"),
            Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        };
        serde_json::json!({
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_eps,
            "max_position_embeddings": self.max_position,
            "tie_word_embeddings": self.tie_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "rope_scaling": self.rope_scaling.map(Llama3Rope::to_hf_json),
            "sliding_window": self.sliding_window,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        })
    }

    /// Reads GGUF metadata (`general.architecture` = llama or qwen2).
    pub fn from_gguf(content: &gguf_file::Content, origin: &str) -> Result<ModelConfig> {
        let md = &content.metadata;
        let get = |key: &str| md.get(key);
        let arch_name = get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| user_error(format!("{origin}: GGUF has no general.architecture")))?;
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(user_error(format!(
                    "{origin}: GGUF architecture `{other}` is not supported (llama, qwen2)"
                )));
            }
        };
        let p = arch_name.as_str();
        let int = |key: &str| -> Result<usize> {
            let full = format!("{p}.{key}");
            get(&full)
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|v| v as usize)
                .ok_or_else(|| user_error(format!("{origin}: GGUF metadata is missing {full}")))
        };
        let float = |key: &str, default: f64| -> f64 {
            get(&format!("{p}.{key}"))
                .and_then(|v| v.to_f32().ok().map(f64::from).or_else(|| v.to_f64().ok()))
                .unwrap_or(default)
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let vocab = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok().map(Vec::len))
                .ok_or_else(|| user_error(format!("{origin}: cannot tell the vocabulary size")))?,
        };
        let token = |key: &str| get(key).and_then(|v| v.to_u32().ok());
        let cfg = ModelConfig {
            arch,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            num_layers: int("block_count")?,
            num_heads: heads,
            num_kv_heads: int("attention.head_count_kv").unwrap_or(heads),
            head_dim: match int("rope.dimension_count") {
                Ok(d) => d,
                Err(_) => Self::head_dim_of(origin, hidden, heads)?,
            },
            rope_theta: float("rope.freq_base", 10_000.0),
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-6),
            max_position: int("context_length").unwrap_or(4096),
            tie_embeddings: !content.tensor_infos.contains_key("output.weight"),
            bos_token_id: token("tokenizer.ggml.bos_token_id"),
            eos_token_id: token("tokenizer.ggml.eos_token_id"),
            // Set from the `rope_freqs` tensor when the file has one (see `load`).
            rope_scaling: None,
            sliding_window: None,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }
}

fn first_id(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::Array(items) => items.first().and_then(first_id),
        _ => None,
    }
}

/// The fields of an HF `config.json` the trainer reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
}

#[cfg(test)]
mod rope_tests {
    use super::*;

    /// HF's `_compute_llama3_parameters`, written out in f64 for one frequency.
    fn closed_form(f: f64, factor: f64, low: f64, high: f64, old: f64) -> f64 {
        let wavelen = 2.0 * std::f64::consts::PI / f;
        let scaled = if wavelen > old / low { f / factor } else { f };
        let smooth = (old / wavelen - low) / (high - low);
        let medium = wavelen >= old / high && wavelen <= old / low;
        if medium {
            (1.0 - smooth) * scaled / factor + smooth * scaled
        } else {
            scaled
        }
    }

    fn llama3_2() -> ModelConfig {
        ModelConfig {
            head_dim: 64,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3Rope {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position: 8192,
            }),
            ..ModelConfig::tiny_for_tests(Arch::Llama)
        }
    }

    #[test]
    fn llama3_inverse_frequencies_follow_the_closed_form() {
        let cfg = llama3_2();
        let base = crate::model::ops::default_inv_freq(64, 500_000.0);
        let got = cfg.inv_freq();
        let (mut kept, mut slowed, mut blended) = (0, 0, 0);
        for (g, b) in got.iter().zip(&base) {
            let want = closed_form(f64::from(*b), 32.0, 1.0, 4.0, 8192.0);
            assert!((f64::from(*g) - want).abs() <= 1e-6 * want, "{g} vs {want}");
            match f64::from(*b) / f64::from(*g) {
                r if (r - 1.0).abs() < 1e-6 => kept += 1,
                r if (r - 32.0).abs() < 1e-4 => slowed += 1,
                _ => blended += 1,
            }
        }
        assert!(
            kept > 0 && slowed > 0 && blended > 0,
            "{kept} {slowed} {blended}"
        );
    }

    #[test]
    fn gguf_rope_divisors_give_back_the_llama3_parameters() {
        let cfg = llama3_2();
        let base = crate::model::ops::default_inv_freq(64, 500_000.0);
        let divisors: Vec<f32> = base
            .iter()
            .zip(cfg.inv_freq())
            .map(|(b, s)| b / s)
            .collect();
        assert_eq!(Llama3Rope::fit(&divisors, &base), cfg.rope_scaling);
        let mut off = divisors.clone();
        off[20] *= 1.5;
        assert_eq!(Llama3Rope::fit(&off, &base), None);
    }

    #[test]
    fn rope_scaling_round_trips_through_config_json_and_unknown_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut json = llama3_2().to_hf_json();
        std::fs::write(&path, json.to_string()).unwrap();
        assert_eq!(
            ModelConfig::from_hf_json(&path).unwrap().rope_scaling,
            llama3_2().rope_scaling
        );
        json["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        std::fs::write(&path, json.to_string()).unwrap();
        let err = ModelConfig::from_hf_json(&path).unwrap_err().to_string();
        assert!(
            err.contains("rope_scaling") && err.contains("`yarn`"),
            "{err}"
        );
    }
}
