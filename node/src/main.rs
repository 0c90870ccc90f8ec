//! The `wasmesh` binary: parses the command line and hands over to [`wasmesh_node::cli`].
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser;

/// The node serves many small, short-lived allocations from every worker (see the workspace's
/// Cargo.toml for the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
