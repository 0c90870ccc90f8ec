//! The `wasmesh` binary: parses the command line and hands over to [`wasmesh_node::cli`].
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wasmesh_node::cli::Cli::parse();
    match wasmesh_node::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, starting `error:`, with the whole cause chain.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
