//! The `wasmesh` command line: argument definitions (clap derive) and dispatch.
//!
//! Each subcommand group has its own module. Commands return `anyhow::Result`; `main` prints a
//! failure as one `error:` line and exits 1. Usage errors exit 2 (clap).

mod http;
mod init;
mod keys;
mod limit_args;
mod manifest;
mod mesh;
mod run;

use clap::{Parser, Subcommand};

pub use init::InitArgs;
pub use keys::KeysCommand;
pub use manifest::ManifestCommand;
pub use mesh::{CallArgs, NodeCommand, PublishArgs, StatusArgs};
pub use run::RunArgs;

/// wasmesh: a peer-to-peer mesh that runs WebAssembly functions at the edge.
#[derive(Debug, Parser)]
#[command(name = "wasmesh", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect keys and membership certificates.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create and verify signed module manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Run one request through a module locally, with the node's executor and limits.
    Run(RunArgs),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Sign a module's manifest and publish it through a node.
    Publish(PublishArgs),
    /// Send a request to a module through any node; the output goes to stdout.
    Call(CallArgs),
    /// Show a node's status and modules.
    Status(StatusArgs),
}

/// Writes command output to stdout in one piece. A reader that went away early (`| head -1`)
/// is not an error: the output it wanted was delivered.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Runs one parsed command line.
/// The one line an error is shown as: each cause in the chain once. Many errors of this crate
/// and its dependencies repeat their source in their own message, which a plain `{:#}` would
/// print again; a cause whose text ends the line so far is left out.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keys(command) => keys::run(command),
        Command::Manifest(command) => manifest::run(command),
        Command::Run(args) => run::run(args),
        Command::Node(command) => mesh::node(command),
        Command::Publish(args) => mesh::publish(args),
        Command::Call(args) => mesh::call(args),
        Command::Status(args) => mesh::status(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store: {0}")]
    struct Repeats(#[from] std::io::Error);

    #[test]
    fn an_error_line_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::from(Repeats(io)).context("starting the node");
        assert_eq!(
            error_line(&error),
            "starting the node: cannot open the store: no such file"
        );
    }
}
