//! Module files: reading one from disk (a `.wasm` binary, or `.wat` text compiled to binary),
//! and signing the manifest that publishes it (alone, or in a publish bundle).

use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use wasmesh_protocol::limits::MAX_MODULE_SIZE;
use wasmesh_protocol::manifest::validate_name;
use wasmesh_protocol::{
    ContentHash, Keypair, Limits, Manifest, PublishBundle, SignedManifest, wasm,
};

/// Builds and signs the manifest of the module `bytes` as `name@version`, checking the module
/// (its ABI is detected here) and the manifest first.
pub fn sign_module(
    bytes: &[u8],
    name: String,
    version: u64,
    limits: Limits,
    keys: &Keypair,
) -> anyhow::Result<SignedManifest> {
    validate_name(&name).context("invalid module name")?;
    let info = wasm::inspect(bytes)?;
    let manifest = Manifest {
        name,
        version,
        blob: ContentHash::of(bytes),
        size: bytes.len() as u64,
        abi: info.abi,
        limits,
        publisher: keys.public(),
        issued_at_ms: crate::clock::now_ms(),
    };
    manifest.check_well_formed()?;
    Ok(manifest.sign(keys))
}

/// The module `bytes` with its manifest signed by [`sign_module`]: the body of
/// `POST /v1/publish`.
pub fn bundle(
    bytes: Vec<u8>,
    name: String,
    version: u64,
    limits: Limits,
    keys: &Keypair,
) -> anyhow::Result<PublishBundle> {
    let manifest = sign_module(&bytes, name, version, limits, keys)?;
    Ok(PublishBundle {
        manifest,
        module: bytes,
    })
}

/// Reads the module at `path`. Text (`.wat`, or any file not starting with the Wasm magic
/// number) is compiled to binary first; the result is what gets hashed, signed and run.
pub fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // Text is larger than the binary it makes; allow a little more for it.
    let cap = MAX_MODULE_SIZE * 4;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes);
    }
    let is_wasm_name = path.extension().is_some_and(|ext| ext == "wasm");
    if is_wasm_name {
        bail!(
            "{} is not a WebAssembly binary (no \\0asm header)",
            path.display()
        );
    }
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{} is neither Wasm binary nor UTF-8 text", path.display()))?;
    wat::parse_str(text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().replace('\n', " ")))
}
