//! Loading a model: an HF folder (`config.json`, `*.safetensors`, `tokenizer.json`) or a `.gguf`
//! file (tensors dequantized to f32, q/k rows un-permuted back to HF's rope layout).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use super::config::{Arch, Llama3Rope, ModelConfig};
use super::ops::default_inv_freq;
use super::policy::Policy;
use super::tokenizer::Tokenizer;
use crate::error::user_error;

/// A loaded model: the trainable policy and its tokenizer.
pub struct LoadedModel {
    pub policy: Policy,
    pub tokenizer: Tokenizer,
    /// Where it came from (a folder or a `.gguf` file).
    pub source: PathBuf,
    /// The chat template (Jinja) a saved copy carries in its `tokenizer_config.json`: the one
    /// the run prompts with ("" = none).
    pub chat_template: String,
}

/// Loads a model folder or `.gguf` file; `tokenizer` overrides the model's own tokenizer.
pub fn load_model(path: &Path, tokenizer: Option<&Path>) -> Result<LoadedModel> {
    if path.is_dir() {
        load_hf(path, tokenizer)
    } else if path.is_file() {
        load_gguf(path, tokenizer)
    } else {
        Err(user_error(format!(
            "model {}: no such file or folder",
            path.display()
        )))
    }
}

/// Like [`load_model`], with the weights moved to `device` (loading and dequantizing happen on
/// the CPU first).
pub fn load_model_on(
    path: &Path,
    tokenizer: Option<&Path>,
    device: &Device,
) -> Result<LoadedModel> {
    let mut model = load_model(path, tokenizer)?;
    if !device.is_cpu() {
        model.policy = model.policy.to_device(device)?;
    }
    Ok(model)
}

fn load_hf(dir: &Path, tokenizer: Option<&Path>) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(user_error(format!(
            "model {}: no config.json in the folder",
            dir.display()
        )));
    }
    let config = ModelConfig::from_hf_json(&config_path)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| user_error(format!("model {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(user_error(format!(
            "model {}: no *.safetensors files",
            dir.display()
        )));
    }
    let mut tensors = HashMap::new();
    for file in &files {
        let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
            user_error(format!(
                "{}: cannot read safetensors (truncated or corrupt?): {e}",
                file.display()
            ))
        })?;
        tensors.extend(loaded);
    }
    let policy = Policy::from_tensors(config.clone(), tensors, &dir.display().to_string())?;
    let tokenizer = hf_tokenizer(dir, &config, tokenizer)?;
    Ok(LoadedModel {
        policy,
        tokenizer,
        source: dir.to_path_buf(),
        chat_template: String::new(),
    })
}

/// The tokenizer of a model folder or `.gguf` file (`tokenizer` overrides it), without loading
/// the weights.
pub fn load_tokenizer(path: &Path, tokenizer: Option<&Path>) -> Result<Tokenizer> {
    if path.is_dir() {
        let config = ModelConfig::from_hf_json(&path.join("config.json"))?;
        hf_tokenizer(path, &config, tokenizer)
    } else if path.is_file() {
        let origin = path.display().to_string();
        let (content, _) = read_gguf(path)?;
        let config = ModelConfig::from_gguf(&content, &origin)?;
        gguf_tokenizer(&content, &origin, &config, tokenizer)
    } else {
        Err(user_error(format!(
            "model {}: no such file or folder",
            path.display()
        )))
    }
}

fn hf_tokenizer(dir: &Path, config: &ModelConfig, tokenizer: Option<&Path>) -> Result<Tokenizer> {
    let tok_path = match tokenizer {
        Some(path) if path.is_file() => path.to_path_buf(),
        Some(path) => {
            return Err(user_error(format!(
                "model.tokenizer = \"{}\": {}",
                path.display(),
                crate::error::not_a_file(path)
            )));
        }
        None if dir.join("tokenizer.json").is_file() => dir.join("tokenizer.json"),
        None => {
            return Err(user_error(format!(
                "model {}: no tokenizer.json (set model.tokenizer)",
                dir.display()
            )));
        }
    };
    Tokenizer::from_file(&tok_path, config.eos_token_id)
}

fn gguf_tokenizer(
    content: &gguf_file::Content,
    origin: &str,
    config: &ModelConfig,
    tokenizer: Option<&Path>,
) -> Result<Tokenizer> {
    match tokenizer {
        Some(p) => Tokenizer::from_file(p, config.eos_token_id),
        None => Tokenizer::from_gguf(content, origin, config.eos_token_id),
    }
}

/// Reads a GGUF file's header (metadata and tensor table).
pub fn read_gguf(path: &Path) -> Result<(gguf_file::Content, BufReader<File>)> {
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| user_error(format!("model {origin}: {e}")))?;
    let mut file = BufReader::with_capacity(1 << 20, file);
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        user_error(format!(
            "model {origin}: not a readable GGUF file: {}",
            first_line(&e.to_string())
        ))
    })?;
    let needed = content
        .tensor_infos
        .values()
        .map(|t| {
            let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
            content.tensor_data_offset + t.offset + bytes as u64
        })
        .max()
        .unwrap_or(content.tensor_data_offset);
    let have = file.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
    if have < needed {
        return Err(user_error(format!(
            "model {origin}: the file is truncated ({have} bytes; its tensor table needs {needed})"
        )));
    }
    Ok((content, file))
}

fn load_gguf(path: &Path, tokenizer: Option<&Path>) -> Result<LoadedModel> {
    let origin = path.display().to_string();
    let (content, mut file) = read_gguf(path)?;
    let mut config = ModelConfig::from_gguf(&content, &origin)?;
    config.rope_scaling = gguf_rope_scaling(&content, &mut file, &config, &origin)?;
    let mut tensors = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(hf_name) = hf_name(name) else {
            continue;
        };
        let q = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| {
            user_error(format!(
                "model {origin}: tensor {name}: {}",
                first_line(&e.to_string())
            ))
        })?;
        let t = q.dequantize(&Device::Cpu)?;
        let t = match (config.arch, hf_name.as_str()) {
            (Arch::Llama, n) if n.contains("q_proj") => unpermute(&t, config.num_heads)?,
            (Arch::Llama, n) if n.contains("k_proj") => unpermute(&t, config.num_kv_heads)?,
            _ => t,
        };
        tensors.insert(hf_name, t);
    }
    let policy = Policy::from_tensors(config.clone(), tensors, &origin)?;
    let tokenizer = gguf_tokenizer(&content, &origin, &config, tokenizer)?;
    Ok(LoadedModel {
        policy,
        tokenizer,
        source: path.to_path_buf(),
        chat_template: String::new(),
    })
}

/// Llama 3's rope scaling, from the `rope_freqs` tensor llama.cpp's converter writes (one divisor
/// per frequency); `None` without one. Divisors that no Llama 3 setting gives exit 2.
fn gguf_rope_scaling(
    content: &gguf_file::Content,
    file: &mut BufReader<File>,
    config: &ModelConfig,
    origin: &str,
) -> Result<Option<Llama3Rope>> {
    if !content.tensor_infos.contains_key(ROPE_FREQS) {
        return Ok(None);
    }
    let factors = content
        .tensor(file, ROPE_FREQS, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu))
        .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
        .map_err(|e| user_error(format!("model {origin}: tensor {ROPE_FREQS}: {e}")))?;
    let base = default_inv_freq(config.head_dim, config.rope_theta);
    match Llama3Rope::fit(&factors, &base) {
        Some(rope) => Ok(Some(rope)),
        None => Err(user_error(format!(
            "model {origin}: tensor {ROPE_FREQS} holds rope divisors that match no Llama 3 \
             scaling (factor 8, 16, 32 or 64; low 1, high 4, original context 8192); other rope \
             scalings are not supported"
        ))),
    }
}

/// The GGUF tensor of per-frequency rope divisors.
const ROPE_FREQS: &str = "rope_freqs.weight";

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// GGUF tensor name → HF name.
fn hf_name(gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undoes llama.cpp's q/k permutation (rows `[heads, 2, hd/2]` stored as `[heads, hd/2, 2]`).
///
/// # Shapes
/// `[heads·hd, in]` or `[heads·hd]` → same.
fn unpermute(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let half = rows / heads / 2;
    let rest: usize = dims[1..].iter().product();
    let x = t
        .reshape((heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?;
    Ok(x.reshape(dims)?)
}
