//! Compiled modules: compile once per blob, keep in memory (LRU bounded in bytes and in count)
//! and on disk; and the engines that hold their code.
//!
//! A wasmer 7.1 engine keeps the machine code of every module it compiled or loaded until the
//! engine itself is dropped, whether or not the module still is. So modules are compiled into
//! engine generations: after [`MODULES_PER_ENGINE`] modules, the next ones go to a fresh engine,
//! and an old engine (with its code) is freed once the last of its modules leaves the cache and
//! its last request ends. Evicting and reloading modules then frees code instead of piling it up.
//!
//! Artifacts on disk are `artifacts/<blob hash>-<engine fingerprint>.bin`, each with a
//! `.digest` file beside it holding the artifact's BLAKE3, written by this node after the
//! artifact. Deserializing an artifact runs it as native code, so it happens only when the
//! artifact's hash equals that digest; anything else — a missing or different digest, a file
//! from another engine or CPU (another fingerprint, so another name) — means compile again.
//! Artifacts of another fingerprint (made before an upgrade) are removed when the cache opens,
//! and a blob's artifacts go with the blob (`Store::remove_blob`).

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

/// Most compiled modules kept in memory. Each holds memory mappings of its own (code, data), and
/// the kernel allows a process 65,530 (`vm.max_map_count`): many small modules would exhaust them
/// long before the byte budget, and then every `mprotect` of the process fails (linear memories
/// could no longer grow). An evicted module reloads from its artifact in milliseconds.
pub const MAX_MODULES_IN_MEMORY: usize = 1024;

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

/// Modules compiled or loaded into one engine before the next ones go to a fresh engine.
pub const MODULES_PER_ENGINE: usize = 256;

/// The engine new modules go to, and how many it has taken.
struct Generation {
    engine: Engine,
    modules: usize,
}

pub(crate) struct ModuleCache {
    /// Makes an engine (all alike: the same fingerprint, so artifacts serve every generation).
    new_engine: Box<dyn Fn() -> Engine + Send + Sync>,
    generation: Mutex<Generation>,
    fingerprint: String,
    artifact_dir: Option<PathBuf>,
    budget_bytes: u64,
    max_modules: usize,
    lru: Mutex<Lru>,
    /// Compilations run one at a time (the metering middleware is handed over per compile).
    compile: Mutex<()>,
}

impl ModuleCache {
    pub(crate) fn new(
        new_engine: Box<dyn Fn() -> Engine + Send + Sync>,
        fingerprint: String,
        artifact_dir: Option<PathBuf>,
        budget_bytes: u64,
        max_modules: usize,
    ) -> std::io::Result<Self> {
        if let Some(dir) = &artifact_dir {
            fs::create_dir_all(dir)?;
            remove_foreign_artifacts(dir, &fingerprint);
        }
        let engine = new_engine();
        Ok(Self {
            new_engine,
            generation: Mutex::new(Generation { engine, modules: 0 }),
            fingerprint,
            artifact_dir,
            budget_bytes,
            max_modules: max_modules.max(1),
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
        let engine = self.engine_for_next_module();
        let (module, size, source) = match self.load_artifact(&engine, &hash) {
            Some((module, size)) => (module, size, Prepared::Artifact),
            None => {
                let compiled = wasm::without_custom_sections(wasm);
                let module = Module::new(&engine, compiled.as_ref()).map_err(|e| {
                    GuestError::InvalidModule {
                        detail: e.to_string(),
                    }
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
            inline: super::inline::InlineRecord::for_module(info.init_bytes),
            exec_mean: Default::default(),
            info,
            size_bytes: size,
            engine,
        });
        self.insert(compiled.clone());
        Ok((compiled, source))
    }

    /// The engine the next module goes to (a fresh one once the current one took
    /// [`MODULES_PER_ENGINE`]).
    fn engine_for_next_module(&self) -> Engine {
        let mut generation = lock(&self.generation);
        if generation.modules >= MODULES_PER_ENGINE {
            *generation = Generation {
                engine: (self.new_engine)(),
                modules: 0,
            };
            tracing::debug!("compiling into a fresh engine");
        }
        generation.modules += 1;
        generation.engine.clone()
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
        while (lru.bytes > self.budget_bytes || lru.entries.len() > self.max_modules)
            && lru.entries.len() > 1
        {
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

    fn load_artifact(&self, engine: &Engine, hash: &ContentHash) -> Option<(Module, u64)> {
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
        match unsafe { Module::deserialize(engine, artifact.as_slice()) } {
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

/// Removes the artifacts in `dir` that an engine of another fingerprint wrote: this node will
/// never load them, and they count against its disk quota.
fn remove_foreign_artifacts(dir: &Path, fingerprint: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let ours = format!("-{fingerprint}.");
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_string_lossy().contains(&ours) {
            tracing::debug!(file = %name.to_string_lossy(), "removing an artifact of another engine");
            remove_quietly(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the count cap, the least recently used module leaves memory, whatever the bytes.
    #[test]
    fn the_cache_keeps_at_most_its_count_of_modules() {
        let new_engine = Box::new(|| super::super::engine::build_engine(16, 1));
        let cache = ModuleCache::new(new_engine, "test".into(), None, u64::MAX, 3).unwrap();
        let hashes: Vec<ContentHash> = (0..5)
            .map(|n| {
                let wasm = wat::parse_str(format!(
                    r#"(module (memory (export "memory") 1) (func (export "_start")) (global i32 (i32.const {n})))"#
                ))
                .unwrap();
                let hash = ContentHash::of(&wasm);
                cache.prepare(hash, "m", &wasm).unwrap();
                hash
            })
            .collect();
        assert!(cache.get(&hashes[0]).is_none() && cache.get(&hashes[1]).is_none());
        assert!(hashes[2..].iter().all(|h| cache.get(h).is_some()));
    }

    /// Past MODULES_PER_ENGINE modules, the next go to a fresh engine; modules of the old one
    /// keep it alive and still run.
    #[test]
    fn modules_go_to_a_fresh_engine_after_a_generation() {
        let executor =
            super::super::Executor::new(super::super::ExecutorConfig::default()).unwrap();
        let modules: Vec<Arc<CompiledModule>> = (0..=MODULES_PER_ENGINE)
            .map(|n| {
                let wasm = wat::parse_str(format!(
                    r#"(module (memory (export "memory") 1) (func (export "_start")) (global i32 (i32.const {n})))"#
                ))
                .unwrap();
                executor.prepare(ContentHash::of(&wasm), "m", &wasm).unwrap().0
            })
            .collect();
        let (first, last) = (&modules[0], &modules[MODULES_PER_ENGINE]);
        assert_eq!(
            first.engine.id(),
            modules[MODULES_PER_ENGINE - 1].engine.id()
        );
        assert_ne!(first.engine.id(), last.engine.id());
        let request = super::super::Request {
            input: Vec::new(),
            limits: wasmesh_protocol::Limits::default(),
        };
        assert!(executor.run_blocking(first, &request).is_ok());
        assert!(executor.run_blocking(last, &request).is_ok());
    }
}
