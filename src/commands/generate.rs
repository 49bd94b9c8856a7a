//! The `trainer generate` command: continue one prompt (optionally wrapped in the chat template).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::cli::GenerateArgs;
use crate::error::user_error;
use crate::model::{
    ChatTemplate, GenRequest, SamplingParams, generate, load_model_on, local_model, own_template,
    quantized_weights,
};
use crate::rng;

/// Prints the continuation of `--prompt` to stdout.
pub fn generate_text(args: &GenerateArgs) -> Result<()> {
    crate::threads::size_elementwise_pool(args.quantized);
    check_args(args)?;
    let path = local_model(&args.model, "--model")?;
    let model = load_model_on(&path, None, &args.device.open("--device")?)?;
    let text = prompt_text(args, &path)?;
    let prompt_ids = model.tokenizer.encode(&text)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_new_tokens: args.max_new_tokens,
        stop: Vec::new(),
    };
    let request = GenRequest {
        prompt_ids,
        seed: rng::derive(args.seed, &[rng::hash_str("generate")]),
    };
    let weights = if args.quantized {
        quantized_weights(&model, "--quantized")?
    } else {
        model.policy.frozen()
    };
    let started = Instant::now();
    let out = generate(
        &model.policy.config,
        &weights,
        &model.tokenizer,
        &[request],
        &params,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let g = &out[0];
    println!("{}", g.text);
    tracing::info!(
        "{} new tokens in {seconds:.2} s ({:.1} tokens/s), finished by {:?}",
        g.token_ids.len(),
        g.token_ids.len() as f64 / seconds.max(1e-9),
        g.finish
    );
    Ok(())
}

/// Refuses a temperature or top-p that sampling cannot use.
fn check_args(args: &GenerateArgs) -> Result<()> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(user_error(format!(
            "--temperature {}: must be a finite number >= 0",
            args.temperature
        )));
    }
    if !(args.top_p.is_finite() && args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(user_error(format!(
            "--top-p {}: must be in (0, 1]",
            args.top_p
        )));
    }
    Ok(())
}

/// The prompt as the model sees it: through its own chat template with `--chat` (ChatML for a
/// model without one), else as given.
fn prompt_text(args: &GenerateArgs, path: &Path) -> Result<String> {
    Ok(if args.chat {
        match own_template(path)? {
            Some(template) => ChatTemplate::Jinja {
                template,
                system: String::new(),
            },
            None => ChatTemplate::ChatMl {
                system: String::new(),
            },
        }
        .prompt(&args.prompt)?
    } else {
        args.prompt.clone()
    })
}
