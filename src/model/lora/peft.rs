//! The adapter as PEFT saves it: `adapter_config.json` and `adapter_model.safetensors` (tensors
//! `base_model.model.<module>.lora_{A,B}.weight`), so `PeftModel.from_pretrained(base, dir)`
//! loads it. GGUF q/k rows are un-permuted at load, so q_proj/k_proj adapters are in HF row order
//! too and apply to the HF checkpoint of the same model.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{Value, json};

use super::{LoraAttached, LoraConfig, Target};
use crate::error::user_error;
use crate::store::{write_atomic, write_atomic_with};

/// The adapter's settings file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's tensors.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// `adapter_config.json` of `config` on `base_model`, with the fields PEFT's `LoraConfig` reads.
pub fn adapter_config_json(config: &LoraConfig, base_model: &str) -> Value {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.hf_name()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    })
}

/// Writes both adapter files into `dir`, each atomically.
pub fn write_adapter(dir: &Path, lora: &LoraAttached) -> Result<()> {
    let config = adapter_config_json(&lora.config, &lora.base_model);
    let text = serde_json::to_string_pretty(&config)?;
    write_atomic(&dir.join(ADAPTER_CONFIG), text.as_bytes())?;
    let tensors: HashMap<String, Tensor> = lora
        .vars
        .iter()
        .map(|(name, v)| (name.clone(), v.as_tensor().detach()))
        .collect();
    write_atomic_with(&dir.join(ADAPTER_WEIGHTS), |tmp| {
        candle_core::safetensors::save(&tensors, tmp)
            .with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Reads a PEFT LoRA adapter folder: its settings and its tensors (on the CPU).
///
/// # Shapes
/// `lora_A` tensors `[r, in]`, `lora_B` tensors `[out, r]`, as saved.
pub fn read_adapter(dir: &Path) -> Result<(LoraConfig, HashMap<String, Tensor>)> {
    let path = dir.join(ADAPTER_CONFIG);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| user_error(format!("{}: {e}", path.display())))?;
    let bad = |what: &str| user_error(format!("{}: {what}", path.display()));
    let rank = v["r"].as_u64().ok_or_else(|| bad("`r` is not a count"))? as usize;
    let alpha = v["lora_alpha"]
        .as_f64()
        .ok_or_else(|| bad("`lora_alpha` is not a number"))?;
    let mut targets = Vec::new();
    for name in v["target_modules"].as_array().into_iter().flatten() {
        let t = name
            .as_str()
            .and_then(Target::parse)
            .ok_or_else(|| bad(&format!("unknown target module {name}")))?;
        targets.push(t);
    }
    let weights = dir.join(ADAPTER_WEIGHTS);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .with_context(|| format!("reading {}", weights.display()))?;
    let config = LoraConfig {
        rank,
        alpha,
        targets,
    };
    Ok((config, tensors))
}
