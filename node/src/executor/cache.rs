//! Compiled modules: compile once per blob, keep in memory (LRU bounded in bytes) and on disk.
//!
//! Artifacts on disk are `artifacts/<blob hash>-<engine fingerprint>.bin`, each with a
//! `.digest` file beside it holding the artifact's BLAKE3, written by this node after the
//! artifact. Deserializing an artifact runs it as native code, so it happens only when the
//! artifact's hash equals that digest; anything else — a missing or different digest, a file
//! from another engine or CPU (another fingerprint, so another name) — means compile again.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmer::{Engine, Module};
use wasmesh_protocol::{ContentHash, wasm};

use super::{CompiledModule, GuestError};
use crate::fs_util::write_atomic;
use crate::lock::lock;

/// Where a prepared module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Already in memory.
    Memory,
    /// Loaded from this node's artifact cache.
    Artifact,
    /// Compiled now.
    Compiled,
}

struct Entry {
    module: Arc<CompiledModule>,
    last_used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<ContentHash, Entry>,
    bytes: u64,
    tick: u64,
}

pub(crate) struct ModuleCache {
    engine: Engine,
    fingerprint: String,
    artifact_dir: Option<PathBuf>,
    budget_bytes: u64,
    lru: Mutex<Lru>,
    /// Compilations run one at a time (the metering middleware is handed over per compile).
    compile: Mutex<()>,
}

impl ModuleCache {
    pub(crate) fn new(
        engine: Engine,
        fingerprint: String,
        artifact_dir: Option<PathBuf>,
        budget_bytes: u64,
    ) -> std::io::Result<Self> {
        if let Some(dir) = &artifact_dir {
            fs::create_dir_all(dir)?;
        }
        Ok(Self {
            engine,
            fingerprint,
            artifact_dir,
            budget_bytes,
            lru: Mutex::default(),
            compile: Mutex::default(),
        })
    }

    pub(crate) fn get(&self, hash: &ContentHash) -> Option<Arc<CompiledModule>> {
        let mut lru = lock(&self.lru);
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.entries.get_mut(hash)?;
        entry.last_used = tick;
        Some(entry.module.clone())
    }

    /// The compiled module for `wasm` (whose hash the caller verified to be `hash`).
    pub(crate) fn prepare(
        &self,
        hash: ContentHash,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Arc<CompiledModule>, Prepared), GuestError> {
        if let Some(module) = self.get(&hash) {
            return Ok((module, Prepared::Memory));
        }
        let info = wasm::inspect(wasm)?;
        let _one_at_a_time = lock(&self.compile);
        if let Some(module) = self.get(&hash) {
            return Ok((module, Prepared::Memory));
        }
        let (module, size, source) = match self.load_artifact(&hash) {
            Some((module, size)) => (module, size, Prepared::Artifact),
            None => {
                let module =
                    Module::new(&self.engine, wasm).map_err(|e| GuestError::InvalidModule {
                        detail: e.to_string(),
                    })?;
                let size = self
                    .store_artifact(&hash, &module)
                    .unwrap_or(wasm.len() as u64 * 4);
                (module, size, Prepared::Compiled)
            }
        };
        let compiled = Arc::new(CompiledModule {
            hash,
            name: name.to_owned(),
            module,
            inline: Default::default(),
            exec_mean: Default::default(),
            info,
            size_bytes: size,
            _engine: self.engine.clone(),
        });
        self.insert(compiled.clone());
        Ok((compiled, source))
    }

    fn insert(&self, module: Arc<CompiledModule>) {
        let mut lru = lock(&self.lru);
        lru.tick += 1;
        let tick = lru.tick;
        let hash = module.hash;
        lru.bytes += module.size_bytes;
        if let Some(old) = lru.entries.insert(
            hash,
            Entry {
                module,
                last_used: tick,
            },
        ) {
            lru.bytes -= old.module.size_bytes;
        }
        while lru.bytes > self.budget_bytes && lru.entries.len() > 1 {
            let Some(victim) = lru
                .entries
                .iter()
                .filter(|(h, _)| **h != hash)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(h, _)| *h)
            else {
                break;
            };
            if let Some(evicted) = lru.entries.remove(&victim) {
                lru.bytes -= evicted.module.size_bytes;
                tracing::debug!(hash = %victim.short(), "evicted compiled module from memory");
            }
        }
    }

    fn paths(&self, hash: &ContentHash) -> Option<(PathBuf, PathBuf)> {
        let dir = self.artifact_dir.as_ref()?;
        let stem = format!("{hash}-{}", self.fingerprint);
        Some((
            dir.join(format!("{stem}.bin")),
            dir.join(format!("{stem}.digest")),
        ))
    }

    fn load_artifact(&self, hash: &ContentHash) -> Option<(Module, u64)> {
        let (artifact_path, digest_path) = self.paths(hash)?;
        let artifact = fs::read(&artifact_path).ok()?;
        let expected = fs::read_to_string(&digest_path).ok();
        let actual = ContentHash::of(&artifact).to_string();
        if expected.as_deref().map(str::trim) != Some(actual.as_str()) {
            tracing::warn!(
                hash = %hash.short(),
                path = %artifact_path.display(),
                "artifact does not match the digest this node wrote; recompiling"
            );
            remove_quietly(&artifact_path);
            remove_quietly(&digest_path);
            return None;
        }
        // SAFETY: the artifact's BLAKE3 equals the digest this node wrote beside it when it
        // serialized the artifact itself with an engine of the same fingerprint.
        match unsafe { Module::deserialize(&self.engine, artifact.as_slice()) } {
            Ok(module) => Some((module, artifact.len() as u64)),
            Err(error) => {
                tracing::warn!(hash = %hash.short(), %error, "artifact failed to load; recompiling");
                None
            }
        }
    }

    fn store_artifact(&self, hash: &ContentHash, module: &Module) -> Option<u64> {
        let bytes = module.serialize().ok()?;
        let Some((artifact_path, digest_path)) = self.paths(hash) else {
            return Some(bytes.len() as u64);
        };
        let digest = format!("{}\n", ContentHash::of(&bytes));
        let written = write_atomic(&artifact_path, &bytes)
            .and_then(|()| write_atomic(&digest_path, digest.as_bytes()));
        if let Err(error) = written {
            tracing::warn!(hash = %hash.short(), %error, "could not write the compiled artifact");
        }
        Some(bytes.len() as u64)
    }
}

fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}
