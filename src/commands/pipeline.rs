//! The pipeline commands: `trainer --script S` (every stage), `trainer sample`, `trainer pairs`,
//! `trainer train [--pairs F]`, and `trainer eval` / `trainer sft` (the eval alone).

use anyhow::Result;

use crate::cli::{RunArgs, TrainArgs};
use crate::recipe::{Override, RecipeInput};
use crate::run::{RunRequest, Until};

/// Runs the pipeline up to `until`.
pub fn run(args: &RunArgs, until: Until) -> Result<()> {
    crate::run::run(&request(args, Vec::new()), until)
}

/// `trainer eval` and `trainer sft`: the accuracy of `model.path` on the eval questions.
pub fn eval(args: &RunArgs) -> Result<()> {
    crate::run::eval(&request(args, Vec::new()))
}

/// `trainer train --pairs F` is `trainer train` with `pairs.mode = "off_policy"` and that file.
pub fn train(args: &TrainArgs) -> Result<()> {
    let mut flags = Vec::new();
    if let Some(p) = &args.pairs {
        flags.push(flag("--pairs", "pairs.mode", "off_policy"));
        flags.push(flag(
            "--pairs",
            "pairs.off_policy",
            &p.display().to_string(),
        ));
    }
    crate::run::run(&request(&args.run, flags), Until::Train)
}

/// The run a command line asks for; `flags` are recipe values its own flags set.
fn request(args: &RunArgs, mut flags: Vec<Override>) -> RunRequest {
    if let Some(model) = &args.model {
        flags.push(flag("--model", "model.path", model));
    }
    if let Some(device) = args.device {
        flags.push(flag("--device", "model.device", &device.to_string()));
    }
    RunRequest {
        recipe: RecipeInput {
            config: args.recipe.config.clone(),
            sets: args.recipe.set.clone(),
            script: args.script.clone(),
            out: args.out.clone(),
            flags,
            ..RecipeInput::default()
        },
        allow_different_inputs: args.allow_different_inputs,
        force: args.force,
    }
}

fn flag(source: &str, key: &str, value: &str) -> Override {
    Override {
        source: source.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    }
}
