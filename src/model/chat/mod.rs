//! Chat templates: how a conversation becomes the text the model continues. The model's own Jinja
//! template (rendered as transformers renders it), ChatML written out, a plain template, or a
//! recipe-given string with `{prompt}` and `{system}`.

mod jinja;
mod own;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use jinja::JinjaTemplate;
pub use own::own_template;

use crate::error::user_error;

/// One turn of a conversation, as transformers' `apply_chat_template` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// How a question becomes the text the model continues.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    /// The model's own Jinja template; `system` (when not empty) is sent as a system turn.
    Jinja {
        template: JinjaTemplate,
        system: String,
    },
    /// ChatML with an optional system turn.
    ChatMl { system: String },
    /// The question followed by a newline.
    Plain,
    /// A template string with `{prompt}` and optionally `{system}`.
    Custom { template: String, system: String },
}

impl ChatTemplate {
    /// The prompt for one user turn, ending where the assistant's reply begins.
    pub fn prompt(&self, user: &str) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        match self {
            ChatTemplate::Jinja { system, .. } | ChatTemplate::ChatMl { system }
                if !system.is_empty() =>
            {
                messages.push(Message::new("system", system));
            }
            _ => {}
        }
        messages.push(Message::new("user", user));
        self.render(&messages, true)
    }

    /// The text of a whole conversation; `add_generation_prompt` ends it where the assistant's
    /// next reply begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            ChatTemplate::Jinja { template, .. } => {
                template.render(messages, add_generation_prompt)
            }
            ChatTemplate::ChatMl { .. } => {
                let mut out = String::new();
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                if add_generation_prompt {
                    out.push_str("<|im_start|>assistant\n");
                }
                Ok(out)
            }
            ChatTemplate::Plain => Ok(messages
                .iter()
                .filter(|m| m.role != "system")
                .map(|m| format!("{}\n", m.content))
                .collect()),
            ChatTemplate::Custom { template, system } => {
                let user: Vec<&Message> = messages.iter().filter(|m| m.role != "system").collect();
                match user.as_slice() {
                    [one] if one.role == "user" => Ok(template
                        .replace("{system}", system)
                        .replace("{prompt}", &one.content)),
                    _ => Err(user_error(
                        "model.template: a template string with {prompt} renders one user turn; \
                         a conversation needs model.template = \"auto\" or \"chatml\"",
                    )),
                }
            }
        }
    }

    /// The template as Jinja source, for the `tokenizer_config.json` of a saved model: rendered
    /// by transformers' `apply_chat_template` (with `add_generation_prompt=True`) it gives the
    /// prompts the run trained on, the recipe's system message included when the conversation
    /// has none.
    pub fn to_jinja(&self) -> String {
        match self {
            ChatTemplate::Jinja { template, system } => with_system(&template.source, system),
            ChatTemplate::ChatMl { system } => with_system(CHATML_JINJA, system),
            ChatTemplate::Plain => PLAIN_JINJA.to_string(),
            ChatTemplate::Custom { template, system } => {
                let filled = template.replace("{system}", system);
                let parts: Vec<String> = filled.split("{prompt}").map(jinja_literal).collect();
                format!(
                    "{{% for message in messages %}}{{% if message['role'] == 'user' %}}{{{{ {} }}}}\
                     {{% endif %}}{{% endfor %}}",
                    parts.join(" + message['content'] + ")
                )
            }
        }
    }

    /// What the template is, for the log: "the model's own (FILE)", "ChatML", ...
    pub fn describe(&self) -> String {
        match self {
            ChatTemplate::Jinja { template, .. } => {
                format!("the model's own ({})", template.origin)
            }
            ChatTemplate::ChatMl { .. } => "ChatML".to_string(),
            ChatTemplate::Plain => "plain (the question and a newline)".to_string(),
            ChatTemplate::Custom { .. } => "the recipe's template string".to_string(),
        }
    }

    /// The system message the recipe gives ("" when none).
    pub fn system(&self) -> &str {
        match self {
            ChatTemplate::Jinja { system, .. }
            | ChatTemplate::ChatMl { system }
            | ChatTemplate::Custom { system, .. } => system,
            ChatTemplate::Plain => "",
        }
    }
}

/// ChatML as Jinja (the same text [`ChatTemplate::ChatMl`] writes out).
const CHATML_JINJA: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + \
    message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
    '<|im_start|>assistant\\n' }}{% endif %}";

/// The plain template as Jinja: every non-system turn's text and a newline.
const PLAIN_JINJA: &str = "{% for message in messages %}{% if message['role'] != 'system' %}{{ \
    message['content'] + '\\n' }}{% endif %}{% endfor %}";

/// `source` with the recipe's system message sent first when the conversation has none.
fn with_system(source: &str, system: &str) -> String {
    if system.is_empty() {
        return source.to_string();
    }
    format!(
        "{{% if messages[0]['role'] != 'system' %}}{{% set messages = [{{'role': 'system', \
         'content': {}}}] + messages %}}{{% endif %}}{source}",
        jinja_literal(system)
    )
}

/// `text` as a single-quoted Jinja string literal.
fn jinja_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_prompt_matches_the_fixture_layout() {
        let t = ChatTemplate::ChatMl {
            system: String::new(),
        };
        assert_eq!(
            t.prompt("What is 17 + 25? Answer with a number.").unwrap(),
            "<|im_start|>user\nWhat is 17 + 25? Answer with a number.<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = ChatTemplate::ChatMl {
            system: "Be brief.".into(),
        };
        assert!(
            s.prompt("hi")
                .unwrap()
                .starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi")
        );
    }

    #[test]
    fn custom_template_fills_prompt_and_system() {
        let t = ChatTemplate::Custom {
            template: "[{system}] Q: {prompt}\nA:".into(),
            system: "math".into(),
        };
        assert_eq!(t.prompt("1+1?").unwrap(), "[math] Q: 1+1?\nA:");
    }

    #[test]
    fn custom_template_refuses_a_conversation() {
        let t = ChatTemplate::Custom {
            template: "Q: {prompt}".into(),
            system: String::new(),
        };
        let turns = [
            Message::new("user", "a"),
            Message::new("assistant", "b"),
            Message::new("user", "c"),
        ];
        assert!(t.render(&turns, true).is_err());
    }

    #[test]
    fn jinja_prompt_sends_the_recipe_system_message_only_when_given() {
        let source = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
        let template = JinjaTemplate::new(source, "", "", "test").unwrap();
        let bare = ChatTemplate::Jinja {
            template: template.clone(),
            system: String::new(),
        };
        assert_eq!(bare.prompt("q").unwrap(), "[user]q");
        let with = ChatTemplate::Jinja {
            template,
            system: "s".into(),
        };
        assert_eq!(with.prompt("q").unwrap(), "[system]s[user]q");
    }

    #[test]
    fn every_template_as_jinja_renders_the_prompts_it_renders() {
        let own = JinjaTemplate::new(
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}",
            "",
            "",
            "test",
        )
        .unwrap();
        let templates = [
            ChatTemplate::Plain,
            ChatTemplate::ChatMl {
                system: String::new(),
            },
            ChatTemplate::ChatMl {
                system: "Be brief, it's \"math\".\n\\o/".into(),
            },
            ChatTemplate::Custom {
                template: "[{system}] Q: {prompt}\nA:".into(),
                system: "s'".into(),
            },
            ChatTemplate::Jinja {
                template: own.clone(),
                system: String::new(),
            },
            ChatTemplate::Jinja {
                template: own,
                system: "sys".into(),
            },
        ];
        for t in templates {
            let jinja = JinjaTemplate::new(&t.to_jinja(), "", "", "saved").unwrap();
            let question = "What is 2 + 'x'?\nShow \\work.";
            let saved = jinja
                .render(&[Message::new("user", question)], true)
                .unwrap();
            assert_eq!(saved, t.prompt(question).unwrap(), "{t:?}");
        }
    }
}
