//! Chat templates: ChatML (`<|im_start|>role\n…<|im_end|>\n`) without a Jinja engine, a plain
//! template, or a recipe-given string with `{prompt}` and `{system}`.

/// How a question becomes the text the model continues.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    /// ChatML with an optional system turn.
    ChatMl { system: String },
    /// The question followed by a newline.
    Plain,
    /// A template string with `{prompt}` and optionally `{system}`.
    Custom { template: String, system: String },
}

impl ChatTemplate {
    /// The prompt for one user turn, ending where the assistant's reply begins.
    pub fn prompt(&self, user: &str) -> String {
        match self {
            ChatTemplate::ChatMl { system } => {
                let mut out = String::new();
                if !system.is_empty() {
                    out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                out.push_str(&format!(
                    "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
                ));
                out
            }
            ChatTemplate::Plain => format!("{user}\n"),
            ChatTemplate::Custom { template, system } => template
                .replace("{system}", system)
                .replace("{prompt}", user),
        }
    }
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
            t.prompt("What is 17 + 25? Answer with a number."),
            "<|im_start|>user\nWhat is 17 + 25? Answer with a number.<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = ChatTemplate::ChatMl {
            system: "Be brief.".into(),
        };
        assert!(
            s.prompt("hi")
                .starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi")
        );
    }

    #[test]
    fn custom_template_fills_prompt_and_system() {
        let t = ChatTemplate::Custom {
            template: "[{system}] Q: {prompt}\nA:".into(),
            system: "math".into(),
        };
        assert_eq!(t.prompt("1+1?"), "[math] Q: 1+1?\nA:");
    }
}
