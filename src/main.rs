//! The `trainer` binary: parse, start tracing, run, print the error chain once, exit 0 / 1 / 2 / 130.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    trainer::threads::init();
    let cli = trainer::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match trainer::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if trainer::error::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            match trainer::interrupt::find(&err) {
                Some(stop) => eprintln!("{stop}"),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::from(trainer::exit_code(&err) as u8)
        }
    }
}
