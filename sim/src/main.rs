//! `wasmesh-sim`: multi-node simulation of wasmesh (scenarios, scale model, demo).
#![deny(clippy::unwrap_used)]

use clap::Parser;

/// Multi-node simulation of wasmesh.
#[derive(Debug, Parser)]
#[command(name = "wasmesh-sim", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("wasmesh-sim: no scenarios yet; see the README for what is available");
}
