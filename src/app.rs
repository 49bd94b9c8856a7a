//! Runs one command: dispatches the parsed command line to the stage that owns it.

use anyhow::Result;

use crate::cli::{CheckArgs, Cli, Command, RecipeCmdArgs, RunArgs};
use crate::recipe::{self, RecipeInput};
use crate::run::Until;
use crate::script::run_check;

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => crate::run::run(&cli.run, Until::All),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Recipe(args)) => show_recipe(&args),
        Some(Command::Sft(args)) => crate::run::run_eval(&args),
        Some(Command::Sample(args)) => crate::run::run(&args, Until::Sample),
        Some(Command::Grade(args)) => crate::grade::run(&args),
        Some(Command::Pairs(args)) => crate::run::run(&args, Until::Pairs),
        Some(Command::Train(args)) => crate::run::run(&train_args(&args), Until::Train),
        Some(Command::Eval(args)) => crate::run::run_eval(&args),
        Some(Command::Score(args)) => crate::score::run(&args),
        Some(Command::Generate(args)) => crate::generation::run(&args),
        Some(Command::Reproduce(args)) => crate::reproduce::run(&args.run_dir),
        Some(Command::Bench(args)) => crate::bench::run(&args),
        Some(Command::Compare(args)) => crate::compare::run(&args.runs, &args.out),
    }
}

/// `trainer train --pairs F` is `trainer train` with `pairs.mode = "off_policy"` and that file.
fn train_args(args: &crate::cli::TrainArgs) -> RunArgs {
    let mut run = args.run.clone();
    if let Some(p) = &args.pairs {
        run.recipe.set.push("pairs.mode=\"off_policy\"".into());
        run.recipe.set.push(format!(
            "pairs.off_policy={}",
            toml::Value::String(p.display().to_string())
        ));
    }
    run
}

/// The recipe layers named on the command line.
pub fn recipe_input(args: &RunArgs) -> RecipeInput {
    let mut sets = args.recipe.set.clone();
    if let Some(device) = args.device {
        sets.push(format!("model.device=\"{device}\""));
    }
    RecipeInput {
        config: args.recipe.config.clone(),
        sets,
        script: args.script.clone(),
        out: args.out.clone(),
        ..RecipeInput::default()
    }
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
        ..RecipeInput::default()
    };
    if let Some(out) = &args.export {
        println!("exported {}", crate::export::write_export(&input, out)?);
        return Ok(());
    }
    let (layered, _) = crate::export::load_recipe(&input)?;
    layered.resolve()?;
    print!("{}", layered.annotated_toml()?);
    Ok(())
}
