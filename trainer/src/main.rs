//! The `tilt` binary: parses the command line, runs the command, prints errors with their
//! causes (`{:#}`) and exits with the code [`tilt_trainer::cli::exit_code`] gives.

use std::process::ExitCode;

use clap::Parser;
use tilt_trainer::cli::{Cli, exit_code, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
