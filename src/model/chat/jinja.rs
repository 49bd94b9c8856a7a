//! A model's own Jinja chat template, rendered the way transformers' `apply_chat_template` renders
//! it: blocks trimmed and left-stripped, `raise_exception`, Python's string and dict methods,
//! `bos_token` / `eos_token` and `add_generation_prompt` in the context.

use std::fmt;
use std::sync::Arc;

use anyhow::Result;
use minijinja::{Environment, Error, ErrorKind, context};

use super::Message;
use crate::error::user_error;

const NAME: &str = "chat_template";

/// A compiled chat template with the special tokens it may refer to.
#[derive(Clone)]
pub struct JinjaTemplate {
    /// The template text, as the model files hold it.
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// Where the template was read (a model file), named in every error.
    pub origin: String,
    env: Arc<Environment<'static>>,
}

impl JinjaTemplate {
    /// Compiles `source`; a template that does not parse is the model file's fault (exit 2).
    pub fn new(source: &str, bos_token: &str, eos_token: &str, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = env
            .syntax()
            .to_builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| anyhow::anyhow!("chat template syntax: {e}"))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // transformers gives templates this function to reject a conversation they cannot render.
        env.add_function("raise_exception", |message: String| -> Result<(), Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| user_error(format!("{origin}: the chat template does not parse: {e}")))?;
        Ok(JinjaTemplate {
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            origin: origin.to_string(),
            env: Arc::new(env),
        })
    }

    /// The text of a conversation; `add_generation_prompt` ends it where the assistant's reply
    /// begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME)?;
        template
            .render(context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| {
                user_error(format!(
                    "{}: the chat template failed to render: {}",
                    self.origin,
                    error_chain(&e)
                ))
            })
    }
}

fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl fmt::Debug for JinjaTemplate {
    // The cache keys use this form: the text and tokens decide the prompts, not the origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jinja")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl PartialEq for JinjaTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && self.bos_token == other.bos_token
            && self.eos_token == other.eos_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Message {
        Message {
            role: "user".into(),
            content: text.into(),
        }
    }

    #[test]
    fn blocks_are_trimmed_as_transformers_trims_them() {
        let t = JinjaTemplate::new(
            "{% for m in messages %}\n  {% if true %}{{ m.role }}{% endif %}\n{% endfor %}",
            "",
            "",
            "test",
        )
        .unwrap();
        // Python's jinja2 3.1.6 with trim_blocks and lstrip_blocks renders this as 'user'.
        assert_eq!(t.render(&[user("hi")], false).unwrap(), "user");
    }

    #[test]
    fn python_string_methods_and_special_tokens_work() {
        let t = JinjaTemplate::new(
            "{{ bos_token }}{{ messages[0]['content'].strip().upper() }}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}",
            "<s>",
            "</s>",
            "test",
        )
        .unwrap();
        assert_eq!(t.render(&[user("  hi ")], true).unwrap(), "<s>HI></s>");
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_origin() {
        let t = JinjaTemplate::new("{{ raise_exception('only user turns') }}", "", "", "m.gguf")
            .unwrap();
        let err = t.render(&[user("x")], true).unwrap_err().to_string();
        assert!(
            err.contains("m.gguf") && err.contains("only user turns"),
            "{err}"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_names_the_origin() {
        let err = JinjaTemplate::new("{% for m in messages %}", "", "", "m.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m.gguf: the chat template does not parse"),
            "{err}"
        );
    }
}
