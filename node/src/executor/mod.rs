//! The executor: runs one guest request in a fresh sandbox, fast, and survives any guest.
//!
//! Concepts, stated once:
//! - **Engine**: one per node, long-lived. It holds the compiler (cranelift with the fuel
//!   metering middleware) and the tunables that cap each instance's memory. Every module made
//!   from it keeps it alive ([`CompiledModule`] holds a handle), as wasmer requires.
//! - **Module**: a compiled blob, made once per blob hash when a manifest is accepted and its
//!   blob verified — never on a request. Kept in memory (LRU bounded in bytes) and on disk as a
//!   serialized artifact keyed by blob hash and engine fingerprint ([`cache`]).
//! - **Store + Instance**: fresh per request and dropped after it, so nothing a request leaves
//!   in memory or globals reaches the next one.
//!
//! Per request: the input and output limits, fuel from the manifest (capped by the operator), one
//! memory cap for linear memory and tables ([`sandbox`]) and a wall-clock deadline
//! ([`watchdog`]), which covers the module's start function and after which nothing the guest
//! produced counts. Every code shape meets a fuel check within a bounded amount of work
//! ([`metering`]), host calls pay for their work in chunks ([`wasi`]), so the watchdog stops
//! any guest within about a millisecond of its deadline.
//!
//! At most `max_concurrent` guests run at a time; up to `max_queued` more wait, and beyond that
//! requests fail at once with `busy`. A short request runs on the thread that asked, under a
//! small budget ([`inline`]); any other runs on the executor's own guest threads, at a lower
//! priority than the node's ([`guest_threads`]). Failures are typed ([`GuestError`]).

pub mod cache;
mod engine;
mod error;
mod fuel_cell;
mod guest_threads;
mod inline;
mod memory_pool;
mod metering;
mod raw_abi;
mod run;
mod sandbox;
mod slots;
mod wasi;
mod watchdog;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmesh_protocol::wasm::ModuleInfo;
use wasmesh_protocol::{ContentHash, Limits};

pub use cache::Prepared;
pub use error::{FailureKind, GuestError};
pub use wasi::STDERR_CAP;

/// A compiled module, ready to instantiate.
pub struct CompiledModule {
    /// BLAKE3 of the Wasm blob.
    pub hash: ContentHash,
    /// The module name (the WASI guest's `argv[0]`).
    pub name: String,
    /// What static inspection found (ABI, imports, declared memory).
    pub info: ModuleInfo,
    /// Size of the compiled artifact, counted against the in-memory cache budget.
    pub size_bytes: u64,
    module: wasmer::Module,
    /// Whether its requests may run on the calling thread ([`inline`]).
    inline: inline::InlineRecord,
    /// How long its runs here take (for routing).
    pub exec_mean: ExecMean,
    /// The engine that holds the module's code (see [`cache`]): its requests run in stores of
    /// it, which keeps it alive while they run.
    engine: wasmer::Engine,
}

/// The smoothed execution time of a module's runs on this node, for routing. It lives beside the
/// compiled module, so that recording a run takes no lock.
#[derive(Debug, Default)]
pub struct ExecMean(AtomicU64);

impl ExecMean {
    /// The mean in microseconds; `None` before the first run.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            mean => Some(mean),
        }
    }

    /// Folds one run of `exec_us` into the mean.
    pub fn observe(&self, exec_us: u64) {
        // 0 stands for "no run yet", so a mean is at least 1 us.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(
                    match old {
                        0 => exec_us,
                        old => wasmesh_protocol::routing::smooth(old, exec_us),
                    }
                    .max(1),
                )
            });
    }
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &self.hash)
            .field("name", &self.name)
            .field("abi", &self.info.abi)
            .field("size_bytes", &self.size_bytes)
            .finish_non_exhaustive()
    }
}

/// Operator settings of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Guests running at once (default: 2 per CPU).
    pub max_concurrent: usize,
    /// Requests waiting for a slot before new ones get `busy` (default: 256).
    pub max_queued: usize,
    /// Bytes of compiled modules kept in memory (default: 512 MiB).
    pub cache_bytes: u64,
    /// Where compiled artifacts are kept across restarts (none: memory only).
    pub artifact_dir: Option<PathBuf>,
    /// The most any manifest may ask for; a module over these caps is not run here.
    pub caps: Limits,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_concurrent: cpus * 2,
            max_queued: 256,
            cache_bytes: 512 << 20,
            artifact_dir: None,
            caps: Limits {
                fuel: 10_000_000_000,
                memory_pages: 4096,
                timeout_ms: 30_000,
                max_input: 16 << 20,
                max_output: 16 << 20,
            },
        }
    }
}

/// One request to a guest.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request body.
    pub input: Vec<u8>,
    /// The limits to apply (the manifest's, already checked against the operator's caps).
    pub limits: Limits,
}

/// A guest's response and what it cost.
#[derive(Debug, Clone)]
pub struct Output {
    /// The response body.
    pub bytes: Vec<u8>,
    /// What a WASI guest wrote to stderr (at most [`STDERR_CAP`] bytes).
    pub stderr: Vec<u8>,
    /// Fuel spent.
    pub fuel_used: u64,
    /// Time from the new store to the end of the call.
    pub exec_time: Duration,
}

/// Errors setting up the executor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The artifact folder, the watchdog thread or the guest threads could not be created.
    #[error("executor setup failed: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    /// The executor's clock origin (for the inline records).
    started: Instant,
    cache: cache::ModuleCache,
    /// Owns the watchdog thread.
    _watchdog: watchdog::Watchdog,
    watcher: watchdog::Watcher,
    threads: guest_threads::GuestThreads,
    slots: Arc<slots::Slots>,
    config: ExecutorConfig,
}

/// Runs guests. Cheap to clone; clones share the engines, cache and slots.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Creates the engine, the module cache and the deadline watchdog.
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        // One pooled memory per slot that can run at once, and as many again for instances
        // being torn down while the next ones start.
        let (memory_pages, pooled) = (config.caps.memory_pages, config.max_concurrent * 2);
        let cache = cache::ModuleCache::new(
            Box::new(move || engine::build_engine(memory_pages, pooled)),
            engine::fingerprint(),
            config.artifact_dir.clone(),
            config.cache_bytes,
            cache::MAX_MODULES_IN_MEMORY,
        )?;
        let watchdog = watchdog::Watchdog::start()?;
        Ok(Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                cache,
                watcher: watchdog.watcher(),
                _watchdog: watchdog,
                threads: guest_threads::GuestThreads::start(config.max_concurrent)?,
                slots: slots::Slots::new(config.max_concurrent, config.max_queued),
                config,
            }),
        })
    }

    /// The engine fingerprint (part of every artifact's name).
    pub fn fingerprint(&self) -> String {
        engine::fingerprint()
    }

    /// The settings.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// Guests running now, and requests waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        self.inner.slots.load()
    }

    /// The operator's caps.
    pub fn caps(&self) -> &Limits {
        &self.inner.config.caps
    }

    /// Guests that can run at once.
    pub fn capacity(&self) -> usize {
        self.inner.config.max_concurrent
    }

    /// Compiles (or loads from the artifact cache) the module whose verified blob is `wasm`.
    /// Blocking: call it off the async runtime.
    pub fn prepare(
        &self,
        hash: ContentHash,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Arc<CompiledModule>, Prepared), GuestError> {
        self.inner.cache.prepare(hash, name, wasm)
    }

    /// The compiled module for `hash`, if it is in memory.
    pub fn cached(&self, hash: &ContentHash) -> Option<Arc<CompiledModule>> {
        self.inner.cache.get(hash)
    }

    /// Runs one request on the calling thread, without slot accounting (for the CLI and
    /// benchmarks). The deadline starts now.
    pub fn run_blocking(
        &self,
        module: &CompiledModule,
        request: &Request,
    ) -> Result<Output, GuestError> {
        let deadline = Instant::now() + Duration::from_millis(request.limits.timeout_ms.into());
        run::execute(
            &self.inner.watcher,
            module,
            &request.input,
            &request.limits,
            deadline,
            true,
        )
        .map_err(run::Stop::into_guest_error)
    }

    /// Runs one request once a slot is free: first on this thread under a small budget, and on
    /// a guest thread when it needs more ([`inline`]). Slots are shared fairly between
    /// modules (round-robin, at most half of them per module). The deadline starts now and
    /// covers the wait for a slot.
    pub async fn run(
        &self,
        module: Arc<CompiledModule>,
        request: Request,
    ) -> Result<Output, GuestError> {
        let timeout = Duration::from_millis(u64::from(request.limits.timeout_ms));
        self.run_until(module, request, Instant::now() + timeout)
            .await
    }

    /// As [`Executor::run`], with the request's deadline set by the caller (no later than its
    /// timeout from now): an answer after it is a timeout.
    pub async fn run_until(
        &self,
        module: Arc<CompiledModule>,
        request: Request,
        deadline: Instant,
    ) -> Result<Output, GuestError> {
        let timeout_ms = u64::from(request.limits.timeout_ms);
        let deadline = deadline.min(Instant::now() + Duration::from_millis(timeout_ms));
        let queued = self
            .inner
            .slots
            .acquire(module.hash, deadline)
            .instrument(tracing::debug_span!("queue"));
        let slot = match queued.await {
            Ok(slot) => slot,
            Err(slots::NoSlot::DeadlinePassed) => return Err(GuestError::Timeout { timeout_ms }),
            Err(slots::NoSlot::QueueFull { running, waiting }) => {
                return Err(GuestError::Busy {
                    detail: format!("{running} guests running and {waiting} waiting"),
                });
            }
            Err(slots::NoSlot::WouldMissDeadline { expected_wait }) => {
                return Err(GuestError::Busy {
                    detail: format!(
                        "it would wait about {} ms for a slot, past its {timeout_ms} ms deadline",
                        expected_wait.as_millis()
                    ),
                });
            }
        };
        let span = tracing::debug_span!("execute", module = %module.name);
        self.execute(module, request, slot, deadline)
            .instrument(span)
            .await
    }

    /// Runs a request that holds its slot: inline on this thread while the module's runs stay
    /// short, on a guest thread otherwise (see `inline`).
    async fn execute(
        &self,
        module: Arc<CompiledModule>,
        request: Request,
        slot: slots::Slot,
        deadline: Instant,
    ) -> Result<Output, GuestError> {
        let now = Instant::now();
        let now_ms = now.duration_since(self.inner.started).as_millis() as u64;
        if module.inline.allowed(now_ms) {
            let (limits, inline_deadline) = inline::budget(&request.limits, deadline, now);
            let ran = run::execute(
                &self.inner.watcher,
                &module,
                &request.input,
                &limits,
                inline_deadline,
                false,
            );
            match ran {
                Err(run::Stop::WaitRefused) => module.inline.overran(now_ms),
                Err(run::Stop::Guest(error))
                    if inline::overran_budget(
                        &error,
                        &request.limits,
                        deadline,
                        inline_deadline,
                    ) =>
                {
                    module.inline.overran(now_ms);
                }
                done => return done.map_err(run::Stop::into_guest_error),
            }
        }
        let this = self.inner.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner.threads.run(move || {
            let _slot = slot;
            let result = run::execute(
                &this.watcher,
                &module,
                &request.input,
                &request.limits,
                deadline,
                true,
            )
            .map_err(run::Stop::into_guest_error);
            // The caller may have gone (a client that vanished): the run still ended on time.
            let _ = reply.send(result);
        });
        answer.await.unwrap_or_else(|_| {
            Err(GuestError::Trap {
                detail: "the guest thread failed".into(),
            })
        })
    }
}
