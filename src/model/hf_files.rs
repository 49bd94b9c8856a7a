//! A saved model folder as transformers reads it: the weights and `tokenizer.json` (written by
//! the policy), plus `tokenizer_config.json` (with the chat template the run prompted with),
//! `special_tokens_map.json` and `generation_config.json`.

use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::load::LoadedModel;
use crate::store::write_atomic;

impl LoadedModel {
    /// Writes the whole HF folder (see [`Policy::save_hf`](super::Policy::save_hf) for the
    /// weights); every file is written under a temporary name and renamed.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        self.policy.save_hf(dir, &self.tokenizer)?;
        write_tokenizer_files(self, dir)
    }

    /// The name of token `id`, if the tokenizer has it.
    fn token_name(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|id| self.tokenizer.inner().id_to_token(id))
    }
}

fn write_tokenizer_files(model: &LoadedModel, dir: &Path) -> Result<()> {
    let config = &model.policy.config;
    let eos_id = model.tokenizer.eos_ids().first().copied();
    let pad_id = Some(model.tokenizer.pad_id());
    let mut special = Map::new();
    for (key, id) in [
        ("bos_token", config.bos_token_id),
        ("eos_token", eos_id),
        ("pad_token", pad_id),
    ] {
        if let Some(name) = model.token_name(id) {
            special.insert(key.to_string(), Value::String(name));
        }
    }
    let mut tokenizer_config = special.clone();
    tokenizer_config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    tokenizer_config.insert("model_max_length".into(), json!(config.max_position));
    tokenizer_config.insert("clean_up_tokenization_spaces".into(), json!(false));
    if !model.chat_template.is_empty() {
        tokenizer_config.insert("chat_template".into(), json!(model.chat_template));
    }
    let mut generation = Map::new();
    for (key, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", eos_id),
        ("pad_token_id", pad_id),
    ] {
        if let Some(id) = id {
            generation.insert(key.to_string(), json!(id));
        }
    }
    for (name, value) in [
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special),
        ("generation_config.json", generation),
    ] {
        let text = serde_json::to_string_pretty(&Value::Object(value))?;
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
