//! The subcommands, one file each, and the dispatch from the parsed command line to them.

pub mod bench;
mod check;
pub mod compare;
mod generate;
mod grade;
mod pipeline;
mod recipe;
pub mod reproduce;
pub mod score;
mod sweep;
mod template;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::run::Until;

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => pipeline::run(&cli.run, Until::All),
        Some(Command::Check(args)) => check::check(&args),
        Some(Command::Recipe(args)) => recipe::recipe(&args),
        // The built-in model is warm-started (or taken from the cache) when the run opens it.
        Some(Command::Sft(args)) => pipeline::eval(&args),
        Some(Command::Sample(args)) => pipeline::run(&args, Until::Sample),
        Some(Command::Grade(args)) => grade::grade(&args),
        Some(Command::Pairs(args)) => pipeline::run(&args, Until::Pairs),
        Some(Command::Train(args)) => pipeline::train(&args),
        Some(Command::Eval(args)) => pipeline::eval(&args),
        Some(Command::Score(args)) => score::score(&args),
        Some(Command::Generate(args)) => generate::generate_text(&args),
        Some(Command::Template(args)) => template::template(&args),
        Some(Command::Reproduce(args)) => reproduce::reproduce(&args.run_dir),
        Some(Command::Bench(args)) => bench::bench(&args),
        Some(Command::Compare(args)) => compare::compare(&args),
        Some(Command::Sweep(args)) => sweep::sweep(&args),
    }
}
