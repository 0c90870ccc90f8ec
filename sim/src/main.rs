//! `wasmesh-sim`: multi-node simulation of wasmesh (scenarios, scale model, demo).
#![deny(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmesh_sim::cities::CITIES;
use wasmesh_sim::runner::{self, Verbosity};
use wasmesh_sim::scale::{self, ScaleParams};
use wasmesh_sim::scenario::Scenario;
use wasmesh_sim::{demo, plot};

/// Multi-node simulation of wasmesh.
#[derive(Debug, Parser)]
#[command(name = "wasmesh-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A mesh of real nodes in real cities: publish, replicate, route requests, show where
    /// each ran.
    Demo {
        /// Nodes (placed in Frankfurt, New York, Singapore, Sao Paulo, Sydney, Tokyo, ...).
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Seed of the inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Runs a scenario file on real nodes with injected latency and faults.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Writes the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        /// Nodes do not hedge slow forwards (overrides the scenario's `hedging`).
        #[arg(long)]
        no_hedging: bool,
    },
    /// The scale model: gossip and routing over thousands of simulated nodes.
    Scale {
        /// Nodes.
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Manifests published, one after the other.
        #[arg(long, default_value_t = 8)]
        publishes: usize,
        /// Requests routed.
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        /// Holders of the routed module [default: 2% of the nodes, at least 3].
        #[arg(long)]
        holders: Option<usize>,
        /// Modules each node reports ready in its status (for the control plane's traffic).
        #[arg(long, default_value_t = 100)]
        modules: usize,
        /// Writes the report as JSON here (and the CDF plot next to it, as .svg).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Writes the propagation CDF here (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Lists the cities geographic scenarios can use.
    Cities,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match execute(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", wasmesh_node::cli::error_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` when it ran but its expectations failed.
fn execute(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Demo { nodes, seed } => {
            let (report, text) = runtime()?.block_on(demo::run(nodes, seed))?;
            println!("{text}");
            Ok(report.passed)
        }
        Command::Run {
            scenario,
            json,
            quiet,
            no_hedging,
        } => {
            let mut parsed = Scenario::load(&scenario)?;
            if no_hedging {
                parsed.hedging = false;
            }
            let name = scenario
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into());
            let verbosity = if quiet {
                Verbosity::Quiet
            } else {
                Verbosity::Progress
            };
            let report = runtime()?.block_on(runner::run(&parsed, &name, verbosity))?;
            print!("{}", report.table());
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            Ok(report.passed)
        }
        Command::Scale {
            nodes,
            seed,
            publishes,
            requests,
            holders,
            modules,
            quiet,
            json,
            plot,
        } => {
            anyhow::ensure!(nodes >= 2, "the scale model needs at least 2 nodes");
            let mut params = ScaleParams::new(nodes, seed);
            params.publishes = publishes.max(1);
            params.requests = requests;
            params.modules = modules;
            params.progress = !quiet;
            if let Some(holders) = holders {
                params.holders = holders.clamp(1, nodes);
            }
            let report = scale::run(&params);
            println!("{}", report.summary());
            if let Some(path) = &json {
                write_json(path, &report)?;
            }
            let plot_path = plot.or_else(|| json.map(|p| p.with_extension("svg")));
            if let Some(path) = plot_path {
                let title = format!("manifest propagation, {nodes} nodes, seed {seed}");
                plot::propagation_cdf(&path, &report.propagation_cdf, &title)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(true)
        }
        Command::Cities => {
            for city in CITIES {
                println!("{:<16} {:>7.2} {:>8.2}", city.name, city.lat, city.lon);
            }
            Ok(true)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
