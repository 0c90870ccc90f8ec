//! The node: owns the store, the executor, the data plane and what it knows of modules and
//! peers. The libp2p task, the QUIC server and the HTTP gateway all call into it.
//!
//! A manifest, wherever it comes from (gossip, sync, publish, the store at start-up), goes
//! through [`Node::offer_manifest`]: decode-with-limit (by the caller), name and limits, trust,
//! signature, rollback. Once accepted it is stored and *ingested*: the blob is taken from the
//! store or fetched from the providers named by status gossip (each verified while written), then
//! compiled. A module whose limits exceed this node's caps is kept and reported not runnable
//! here, rather than refused, so that it still propagates to nodes that can run it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::{Notify, mpsc, watch};
use wasmesh_keys::{SignedMembershipCert, TrustList, identity};
use wasmesh_protocol::coordinates::{Coordinate, DIMENSIONS};
use wasmesh_protocol::manifest::Manifest;
use wasmesh_protocol::routing;
use wasmesh_protocol::wire::{
    MAX_PEER_ADDRS, MAX_STATUS_BLOBS, MAX_SYNC_PEERS, PeerRecord, SYNC_PAGE, StatusMessage,
    SyncRequest, SyncResponse,
};
use wasmesh_protocol::{ContentHash, Keypair, ModuleKey, PublicKey, PublishBundle, SignedManifest};

use crate::admission::Admission;
use crate::executor::{Executor, ExecutorConfig, GuestError};
use crate::gossip::GossipCommand;
use crate::lock::lock;
use crate::manifest_intake;
use crate::metrics::Metrics;
use crate::registry::{ModuleEntry, ModuleState, PeerInfo, Registry};
use crate::status_intake::{StatusRefusal, take_introductions, take_status};
use crate::store::Store;
use crate::transfer::{DataPlane, FetchError, PeerAddr};

/// Where a manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Gossiped by a peer.
    Gossip(PeerId),
    /// Received in a sync response.
    Sync(PeerId),
    /// Published through this node's gateway.
    Publish,
    /// Loaded from this node's store at start-up.
    Store,
}

pub use crate::manifest_intake::{Offered, Refusal};

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

/// Why a node could not restore what its store holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Io(#[from] std::io::Error),
    /// A stored manifest does not decode (damaged or tampered with).
    #[error(
        "{} is not a valid signed manifest; move it away to start (the node then accepts any version of that module again)",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The manifest was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The module is not valid Wasm, or uses imports the ABI does not provide.
    #[error(transparent)]
    Module(#[from] GuestError),
    /// Storing the blob would exceed this node's blob quota.
    #[error("the module's {size} bytes exceed this node's blob quota of {quota_mib} MiB")]
    OverQuota {
        /// The blob's size.
        size: u64,
        /// The quota.
        quota_mib: u64,
    },
    /// The blob would not leave this node's disk reserve free (or the disk is full).
    #[error("no room on this node's disk: {shortfall}")]
    DiskFull {
        /// What is missing, in words.
        shortfall: String,
    },
    /// The ABI in the manifest is not the module's.
    #[error("the manifest says ABI {manifest}, the module is {module}")]
    AbiMismatch {
        /// ABI in the manifest.
        manifest: wasmesh_protocol::Abi,
        /// ABI detected.
        module: wasmesh_protocol::Abi,
    },
}

impl PublishError {
    /// A short machine-readable reason.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::Refused(refusal) => refusal.kind(),
            PublishError::Module(error) => error.kind().as_str(),
            PublishError::AbiMismatch { .. } => "abi_mismatch",
            PublishError::OverQuota { .. } => "over_quota",
            PublishError::DiskFull { .. } => "disk_full",
        }
    }
}

pub(crate) struct NodeInner {
    pub(crate) keys: Keypair,
    pub(crate) peer_id: PeerId,
    /// The peer id as the gateway's `x-wasmesh-executed-by` header (encoded once).
    pub(crate) peer_id_header: axum::http::HeaderValue,
    pub(crate) trust: TrustList,
    pub(crate) admission: Admission,
    pub(crate) replicate: crate::config::Replicate,
    pub(crate) blob_quota: Option<u64>,
    pub(crate) min_free_disk: u64,
    pub(crate) membership: Option<SignedMembershipCert>,
    pub(crate) store: Store,
    /// Writes manifests and removes blobs off the caller's task, in order.
    pub(crate) store_writer: crate::store_writer::StoreWriter,
    pub(crate) executor: Executor,
    pub(crate) data_plane: DataPlane,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) peers: Mutex<HashMap<PeerId, PeerInfo>>,
    /// Mean execution time of each blob here (microseconds), for routing.
    pub(crate) local_exec_us: Mutex<HashMap<ContentHash, u64>>,
    pub(crate) gossip: mpsc::Sender<GossipCommand>,
    pub(crate) providers_changed: Notify,
    pub(crate) status_changed: Notify,
    pub(crate) status_seq: AtomicU64,
    /// This node's network coordinate, moved by every ping to a peer whose coordinate is known.
    pub(crate) coordinate: Mutex<Coordinate>,
    pub(crate) in_flight: AtomicU32,
    /// Where peers reach this node's data plane (fixed at start).
    pub(crate) advertised_quic: SocketAddr,
    /// Where peers dial this node (fixed at start; at most 8).
    pub(crate) advertised_p2p: Vec<String>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) started: Instant,
    /// Whether slow forwards get a copy sent to the next candidate.
    pub(crate) hedging: bool,
    /// Whether peers' loopback, private and link-local addresses are dialed.
    pub(crate) allow_private_addrs: bool,
    pub(crate) hedge_budget: crate::request::HedgeBudget,
    /// Forwarded requests each peer has here now (at most half of the slots and queue places).
    pub(crate) forward_shares: crate::per_peer::PerPeer,
}

impl NodeInner {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn peers(&self) -> MutexGuard<'_, HashMap<PeerId, PeerInfo>> {
        lock(&self.peers)
    }

    /// Checks and, if acceptable, takes a manifest (see the module docs).
    pub(crate) fn offer_manifest(
        self: &Arc<Self>,
        signed: SignedManifest,
        origin: Origin,
    ) -> Result<Offered, Refusal> {
        let result = self.check_and_store(&signed, origin);
        match &result {
            Ok(Offered::Accepted) => {
                self.metrics.manifests_accepted.inc();
                let m = &signed.manifest;
                tracing::info!(module = %m.name, version = m.version, hash = %m.blob.short(), ?origin, "accepted manifest");
                // A publish ingests inline, so its answer means "ready here".
                if origin != Origin::Publish {
                    self.spawn_ingest(signed);
                }
            }
            Ok(Offered::AlreadyHeld) => {}
            Err(refusal) => self.note_refusal(&signed.manifest, origin, refusal),
        }
        result
    }

    fn check_and_store(&self, signed: &SignedManifest, origin: Origin) -> Result<Offered, Refusal> {
        if let Some(answer) = manifest_intake::answer_without_signature(&self.registry(), signed) {
            return answer;
        }
        manifest_intake::verify(signed, &self.trust)?;
        let manifest = &signed.manifest;
        let mut registry = self.registry();
        if registry
            .get(&manifest.key())
            .is_some_and(|held| held.signed == *signed)
        {
            return Ok(Offered::AlreadyHeld);
        }
        let admissible = manifest_intake::check_against_held(&registry, manifest, &self.trust)?;
        if let Some(held) = admissible.equivocation_with {
            self.metrics.count_rejection("equivocation_seen");
            tracing::warn!(
                module = %manifest.name,
                version = manifest.version,
                %held,
                offered = %manifest.blob,
                "a publisher signed two blobs under one version; keeping the lower hash"
            );
        }
        if origin != Origin::Store {
            self.store_writer.put_manifest(signed.clone());
        }
        let state = match manifest.limits.first_excess(self.executor.caps()) {
            _ if !self.replicate.includes(&manifest.name) => ModuleState::Remote,
            Some(reason) => ModuleState::NotRunnable(reason),
            None => ModuleState::Pending,
        };
        let replaced = registry.put(ModuleEntry {
            signed: signed.clone(),
            state,
        });
        if let Some(old) = replaced {
            let old_blob = old.signed.manifest.blob;
            if !registry.uses_blob(&old_blob) {
                self.store_writer.remove_blob(old_blob);
            }
            self.status_changed.notify_one();
        }
        Ok(Offered::Accepted)
    }

    /// Counts and logs a refused manifest.
    fn note_refusal(&self, manifest: &Manifest, origin: Origin, refusal: &Refusal) {
        self.metrics.count_rejection(refusal.kind());
        tracing::info!(module = %manifest.name, version = manifest.version, ?origin, %refusal, "refused manifest");
    }

    fn spawn_ingest(self: &Arc<Self>, signed: SignedManifest) {
        let node = self.clone();
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            node.ingest(signed).await
        }));
    }

    /// Brings a module to ready: blob from the store or from providers, then compile.
    async fn ingest(self: Arc<Self>, signed: SignedManifest) {
        let manifest = &signed.manifest;
        let key = manifest.key();
        if matches!(
            self.registry().get(&key).map(|e| &e.state),
            Some(ModuleState::NotRunnable(_) | ModuleState::Remote)
        ) {
            return;
        }
        if let Some(quota) = self.blob_quota
            && !self.store.has_blob(&manifest.blob)
            && self.store.blob_bytes().saturating_add(manifest.size) > quota
        {
            let reason = format!("over this node's blob quota of {} MiB", quota >> 20);
            tracing::info!(module = %key.name, reason, "not replicating; requests are routed to peers");
            self.registry()
                .set_state(&key, &manifest.blob, ModuleState::NotRunnable(reason));
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
                    let providers = self.providers_of(&manifest.blob);
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
                Ok(_) => break,
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
                    // Wait for a status naming a (new) provider, or retry after a while.
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
            let (module, how) = node
                .executor
                .prepare(manifest.blob, &manifest.name, &wasm)?;
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
        if self.registry().set_state(&key, &manifest.blob, state) {
            self.metrics
                .modules_ready
                .set(self.registry().ready_blobs().len() as i64);
            self.status_changed.notify_one();
        }
    }

    /// Whether a blob of `size` bytes fits while leaving the disk reserve free; the shortfall
    /// otherwise, in words.
    fn room_for(&self, size: u64) -> Result<(), String> {
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

    fn is_current(&self, signed: &SignedManifest) -> bool {
        self.registry()
            .get(&signed.manifest.key())
            .is_some_and(|e| e.signed == *signed)
    }

    /// Peers whose status says the blob is ready there, with their data-plane address.
    pub(crate) fn providers_of(&self, hash: &ContentHash) -> Vec<PeerAddr> {
        self.peers()
            .values()
            .filter(|p| p.ready.contains(hash))
            .filter_map(|p| {
                Some(PeerAddr {
                    key: p.key?,
                    addr: p.quic_addr?,
                })
            })
            .collect()
    }

    /// Takes a peer's status (gossip says it comes from `from`). Returns the peer's manifest
    /// digest when it differs from this node's and this node has not asked the peer for a sync
    /// at that digest lately: the caller should ask (and record it with [`Self::note_sync`]).
    pub(crate) fn on_status(
        &self,
        from: PeerId,
        status: StatusMessage,
    ) -> Result<Option<ContentHash>, StatusRefusal> {
        let taken = take_status(
            &mut self.peers(),
            from,
            status,
            Instant::now(),
            self.allow_private_addrs,
        )?;
        if taken.fresh {
            self.metrics.statuses.inc();
        }
        if taken.dropped_addresses {
            self.metrics.count_rejection("peer_address_not_global");
        }
        if taken.new_provider {
            self.providers_changed.notify_waiters();
        }
        Ok(taken
            .unsynced_digest
            .filter(|theirs| *theirs != self.registry().manifest_digest()))
    }

    /// Takes one ping round trip to `peer`: folds it into the peer's smoothed round trip and, when
    /// the peer's coordinate is known, moves this node's coordinate.
    pub(crate) fn on_ping(&self, peer: &PeerId, rtt: Duration) {
        let sample = rtt.as_micros() as u64;
        let their_coordinate = {
            let mut peers = self.peers();
            let Some(info) = peers.get_mut(peer) else {
                return;
            };
            info.rtt_us = Some(match info.rtt_us {
                Some(old) => routing::smooth(old, sample),
                None => sample,
            });
            info.coordinate
        };
        if let Some(theirs) = their_coordinate {
            // Where two coordinates coincide, a direction that differs per peer.
            let bytes = peer.to_bytes();
            let mut direction = [0.0; DIMENSIONS];
            for (d, b) in direction.iter_mut().zip(bytes.iter().rev()) {
                *d = f64::from(*b) - 127.5;
            }
            lock(&self.coordinate).observe(&theirs, sample as f64 / 1000.0, &direction);
        }
    }

    /// Records that this node asked `peer` for a sync while it reported `digest`.
    pub(crate) fn note_sync(&self, peer: &PeerId, digest: ContentHash) {
        if let Some(info) = self.peers().get_mut(peer) {
            info.synced_digest = Some(digest);
            info.synced_at = Some(Instant::now());
        }
    }

    /// This node's status message.
    pub(crate) fn status_message(&self) -> StatusMessage {
        let quic_addr = self.advertised_quic.to_string();
        let (mut ready, manifests) = {
            let registry = self.registry();
            (registry.ready_blobs(), registry.manifest_digest())
        };
        // Past what peers accept, a status would be refused whole and this node would vanish
        // from routing: it names the first blobs only (the rest is found by sync and fetch).
        ready.truncate(MAX_STATUS_BLOBS);
        StatusMessage {
            node: self.keys.public(),
            quic_addr,
            ready,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            capacity: self.executor.capacity() as u32,
            seq: self.status_seq.fetch_add(1, Ordering::Relaxed) + 1,
            p2p_addrs: self.advertised_p2p.clone(),
            manifests,
            coordinate: *lock(&self.coordinate),
        }
    }

    /// A request for the manifests a peer holds after `after` (from the first for None), with
    /// this node's membership certificate.
    pub(crate) fn sync_request(&self, after: Option<ModuleKey>) -> SyncRequest {
        SyncRequest {
            after,
            manifests: true,
            membership: self.membership_bytes(),
        }
    }

    /// A request for the peers a neighbour is connected to, without manifests.
    pub(crate) fn peer_exchange_request(&self) -> SyncRequest {
        SyncRequest {
            after: None,
            manifests: false,
            membership: self.membership_bytes(),
        }
    }

    /// A page of the manifests held (if asked for), from after the request's `after`, for a
    /// sync response to `requester`; the first page also introduces peers this node is
    /// connected to.
    pub(crate) fn sync_response(&self, request: &SyncRequest, requester: &PeerId) -> SyncResponse {
        let after = request.after.as_ref();
        let (manifests, more) = if !request.manifests {
            (Vec::new(), false)
        } else {
            let registry = self.registry();
            let mut page = registry.entries_after(after);
            let manifests: Vec<SignedManifest> = page
                .by_ref()
                .take(SYNC_PAGE)
                .map(|e| e.signed.clone())
                .collect();
            (manifests, page.next().is_some())
        };
        let peers = match after {
            Some(_) => Vec::new(),
            None => self.introductions(requester),
        };
        SyncResponse {
            manifests,
            membership: self.membership_bytes(),
            more,
            peers,
        }
    }

    /// Connected peers with known addresses, to introduce to `requester` (the most recently
    /// heard first).
    fn introductions(&self, requester: &PeerId) -> Vec<PeerRecord> {
        let table = self.peers();
        let mut connected: Vec<&PeerInfo> = table
            .values()
            .filter(|p| p.connected && p.peer_id != *requester && !p.addrs.is_empty())
            .filter(|p| p.key.is_some())
            .collect();
        connected.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        connected
            .into_iter()
            .take(MAX_SYNC_PEERS)
            .filter_map(|p| {
                Some(PeerRecord {
                    node: p.key?,
                    addrs: p
                        .addrs
                        .iter()
                        .take(MAX_PEER_ADDRS)
                        .map(|a| a.to_string())
                        .filter(|a| a.len() <= 128)
                        .collect(),
                })
            })
            .collect()
    }

    /// Takes the peers a neighbour introduced; the new ones become dial targets.
    pub(crate) fn on_introductions(&self, records: &[PeerRecord]) {
        let introduced = take_introductions(
            &mut self.peers(),
            records,
            self.peer_id,
            Instant::now(),
            self.allow_private_addrs,
        );
        if introduced > 0 {
            tracing::debug!(introduced, "peers introduced by a neighbour");
        }
    }

    pub(crate) fn membership_bytes(&self) -> Vec<u8> {
        self.membership
            .as_ref()
            .map(|c| c.encode())
            .unwrap_or_default()
    }

    /// Checks a private-mesh peer's membership certificate (encoded; empty for none) against
    /// the policy: when it admits the peer, until when (ms since the Unix epoch).
    pub(crate) fn admits_until(&self, peer: &PeerId, membership: &[u8]) -> Option<u64> {
        let cert = SignedMembershipCert::decode(membership).ok()?;
        // The certificate must be for the key behind this peer id.
        if identity::peer_id(&cert.cert.node) != Some(*peer) {
            return None;
        }
        self.admission
            .check(&cert.cert.node, Some(&cert), crate::clock::now_ms())
            .ok()?;
        Some(cert.cert.expires_at_ms)
    }

    /// Publishes a bundle: verify, store the blob, accept the manifest, announce it, and compile
    /// it here before answering.
    pub(crate) async fn publish(
        self: &Arc<Self>,
        bundle: PublishBundle,
    ) -> Result<SignedManifest, PublishError> {
        let signed = bundle.manifest;
        let manifest = &signed.manifest;
        let refused = |refusal: Refusal| {
            self.note_refusal(manifest, Origin::Publish, &refusal);
            refusal
        };
        manifest_intake::verify(&signed, &self.trust).map_err(refused)?;
        manifest
            .verify_blob(&bundle.module)
            .map_err(|e| refused(e.into()))?;
        let info = wasmesh_protocol::wasm::inspect(&bundle.module).map_err(|e| {
            self.metrics.count_rejection("publish_invalid_module");
            GuestError::from(e)
        })?;
        if info.abi != manifest.abi {
            self.metrics.count_rejection("publish_abi_mismatch");
            return Err(PublishError::AbiMismatch {
                manifest: manifest.abi,
                module: info.abi,
            });
        }
        manifest_intake::check_against_held(&self.registry(), manifest, &self.trust)
            .map_err(refused)?;
        if let Some(quota) = self.blob_quota
            && !self.store.has_blob(&manifest.blob)
            && self.store.blob_bytes().saturating_add(manifest.size) > quota
        {
            self.metrics.count_rejection("publish_over_quota");
            return Err(PublishError::OverQuota {
                size: manifest.size,
                quota_mib: quota >> 20,
            });
        }
        let disk_full = |shortfall: String| {
            self.metrics.count_rejection("publish_disk_full");
            PublishError::DiskFull { shortfall }
        };
        if !self.store.has_blob(&manifest.blob) {
            self.room_for(manifest.size).map_err(disk_full)?;
        }
        let store = self.store.clone();
        let (hash, module) = (manifest.blob, bundle.module);
        tokio::task::spawn_blocking(move || store.put_blob(hash, &module))
            .await
            .map_err(|e| Refusal::Store(e.to_string()))?
            .map_err(|e| match e.is_disk_full() {
                true => disk_full(e.to_string()),
                false => Refusal::Store(e.to_string()).into(),
            })?;
        self.offer_manifest(signed.clone(), Origin::Publish)?;
        // A publish is answered once its manifest is on disk.
        self.store_writer.flush().await;
        let _ = self
            .gossip
            .send(GossipCommand::PublishManifest(signed.encode()))
            .await;
        self.clone().ingest(signed.clone()).await;
        Ok(signed)
    }

    /// Restores modules from the store at start-up (no peer needed when blobs are here).
    pub(crate) fn restore(self: &Arc<Self>) -> Result<usize, RestoreError> {
        let (manifests, broken) = self.store.load_manifests()?;
        // Skipping it would forget the module's version floor, and let an older version back
        // in: the operator decides.
        if let Some(path) = broken.into_iter().next() {
            return Err(RestoreError::Unreadable { path });
        }
        let mut restored = 0;
        for signed in manifests {
            if self.offer_manifest(signed, Origin::Store).is_ok() {
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// The node's public key.
    pub(crate) fn public_key(&self) -> PublicKey {
        self.keys.public()
    }
}

impl Executor {
    /// Guests that can run at once.
    pub fn capacity(&self) -> usize {
        self.config().max_concurrent
    }
}

/// The executor settings a node uses: the given ones, with artifacts in the store.
pub(crate) fn executor_config(base: &ExecutorConfig, store: &Store) -> ExecutorConfig {
    ExecutorConfig {
        artifact_dir: Some(store.artifact_dir()),
        ..base.clone()
    }
}
