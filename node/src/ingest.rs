//! Ingest: bringing an accepted module to ready on this node. The blob comes from the store, or
//! from the peers whose status names it ready (verified while written; with no provider yet, it
//! waits for one); then it is compiled (or its artifact loaded) off the async workers. A module
//! over the blob quota is kept as not runnable here; while the disk lacks room (the free space
//! minus the reserve), fetching waits, 2 s doubling up to 5 minutes.

use std::sync::Arc;
use std::time::Duration;

use wasmesh_protocol::{ContentHash, SignedManifest};

use crate::core::registry::ModuleState;
use crate::data::FetchError;
use crate::executor::GuestError;
use crate::node::NodeInner;

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

impl NodeInner {
    pub(crate) fn spawn_ingest(self: &Arc<Self>, signed: SignedManifest) {
        let node = self.clone();
        self.tasks
            .spawn(tracing::Instrument::in_current_span(async move {
                node.ingest(signed).await
            }));
    }

    /// Brings a module to ready: blob from the store or from providers, then compile.
    pub(crate) async fn ingest(self: Arc<Self>, signed: SignedManifest) {
        let manifest = &signed.manifest;
        let key = manifest.key();
        if matches!(
            self.views.load().registry.get(&key).map(|e| &e.state),
            Some(ModuleState::NotRunnable(_) | ModuleState::Remote)
        ) {
            return;
        }
        if let Some(quota) = self.blob_quota
            && !self.store.has_blob(&manifest.blob)
            && self.store.stored_bytes().saturating_add(manifest.size) > quota
        {
            let reason = format!("over this node's blob quota of {} MiB", quota >> 20);
            tracing::info!(module = %key.name, reason, "not replicating; requests are routed to peers");
            let state = ModuleState::NotRunnable(reason);
            let _ = self.control.ingested(key, manifest.blob, state).await;
            return;
        }
        let mut shutdown = self.shutdown.clone();
        let mut disk_backoff = DiskBackoff::default();
        while !self.store.has_blob(&manifest.blob) {
            if !self.is_current(&signed) || *shutdown.borrow() {
                return;
            }
            let fetched = match self.room_for(manifest.size) {
                Err(shortfall) => Err(Some(shortfall)),
                Ok(()) => {
                    let providers = self.views.load().providers_of(&manifest.blob);
                    if providers.is_empty() {
                        Err(None)
                    } else {
                        self.data_plane
                            .fetch_from_any(&providers, manifest.blob, manifest.size, &self.store)
                            .await
                            .map_err(|failures| {
                                failures
                                    .iter()
                                    .any(|(_, e)| matches!(e, FetchError::Store(e) if e.is_disk_full()))
                                    .then(|| "the disk filled up while writing".to_owned())
                            })
                    }
                }
            };
            match fetched {
                Ok(report) => {
                    self.note_served(&manifest.blob, &report.served);
                    break;
                }
                Err(Some(shortfall)) => {
                    // Nothing is fetched until there is room: the wait grows, and new providers
                    // do not cut it short.
                    let wait = disk_backoff.next();
                    self.metrics.count_rejection("disk_full");
                    tracing::warn!(module = %key.name, size = manifest.size, %shortfall, ?wait, "no room for the blob; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                Err(None) => {
                    // No provider known, or none delivered: ask the blob's directory nodes, and
                    // wait for a status or an answer naming a (new) provider, or retry after a
                    // while.
                    self.control.find_holders(manifest.blob);
                    tokio::select! {
                        _ = self.providers_changed.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        let node = self.clone();
        let job = signed.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let manifest = &job.manifest;
            let wasm =
                node.store
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
            let (module, how) = node
                .executor
                .prepare(manifest.blob, &manifest.name, &wasm)?;
            if how == crate::executor::Prepared::Compiled {
                node.metrics
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
        })
        .await;
        let state = match prepared {
            Ok(Ok((module, how))) => {
                tracing::info!(module = %key.name, hash = %manifest.blob.short(), ?how, "module ready");
                match how {
                    crate::executor::Prepared::Compiled => self.metrics.modules_compiled.inc(),
                    _ => self.metrics.modules_loaded.inc(),
                };
                ModuleState::Ready(module)
            }
            Ok(Err(error)) => {
                tracing::warn!(module = %key.name, %error, "module not runnable here");
                ModuleState::NotRunnable(error.to_string())
            }
            Err(join) => ModuleState::NotRunnable(format!("compile task failed: {join}")),
        };
        // Returns once the node's view shows it (so a publish answered is ready here).
        let _ = self.control.ingested(key, manifest.blob, state).await;
    }

    /// Whether a blob of `size` bytes fits while leaving the disk reserve free; the shortfall
    /// otherwise, in words.
    pub(crate) fn room_for(&self, size: u64) -> Result<(), String> {
        match self.store.free_bytes() {
            Ok(free) if free >= size.saturating_add(self.min_free_disk) => Ok(()),
            Ok(free) => Err(format!(
                "{free} bytes free, {size} needed and {} kept free",
                self.min_free_disk
            )),
            // Unknown: let the write find out.
            Err(_) => Ok(()),
        }
    }

    /// The providers that delivered verified data of `blob` proved they hold it.
    fn note_served(&self, blob: &ContentHash, served: &[crate::data::PeerAddr]) {
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
