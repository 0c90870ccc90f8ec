//! The node's state: the store, the executor, the data plane and what it knows of modules and
//! peers (the core's registry and peer table). The control task, the QUIC server and the HTTP
//! gateway all call into it.
//!
//! A manifest, wherever it comes from (gossip, sync, publish, the store at start-up), goes
//! through `NodeInner::offer_manifest`: decode-with-limit (by the caller), then the decisions of
//! `core::manifests` (name and limits, trust, signature, rollback). Once accepted it is stored
//! and ingested (`ingest`). A module whose limits exceed this node's caps is kept and reported
//! not runnable here, rather than refused, so that it still propagates to nodes that can run it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::{Notify, mpsc, watch};
use wasmesh_keys::{SignedMembershipCert, TrustList, identity};
use wasmesh_protocol::manifest::Manifest;
use wasmesh_protocol::wire::{
    MAX_STATUS_BLOBS, PeerRecord, SYNC_PAGE, StatusMessage, SyncRequest, SyncResponse,
};
use wasmesh_protocol::{ContentHash, Keypair, ModuleKey, PublicKey, SignedManifest};

use crate::admission::Admission;
use crate::control::command::ControlCommand;
use crate::core::manifests::{self, Filing};
use crate::core::peers::intake::StatusRefusal;
use crate::core::registry::Registry;
use crate::core::state::{Effect, Input, NodeState};
use crate::data::DataPlane;
use crate::executor::{Executor, ExecutorConfig};
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::store::Store;

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

pub use crate::core::manifests::{Offered, Refusal};

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
    /// The control plane's state: the peer table, this node's coordinate, admission. The
    /// control task changes it through `NodeState::handle`; the request path reads it.
    pub(crate) state: Mutex<NodeState>,
    /// Mean execution time of each blob here (microseconds), for routing.
    pub(crate) local_exec_us: Mutex<HashMap<ContentHash, u64>>,
    pub(crate) gossip: mpsc::Sender<ControlCommand>,
    pub(crate) providers_changed: Notify,
    pub(crate) status_changed: Notify,
    pub(crate) status_seq: AtomicU64,
    pub(crate) in_flight: AtomicU32,
    /// Where peers reach this node's data plane (fixed at start).
    pub(crate) advertised_quic: SocketAddr,
    /// Where peers dial this node (fixed at start; at most 8).
    pub(crate) advertised_p2p: Vec<String>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The node's tasks (ingests included); shutdown waits for them.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    pub(crate) started: Instant,
    /// Whether slow forwards get a copy sent to the next candidate.
    pub(crate) hedging: bool,
    /// Whether peers' loopback, private and link-local addresses are dialed.
    pub(crate) allow_private_addrs: bool,
    pub(crate) hedge_budget: crate::hedge_budget::HedgeBudget,
    /// Forwarded requests each peer has here now (at most half of the slots and queue places).
    pub(crate) forward_shares: crate::per_peer::PerPeer,
}

impl NodeInner {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, NodeState> {
        lock(&self.state)
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
        if let Some(answer) = manifests::answer_without_signature(&self.registry(), signed) {
            return answer;
        }
        manifests::verify(signed, &self.trust)?;
        let filing = Filing {
            trust: &self.trust,
            replicate: &self.replicate,
            caps: self.executor.caps(),
        };
        // Held across the store writes: the store sees accepted manifests in order.
        let mut registry = self.registry();
        let taken = manifests::take(&mut registry, signed, filing)?;
        if let Some(held) = taken.equivocation_with {
            let manifest = &signed.manifest;
            self.metrics.count_rejection("equivocation_seen");
            tracing::warn!(
                module = %manifest.name,
                version = manifest.version,
                %held,
                offered = %manifest.blob,
                "a publisher signed two blobs under one version; keeping the lower hash"
            );
        }
        if taken.offered == Offered::Accepted && origin != Origin::Store {
            self.store_writer.put_manifest(signed.clone());
        }
        if let Some(blob) = taken.forget_blob {
            self.store_writer.remove_blob(blob);
        }
        drop(registry);
        if taken.replaced {
            self.status_changed.notify_one();
        }
        Ok(taken.offered)
    }

    /// Counts and logs a refused manifest.
    pub(crate) fn note_refusal(&self, manifest: &Manifest, origin: Origin, refusal: &Refusal) {
        self.metrics.count_rejection(refusal.kind());
        tracing::info!(module = %manifest.name, version = manifest.version, ?origin, %refusal, "refused manifest");
    }

    /// Takes a peer's status (gossip says it comes from `from`). Returns the peer's manifest
    /// digest when it differs from this node's and this node has not asked the peer for a sync
    /// at that digest lately: the caller should ask (and record it with [`Self::note_sync`]).
    pub(crate) fn on_status(
        &self,
        from: PeerId,
        status: StatusMessage,
    ) -> Result<Option<ContentHash>, StatusRefusal> {
        let taken = self.state().peers.take_status(
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

    /// Takes one input into the control plane's state at `now` (see `core::state`).
    pub(crate) fn handle(&self, input: Input<'_>, now: Instant) -> Vec<Effect> {
        self.state().handle(input, now)
    }

    /// Records that this node asked `peer` for a sync while it reported `digest`.
    pub(crate) fn note_sync(&self, peer: &PeerId, digest: ContentHash) {
        self.state().peers.synced(peer, digest, Instant::now());
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
            coordinate: self.state().coordinate,
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
            None => self.state().peers.introductions(requester),
        };
        SyncResponse {
            manifests,
            membership: self.membership_bytes(),
            more,
            peers,
        }
    }

    /// Takes the peers a neighbour introduced; the new ones become dial targets.
    pub(crate) fn on_introductions(&self, records: &[PeerRecord]) {
        let introduced = self.state().peers.take_introductions(
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
