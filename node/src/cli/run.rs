//! `wasmesh run`: one request, locally, with the same executor and limits as a node.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use wasmesh_protocol::limits::MAX_MODULE_SIZE;
use wasmesh_protocol::{ContentHash, Limits};

use super::limit_args::LimitArgs;
use crate::executor::{Executor, ExecutorConfig, Request};
use crate::module_file::read_module;

/// Arguments of `wasmesh run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The module: a `.wasm` binary or `.wat` text.
    pub module: PathBuf,
    /// The request body: a file, or `-` for stdin [default: stdin when it is not a terminal,
    /// else empty].
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let limits = args.limits.apply(Limits::default())?;
    let input = read_input(args.input.as_deref(), limits.max_input)?;
    let wasm = read_module(&args.module)?;
    let name = args
        .module
        .file_stem()
        .map_or_else(|| "module".to_owned(), |s| s.to_string_lossy().into_owned());
    let executor = Executor::new(ExecutorConfig {
        caps: limits,
        ..ExecutorConfig::default()
    })?;
    let (module, _) = executor.prepare(ContentHash::of(&wasm), &name, &wasm)?;
    let output = executor.run_blocking(&module, &Request { input, limits })?;
    std::io::stderr().write_all(&output.stderr).ok();
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(&output.bytes)
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn read_input(input: Option<&std::path::Path>, max_input: u32) -> anyhow::Result<Vec<u8>> {
    let cap = u64::from(max_input).min(MAX_MODULE_SIZE) + 1;
    let mut bytes = Vec::new();
    match input {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?
                .take(cap)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Some(_) => {
            std::io::stdin().take(cap).read_to_end(&mut bytes)?;
        }
        None if !std::io::stdin().is_terminal() => {
            std::io::stdin().take(cap).read_to_end(&mut bytes)?;
        }
        None => {}
    }
    Ok(bytes)
}
