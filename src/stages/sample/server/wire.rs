//! The JSON of the OpenAI API as the openai backend speaks it: the request body of one sample
//! (`/completions` or `/chat/completions`, always `n = 1`) and the parts of the reply it keeps.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::excerpt;
use crate::model::Finish;
use crate::recipe::{OpenAiApi, SampleSpec};

/// What one request asks the server to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// The prompt text rendered by the recipe's template (`/completions`).
    Text(String),
    /// System (may be empty) and user messages (`/chat/completions`).
    Chat { system: String, user: String },
}

impl Prompt {
    /// The endpoint under the base URL.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Prompt::Text(_) => "completions",
            Prompt::Chat { .. } => "chat/completions",
        }
    }

    /// The API a prompt of this kind uses.
    pub fn api(&self) -> OpenAiApi {
        match self {
            Prompt::Text(_) => OpenAiApi::Completions,
            Prompt::Chat { .. } => OpenAiApi::Chat,
        }
    }
}

/// The request body of one sample. Seeds are cut to 31 bits, which every server accepts;
/// `top_k` is sent only when the recipe sets one; `params` are added last and win.
pub fn request_body(
    model: &str,
    prompt: &Prompt,
    spec: &SampleSpec,
    params: &BTreeMap<String, f64>,
    seed: u64,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    match prompt {
        Prompt::Text(text) => {
            body.insert("prompt".into(), json!(text));
        }
        Prompt::Chat { system, user } => {
            let mut messages = Vec::new();
            if !system.is_empty() {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": user}));
            body.insert("messages".into(), Value::Array(messages));
        }
    }
    body.insert("n".into(), json!(1));
    body.insert("temperature".into(), json!(spec.temperature));
    body.insert("top_p".into(), json!(spec.top_p));
    body.insert("max_tokens".into(), json!(spec.max_new_tokens));
    body.insert("seed".into(), json!(seed & 0x7fff_ffff));
    if !spec.stop.is_empty() {
        body.insert("stop".into(), json!(spec.stop));
    }
    if spec.top_k > 0 {
        body.insert("top_k".into(), json!(spec.top_k));
    }
    for (name, value) in params {
        body.insert(name.clone(), number(*value));
    }
    Value::Object(body)
}

/// A whole number as a JSON integer (servers validate `top_k` as an int), else a float.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The part of a reply the sample stage keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub finish: Finish,
    /// The stop string that ended the text, when the server names it (vLLM's `stop_reason`).
    pub stop: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    text: Option<String>,
    message: Option<Message>,
    finish_reason: Option<String>,
    stop_reason: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

/// Reads the first choice of a reply. `finish_reason = "length"` is [`Finish::Length`]; `"stop"`
/// is [`Finish::Stop`] when the server names the stop string in `stop_reason`, else
/// [`Finish::Eos`] (llama.cpp says `"stop"` for both and does not tell them apart).
pub fn parse_reply(api: OpenAiApi, text: &str) -> Result<Reply> {
    let body: Body = serde_json::from_str(text)
        .map_err(|e| anyhow!("not an OpenAI completion ({e}): {}", excerpt(text)))?;
    let choice = body
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("a reply without choices: {}", excerpt(text)))?;
    let content = match api {
        OpenAiApi::Completions => choice.text,
        OpenAiApi::Chat => choice.message.and_then(|m| m.content),
    };
    let content = content.ok_or_else(|| anyhow!("a reply without text: {}", excerpt(text)))?;
    let stop = match choice.stop_reason {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let finish = match (choice.finish_reason.as_deref(), &stop) {
        (Some("length"), _) => Finish::Length,
        (Some("stop"), Some(_)) => Finish::Stop,
        (Some("stop" | "eos"), None) => Finish::Eos,
        (other, _) => {
            return Err(anyhow!(
                "finish_reason {other:?} is not one of stop, length: {}",
                excerpt(text)
            ));
        }
    };
    Ok(Reply {
        text: content,
        finish,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::SamplingBackend;

    fn spec() -> SampleSpec {
        SampleSpec {
            backend: SamplingBackend::Local,
            n: 2,
            temperature: 0.7,
            top_p: 0.95,
            top_k: 0,
            max_new_tokens: 32,
            batch_size: 1,
            seed: 1,
            stop: vec!["\n\n".into()],
            quantized: false,
        }
    }

    #[test]
    fn a_completion_request_carries_every_setting_and_the_params_win() {
        let params = BTreeMap::from([("min_p".to_string(), 0.0), ("top_k".to_string(), 0.0)]);
        let body = request_body("m", &Prompt::Text("Q".into()), &spec(), &params, u64::MAX);
        assert_eq!(
            body,
            json!({"model": "m", "prompt": "Q", "n": 1, "temperature": 0.7, "top_p": 0.95,
                   "max_tokens": 32, "seed": 0x7fff_ffff, "stop": ["\n\n"], "min_p": 0,
                   "top_k": 0})
        );
    }

    #[test]
    fn a_chat_request_sends_the_system_turn_only_when_there_is_one() {
        let chat = |system: &str| Prompt::Chat {
            system: system.into(),
            user: "hi".into(),
        };
        let body = request_body("m", &chat(""), &spec(), &BTreeMap::new(), 5);
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        let body = request_body("m", &chat("be brief"), &spec(), &BTreeMap::new(), 5);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(chat("").endpoint(), "chat/completions");
    }

    #[test]
    fn finish_reasons_map_to_eos_stop_and_length() {
        let reply = |finish: &str, stop: &str| {
            format!(
                r#"{{"choices":[{{"text":"42","finish_reason":{finish},"stop_reason":{stop}}}]}}"#
            )
        };
        let api = OpenAiApi::Completions;
        let eos = parse_reply(api, &reply("\"stop\"", "null")).unwrap();
        assert_eq!((eos.text.as_str(), eos.finish), ("42", Finish::Eos));
        let stop = parse_reply(api, &reply("\"stop\"", "\"\\n\\n\"")).unwrap();
        assert_eq!(
            (stop.finish, stop.stop.as_deref()),
            (Finish::Stop, Some("\n\n"))
        );
        let length = parse_reply(api, &reply("\"length\"", "null")).unwrap();
        assert_eq!(length.finish, Finish::Length);
        let err = parse_reply(api, &reply("null", "null")).unwrap_err();
        assert!(err.to_string().contains("finish_reason"), "{err}");
    }

    #[test]
    fn a_chat_reply_reads_the_message_content() {
        let text = r#"{"choices":[{"message":{"role":"assistant","content":"7"},"finish_reason":"stop"}]}"#;
        let reply = parse_reply(OpenAiApi::Chat, text).unwrap();
        assert_eq!(reply.text, "7");
        let err = parse_reply(OpenAiApi::Completions, text).unwrap_err();
        assert!(err.to_string().contains("without text"), "{err}");
    }
}
