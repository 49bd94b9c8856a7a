//! Runs one command: dispatches the parsed command line to the stage that owns it.

use anyhow::{Result, bail};

use crate::cli::{CheckArgs, Cli, Command, RecipeCmdArgs, RunArgs};
use crate::hookset::HookSet;
use crate::recipe::{self, RecipeInput};
use crate::script::run_check;

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => pipeline(&cli.run),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Recipe(args)) => show_recipe(&args),
        Some(Command::Sample(_)) => not_yet("sample"),
        Some(Command::Grade(args)) => crate::grade::run(&args),
        Some(Command::Pairs(_)) => not_yet("pairs"),
        Some(Command::Train(_)) => not_yet("train"),
        Some(Command::Eval(_)) => not_yet("eval"),
        Some(Command::Score(args)) => crate::score::run(&args),
        Some(Command::Generate(args)) => crate::generation::run(&args),
        Some(Command::Reproduce(_)) => not_yet("reproduce"),
        Some(Command::Bench(args)) => crate::bench::run(&args),
    }
}

fn not_yet(stage: &str) -> Result<()> {
    bail!("`trainer {stage}` is not implemented yet")
}

/// The recipe layers named on the command line.
pub fn recipe_input(args: &RunArgs) -> RecipeInput {
    RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        script: args.script.clone(),
        out: args.out.clone(),
    }
}

fn pipeline(args: &RunArgs) -> Result<()> {
    let layered = recipe::load(&recipe_input(args))?;
    let recipe = layered.resolve()?;
    let hooks = HookSet::load(&recipe)?;
    for (kind, source) in hooks.describe() {
        tracing::info!("hook {}: {source}", kind.signature());
    }
    bail!("the pipeline stages (sample, grade, weigh, pair, train, eval) are not implemented yet")
}

fn check(args: &CheckArgs) -> Result<()> {
    let input = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        ..RecipeInput::default()
    };
    let recipe = recipe::load(&input)?.resolve()?;
    let report = run_check(&args.script, &recipe.script, &recipe.loss, args.seed)?;
    println!("{}", report.render());
    if !report.passed() {
        return Err(crate::error::user_error(format!(
            "{}: check failed",
            report.file
        )));
    }
    Ok(())
}

fn show_recipe(args: &RecipeCmdArgs) -> Result<()> {
    let input = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        script: args.script.clone(),
        out: None,
    };
    let layered = recipe::load(&input)?;
    layered.resolve()?;
    print!("{}", layered.annotated_toml()?);
    Ok(())
}
