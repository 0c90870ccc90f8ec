//! `wasmesh manifest create|verify`: sign a module's manifest, and check one.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use wasmesh_keys::{TrustList, key_file};
use wasmesh_protocol::manifest::MAX_SIGNED_MANIFEST_SIZE;
use wasmesh_protocol::{Limits, Manifest, SignedManifest, wasm};

use super::limit_args::LimitArgs;
use crate::fs_util::write_atomic;
use crate::module_file::{read_module, sign_module};

/// Manifest management.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Validate a module, detect its ABI and write its signed manifest.
    Create {
        /// The module: a `.wasm` binary or `.wat` text.
        module: PathBuf,
        /// Module name: 1-64 characters of a-z, 0-9, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// Version; a higher version replaces a lower one.
        #[arg(long)]
        version: u64,
        /// The publisher's key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
        /// Where to write the signed manifest.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a signed manifest; exit 0 and print a summary if it is valid.
    Verify {
        /// The signed manifest file.
        path: PathBuf,
        /// Also check that this module (`.wasm` or `.wat`) is the one the manifest names.
        #[arg(long)]
        module: Option<PathBuf>,
        /// Require the publisher to be one of these keys (64 hex characters; repeatable).
        #[arg(long = "trust", value_name = "HEX")]
        trust: Vec<String>,
    },
}

pub(super) fn run(command: ManifestCommand) -> anyhow::Result<()> {
    match command {
        ManifestCommand::Create {
            module,
            name,
            version,
            key,
            limits,
            out,
        } => {
            let signed = create(&module, name, version, &key, &limits)?;
            write_atomic(&out, &signed.encode())
                .with_context(|| format!("cannot write {}", out.display()))?;
            let m = &signed.manifest;
            eprintln!(
                "wrote {}: {}@{} ({} ABI, {} bytes, {})",
                out.display(),
                m.name,
                m.version,
                m.abi,
                m.size,
                m.blob.to_prefixed()
            );
            Ok(())
        }
        ManifestCommand::Verify {
            path,
            module,
            trust,
        } => verify(&path, module.as_deref(), &trust),
    }
}

/// Builds and signs the manifest of the module at `module_path`.
pub(super) fn create(
    module_path: &Path,
    name: String,
    version: u64,
    key_path: &Path,
    limits: &LimitArgs,
) -> anyhow::Result<SignedManifest> {
    let limits = limits.apply(Limits::default())?;
    let bytes = read_module(module_path)?;
    let keys = key_file::load(key_path)?;
    sign_module(&bytes, name, version, limits, &keys)
}

/// Reads and decodes a signed manifest file (at most `MAX_SIGNED_MANIFEST_SIZE` bytes).
pub(super) fn read_signed_manifest(path: &Path) -> anyhow::Result<SignedManifest> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SIGNED_MANIFEST_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    SignedManifest::decode(&bytes)
        .with_context(|| format!("{} is not a signed manifest", path.display()))
}

fn verify(path: &Path, module: Option<&Path>, trust: &[String]) -> anyhow::Result<()> {
    let signed = read_signed_manifest(path)?;
    let trust_note = if trust.is_empty() {
        signed.verify_signature()?;
        "not checked (no --trust given)"
    } else {
        let list = TrustList::parse(trust)?;
        signed.verify(|k| list.contains(k))?;
        "publisher is trusted"
    };
    let m = &signed.manifest;
    let module_note = match module {
        None => "not checked (no --module given)".to_owned(),
        Some(module_path) => {
            let bytes = read_module(module_path)?;
            m.verify_blob(&bytes)?;
            let info = wasm::inspect(&bytes)?;
            if info.abi != m.abi {
                bail!(
                    "ABI mismatch: manifest says {}, module is {}",
                    m.abi,
                    info.abi
                );
            }
            format!("{} matches", module_path.display())
        }
    };
    super::emit(&summary(m, trust_note, &module_note))
}

fn summary(m: &Manifest, trust: &str, module: &str) -> String {
    let l = &m.limits;
    format!(
        "valid manifest: {name}@{version}
  publisher  {publisher}
  blob       {blob}
  size       {size} bytes
  abi        {abi}
  limits     fuel {fuel}, memory {memory} MiB, timeout {timeout} ms, input <= {input} B, output <= {output} B
  issued at  {issued} ms since epoch
  trust      {trust}
  module     {module}
",
        name = m.name,
        version = m.version,
        publisher = m.publisher,
        blob = m.blob.to_prefixed(),
        size = m.size,
        abi = m.abi,
        fuel = l.fuel,
        memory = l.memory_bytes() >> 20,
        timeout = l.timeout_ms,
        input = l.max_input,
        output = l.max_output,
        issued = m.issued_at_ms,
    )
}
