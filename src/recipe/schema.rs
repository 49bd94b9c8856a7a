//! The serde mirror of the recipe TOML: one struct per section, unknown keys rejected.
//!
//! Every field is required here because the built-in `configs/default.toml` supplies them all;
//! user layers only override. Validation and typing happen in `resolve.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    pub run: RawRun,
    pub script: RawScript,
    pub model: RawModel,
    pub sft: RawSft,
    pub data: RawData,
    pub sampling: RawSampling,
    pub grade: RawGrade,
    pub weight: RawWeight,
    pub pairs: RawPairs,
    pub loss: RawLoss,
    pub train: RawTrain,
    pub eval: RawEval,
    pub sweep: RawSweep,
}

/// `[sweep]`: the grid `trainer sweep` runs when given no `--grid` (read by that command only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    pub seeds: String,
    pub baseline: String,
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub name: String,
    pub seed: u64,
    pub script: String,
    pub out: String,
    pub cache: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub path: String,
    pub tokenizer: String,
    pub dtype: String,
    pub device: String,
    pub template: String,
    pub system: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSft {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub intermediate_size: usize,
    pub init_seed: u64,
    pub examples: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub data_seed: u64,
    pub level_mix: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    pub train: String,
    pub format: String,
    pub prompt_field: String,
    pub gold_field: String,
    pub instruction: String,
    pub limit: usize,
    pub shuffle_seed: u64,
    pub split: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSampling {
    pub backend: String,
    pub n: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    pub quantized: bool,
    pub openai: RawOpenAi,
}

/// `[sampling.openai]`: the OpenAI-compatible server of `sampling.backend = "openai"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenAi {
    pub base_url: String,
    pub model: String,
    pub api_key_env: String,
    pub api: String,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_retries: usize,
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrade {
    pub grader: String,
    pub params: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeight {
    pub scheme: String,
    pub alpha: f64,
    pub eps: f64,
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPairs {
    pub rule: String,
    pub gold_fallback: bool,
    pub all_correct: String,
    pub mode: String,
    pub off_policy: String,
    pub params: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoss {
    pub name: String,
    pub beta: f64,
    pub gamma: f64,
    pub lambda: f64,
    pub label_smoothing: f64,
    pub alpha: f64,
    pub weight_placement: String,
    pub weighting: String,
    pub wpo_clamp: bool,
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub schedule: String,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub max_steps: usize,
    pub max_length: usize,
    pub checkpoint_every: usize,
    pub resume_every: usize,
    pub rounds: usize,
    pub report_to: Vec<String>,
    pub logging_steps: usize,
    pub lora: RawLora,
}

/// `[train.lora]`: low-rank adapters instead of full fine-tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLora {
    pub enabled: bool,
    pub rank: usize,
    pub alpha: f64,
    pub target_modules: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEval {
    pub data: String,
    pub limit: usize,
    pub split: String,
    pub allow_overlap: bool,
    pub grader: String,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    pub before: bool,
    pub after: bool,
}
