//! The `wasmesh` binary: parses the command line and hands over to [`wasmesh_node::cli`].
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wasmesh_node::cli::Cli::parse();
    match wasmesh_node::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, starting `error:`, with each cause of the chain once.
            eprintln!("error: {}", wasmesh_node::cli::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
