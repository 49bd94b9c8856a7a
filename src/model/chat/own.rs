//! Where a model keeps its own chat template: `chat_template.jinja` or the `chat_template` of
//! `tokenizer_config.json` in an HF folder (as transformers reads them), or the
//! `tokenizer.chat_template` metadata of a GGUF file.

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file;
use serde_json::Value;

use super::jinja::JinjaTemplate;
use crate::error::user_error;
use crate::model::read_gguf;

/// The chat template stored with the model at `path`, or `None` when it has none.
pub fn own_template(path: &Path) -> Result<Option<JinjaTemplate>> {
    if path.is_dir() {
        from_folder(path)
    } else if path.is_file() {
        let (content, _) = read_gguf(path)?;
        from_gguf(&content, &path.display().to_string())
    } else {
        Ok(None)
    }
}

fn from_folder(dir: &Path) -> Result<Option<JinjaTemplate>> {
    let config_path = dir.join("tokenizer_config.json");
    let config: Value = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)?;
        serde_json::from_str(&text)
            .map_err(|e| user_error(format!("{}: not JSON: {e}", config_path.display())))?
    } else {
        Value::Null
    };
    let token = |key: &str| special_token(&config[key]);
    let jinja_path = dir.join("chat_template.jinja");
    if jinja_path.is_file() {
        let source = std::fs::read_to_string(&jinja_path)?;
        let origin = jinja_path.display().to_string();
        return JinjaTemplate::new(&source, &token("bos_token"), &token("eos_token"), &origin)
            .map(Some);
    }
    let origin = config_path.display().to_string();
    let source = match &config["chat_template"] {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        // Several named templates: the one named "default", as transformers picks it.
        Value::Array(named) => match named.iter().find(|t| t["name"] == "default") {
            Some(t) => t["template"].as_str().unwrap_or_default().to_string(),
            None => {
                return Err(user_error(format!(
                    "{origin}: chat_template lists named templates but none named \"default\"; \
                     set model.template"
                )));
            }
        },
        _ => {
            return Err(user_error(format!(
                "{origin}: chat_template must be a string or a list of named templates"
            )));
        }
    };
    JinjaTemplate::new(&source, &token("bos_token"), &token("eos_token"), &origin).map(Some)
}

/// A special token as tokenizer_config.json writes it: a string, or an object with `content`.
fn special_token(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

fn from_gguf(content: &gguf_file::Content, origin: &str) -> Result<Option<JinjaTemplate>> {
    let md = &content.metadata;
    let Some(source) = md
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
    else {
        return Ok(None);
    };
    let tokens = md
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok());
    let token = |key: &str| -> String {
        let id = md.get(key).and_then(|v| v.to_u32().ok());
        match (id, tokens) {
            (Some(id), Some(tokens)) => tokens
                .get(id as usize)
                .and_then(|t| t.to_string().ok())
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let bos = token("tokenizer.ggml.bos_token_id");
    let eos = token("tokenizer.ggml.eos_token_id");
    JinjaTemplate::new(source, &bos, &eos, origin).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_template_comes_with_its_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}"#,
        )
        .unwrap();
        let t = own_template(dir.path()).unwrap().unwrap();
        assert_eq!(
            (t.bos_token.as_str(), t.eos_token.as_str()),
            ("<s>", "</s>")
        );
        std::fs::write(dir.path().join("chat_template.jinja"), "jinja file wins").unwrap();
        assert_eq!(
            own_template(dir.path()).unwrap().unwrap().source,
            "jinja file wins"
        );
    }

    #[test]
    fn a_folder_without_a_template_has_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"eos_token": "</s>"}"#,
        )
        .unwrap();
        assert!(own_template(dir.path()).unwrap().is_none());
    }

    #[test]
    fn named_templates_pick_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]}"#,
        )
        .unwrap();
        assert_eq!(own_template(dir.path()).unwrap().unwrap().source, "d");
    }
}
