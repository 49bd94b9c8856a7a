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
    /// Llama, Mistral-style without sliding window, SmolLM2 (RMSNorm, SwiGLU, rope, GQA).
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
}

impl ModelConfig {
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
        };
        if let Some(scaling) = raw.rope_scaling.filter(|v| !v.is_null()) {
            return Err(user_error(format!(
                "{origin}: rope_scaling {scaling} is not supported"
            )));
        }
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
}
