//! The `trainer template` command: the text and token ids a model sees for a prompt or a
//! conversation, rendered through the chat template a run would use.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::TemplateArgs;
use crate::data::read_jsonl;
use crate::error::user_error;
use crate::model::{ChatTemplate, Message, Tokenizer, load_tokenizer, local_model};
use crate::recipe::TemplateChoice;

/// Prints the rendered prompt (text, or JSON with its ids), or one JSON line per conversation.
pub fn template(args: &TemplateArgs) -> Result<()> {
    let model = local_model(&args.model, "--model")?;
    let template = chosen_template(args, &model)?;
    let tokenizer = load_tokenizer(&model, None)?;
    if let Some(prompt) = &args.prompt {
        let text = template.prompt(prompt)?;
        if args.ids {
            println!("{}", rendered(&tokenizer, text)?);
        } else {
            print!("{text}");
        }
        return Ok(());
    }
    let Some(path) = &args.conversations else {
        return Err(user_error(
            "give --prompt TEXT or --conversations FILE.jsonl",
        ));
    };
    for line in read_jsonl(path)? {
        let at = format!("{}:{}", path.display(), line.line);
        let messages: Vec<Message> = match line.object.get("messages") {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                user_error(format!(
                    "{at}: `messages` must be a list of {{\"role\", \"content\"}} objects: {e}"
                ))
            })?,
            None => return Err(user_error(format!("{at}: missing field `messages`"))),
        };
        let add = match line.object.get("add_generation_prompt") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(user_error(format!(
                    "{at}: `add_generation_prompt` must be true or false"
                )));
            }
        };
        let text = template.render(&messages, add)?;
        println!("{}", rendered(&tokenizer, text)?);
    }
    Ok(())
}

fn rendered(tokenizer: &Tokenizer, text: String) -> Result<Value> {
    let ids = tokenizer.encode(&text)?;
    Ok(json!({ "text": text, "input_ids": ids }))
}

/// The template `--template` names, read from the model for `auto`, as a run reads it.
fn chosen_template(args: &TemplateArgs, model: &Path) -> Result<ChatTemplate> {
    let choice = TemplateChoice::parse(&args.template).ok_or_else(|| {
        user_error(format!(
            "--template {:?}: must be \"auto\", \"chatml\", \"plain\", or a string containing \
             {{prompt}}",
            args.template
        ))
    })?;
    choice.for_model(&args.system, Some(model))
}
