//! `cellflight`: serve datasets over Arrow Flight, and build them.

use std::io::IsTerminal;
use std::process::ExitCode;

use cellflight::{cli, commands};
use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_filter.as_deref());
    match commands::run(cli.subcommand) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, not in CI logs or files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
