//! Ingest: bringing an accepted module to ready on this node. The blob comes from the store, or
//! from the peers whose status names it ready (verified while written; with no provider yet, it
//! waits for one); then it is compiled (or its artifact loaded) off the async workers. A module
//! over the blob quota is kept as not runnable here; while the disk lacks room (the free space
//! minus the reserve), fetching waits, 2 s doubling up to 5 minutes.
//!
//! The event loop hands accepted manifests over its ingest queue; the [`Ingestor`] runs one
//! task per manifest and reports how each ended through the node's handle, so the loop never
//! waits for a fetch or a compile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::task::TaskTracker;
use wasmesh_protocol::{ContentHash, SignedManifest};

use crate::control::handle::NodeHandle;
use crate::core::registry::ModuleState;
use crate::data::{DataPlane, FetchError, PeerAddr};
use crate::disk_budget::DiskBudget;
use crate::executor::{CompiledModule, Executor, GuestError, Prepared};
use crate::metrics::Metrics;
use crate::possession::PossessionChecks;
use crate::rejection::Rejection;
use crate::store::Store;
use crate::view::Views;

/// How long an ingest with no provider waits before it asks again, unless news comes first.
const NO_PROVIDER_WAIT: Duration = Duration::from_secs(2);

/// The wait between attempts to store a blob while the disk is full: 2 s, doubling up to 5
/// minutes.
#[derive(Debug, Default)]
struct DiskBackoff {
    attempts: u32,
}

impl DiskBackoff {
    const FIRST: Duration = Duration::from_secs(2);
    const LONGEST: Duration = Duration::from_secs(300);

    fn next(&mut self) -> Duration {
        let wait = Self::FIRST
            .saturating_mul(1 << self.attempts.min(16))
            .min(Self::LONGEST);
        self.attempts = self.attempts.saturating_add(1);
        wait
    }
}

/// What ingests need (see the module docs).
pub(crate) struct Ingestor {
    pub(crate) store: Store,
    pub(crate) disk: DiskBudget,
    pub(crate) executor: Executor,
    pub(crate) data_plane: DataPlane,
    pub(crate) views: Arc<Views>,
    pub(crate) control: NodeHandle,
    pub(crate) metrics: Arc<Metrics>,
    /// Woken when a peer becomes a provider of something.
    pub(crate) providers_changed: Arc<Notify>,
    pub(crate) possession: Arc<PossessionChecks>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) tasks: TaskTracker,
}

/// How the wait for a blob ended.
enum Fetched {
    Stored,
    Abandoned,
}

impl Ingestor {
    /// Ingests every manifest the queue brings, each on a task of its own, until the queue
    /// closes or the node stops.
    pub(crate) async fn serve(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<SignedManifest>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                next = queue.recv() => match next {
                    None => return,
                    Some(signed) => {
                        let ingestor = self.clone();
                        self.tasks.spawn(tracing::Instrument::in_current_span(
                            async move { ingestor.ingest(signed).await },
                        ));
                    }
                },
            }
        }
    }

    /// Brings a module to ready: blob from the store or from providers, then compile; returns
    /// once the node's view shows how it ended (so a publish answered is ready here).
    pub(crate) async fn ingest(&self, signed: SignedManifest) {
        let manifest = &signed.manifest;
        let key = manifest.key();
        if matches!(
            self.views.load().registry.get(&key).map(|e| &e.state),
            Some(ModuleState::NotRunnable(_) | ModuleState::Remote)
        ) {
            return;
        }
        if let Some(quota) = self.disk.exceeded_quota(&manifest.blob, manifest.size) {
            let reason = format!("over this node's blob quota of {} MiB", quota >> 20);
            tracing::info!(module = %key.name, reason, "not replicating; requests are routed to peers");
            let state = ModuleState::NotRunnable(reason);
            let _ = self.control.ingested(key, manifest.blob, state).await;
            return;
        }
        if let Fetched::Abandoned = self.fetch_blob(&signed).await {
            return;
        }
        let state = self.prepare(&signed).await;
        let _ = self.control.ingested(key, manifest.blob, state).await;
    }

    /// Gets the blob into the store, from the providers the view names, waiting for room on
    /// the disk and for providers; abandoned when the manifest is replaced or the node stops.
    async fn fetch_blob(&self, signed: &SignedManifest) -> Fetched {
        let manifest = &signed.manifest;
        let mut shutdown = self.shutdown.clone();
        let mut disk_backoff = DiskBackoff::default();
        while !self.store.has_blob(&manifest.blob) {
            if !self.is_current(signed) || *shutdown.borrow() {
                return Fetched::Abandoned;
            }
            let fetched = match self.disk.room_for(manifest.size) {
                Err(shortfall) => Err(Some(shortfall)),
                Ok(()) => self.fetch_from_providers(manifest).await,
            };
            let wait = match fetched {
                Ok(served) => {
                    self.note_served(&manifest.blob, &served);
                    break;
                }
                Err(Some(shortfall)) => {
                    // Nothing is fetched until there is room: the wait grows, and new providers
                    // do not cut it short.
                    let wait = disk_backoff.next();
                    self.metrics.count_rejection(Rejection::DiskFull);
                    tracing::warn!(module = %manifest.name, size = manifest.size, %shortfall, ?wait, "no room for the blob; waiting");
                    tokio::time::sleep(wait)
                }
                Err(None) => {
                    // No provider known, or none delivered: ask the blob's directory nodes, and
                    // wait for a status or an answer naming a (new) provider, or retry after a
                    // while.
                    self.control.find_holders(manifest.blob);
                    tokio::select! {
                        _ = self.providers_changed.notified() => continue,
                        _ = shutdown.changed() => return Fetched::Abandoned,
                        _ = tokio::time::sleep(NO_PROVIDER_WAIT) => continue,
                    }
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = shutdown.changed() => return Fetched::Abandoned,
            }
        }
        Fetched::Stored
    }

    /// One attempt at the providers the view names now: those that served it, or `Err(None)`
    /// when none is known or none delivered, `Err(Some(why))` when the disk filled up.
    async fn fetch_from_providers(
        &self,
        manifest: &wasmesh_protocol::manifest::Manifest,
    ) -> Result<Vec<PeerAddr>, Option<String>> {
        let providers = self.views.load().providers_of(&manifest.blob);
        if providers.is_empty() {
            return Err(None);
        }
        self.data_plane
            .fetch_from_any(&providers, manifest.blob, manifest.size, &self.store)
            .await
            .map(|report| report.served)
            .map_err(|failures| {
                for (provider, error) in &failures {
                    tracing::info!(module = %manifest.name, provider = %provider.addr, %error, "fetch from a provider failed");
                }
                failures
                    .iter()
                    .any(|(_, e)| matches!(e, FetchError::Store(e) if e.is_disk_full()))
                    .then(|| "the disk filled up while writing".to_owned())
            })
    }

    /// Compiles the stored blob (or loads its artifact) off the async workers: the module's
    /// state here.
    async fn prepare(&self, signed: &SignedManifest) -> ModuleState {
        let (store, executor, job) = (self.store.clone(), self.executor.clone(), signed.clone());
        let metrics = self.metrics.clone();
        let prepared =
            tokio::task::spawn_blocking(move || compile(&store, &executor, &metrics, &job)).await;
        let manifest = &signed.manifest;
        match prepared {
            Ok(Ok((module, how))) => {
                tracing::info!(module = %manifest.name, hash = %manifest.blob.short(), ?how, "module ready");
                match how {
                    Prepared::Compiled => self.metrics.modules_compiled.inc(),
                    _ => self.metrics.modules_loaded.inc(),
                };
                ModuleState::Ready(module)
            }
            Ok(Err(error)) => {
                tracing::warn!(module = %manifest.name, %error, "module not runnable here");
                ModuleState::NotRunnable(error.to_string())
            }
            Err(join) => ModuleState::NotRunnable(format!("compile task failed: {join}")),
        }
    }

    /// The providers that delivered verified data of `blob` proved they hold it.
    fn note_served(&self, blob: &ContentHash, served: &[PeerAddr]) {
        let view = self.views.load();
        for peer in view.peers.values() {
            if served.iter().any(|s| Some(s.key) == peer.key) {
                self.possession.served(&peer.feedback, blob);
            }
        }
    }

    fn is_current(&self, signed: &SignedManifest) -> bool {
        self.views
            .load()
            .registry
            .get(&signed.manifest.key())
            .is_some_and(|e| e.signed == *signed)
    }
}

/// Reads the stored blob, checks it against the manifest and compiles it. Blocking.
fn compile(
    store: &Store,
    executor: &Executor,
    metrics: &Metrics,
    signed: &SignedManifest,
) -> Result<(Arc<CompiledModule>, Prepared), GuestError> {
    let manifest = &signed.manifest;
    let wasm = store
        .read_blob(&manifest.blob)
        .map_err(|e| GuestError::InvalidModule {
            detail: format!("cannot read the stored blob: {e}"),
        })?;
    manifest
        .verify_blob(&wasm)
        .map_err(|e| GuestError::InvalidModule {
            detail: e.to_string(),
        })?;
    let started = std::time::Instant::now();
    let (module, how) = executor.prepare(manifest.blob, &manifest.name, &wasm)?;
    if how == Prepared::Compiled {
        metrics
            .compile_duration
            .observe(started.elapsed().as_secs_f64());
    }
    if module.info.abi != manifest.abi {
        return Err(GuestError::InvalidModule {
            detail: format!(
                "manifest says ABI {}, module is {}",
                manifest.abi, module.info.abi
            ),
        });
    }
    Ok((module, how))
}
