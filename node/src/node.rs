//! The node's services, shared by its tasks: identity and policy (keys, trust, admission,
//! replication, quotas), the store, the executor, the data plane, the metrics, the view of what
//! the control task knows ([`Views`]) and the handle on that task ([`NodeHandle`]).
//!
//! Nothing here is the node's changing state: the control task owns that
//! (`control::owner`); the rest reads its views and sends it commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::{Notify, watch};
use wasmesh_keys::{SignedMembershipCert, TrustList, identity};
use wasmesh_protocol::manifest::Manifest;
use wasmesh_protocol::wire::{MAX_STATUS_BLOBS, StatusMessage, SyncRequest, ready_version};
use wasmesh_protocol::{Keypair, ModuleKey, PublicKey};

use crate::admission::Admission;
use crate::control::handle::NodeHandle;
use crate::data::DataPlane;
use crate::executor::{Executor, ExecutorConfig};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::view::Views;

pub use crate::core::manifests::{Offered, Origin, Refusal};

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
    /// What the control task knows (modules, peers, coordinate), as of its last change.
    pub(crate) views: Views,
    /// Commands to the control task, the owner of the node's state.
    pub(crate) control: NodeHandle,
    pub(crate) providers_changed: Arc<Notify>,
    pub(crate) status_changed: Notify,
    pub(crate) status_seq: AtomicU64,
    pub(crate) in_flight: AtomicU32,
    /// Where peers reach this node's data plane (fixed at start).
    pub(crate) advertised_quic: SocketAddr,
    /// Where peers dial this node (fixed at start; at most 8).
    pub(crate) advertised_p2p: Vec<String>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Set when the node starts to stop: its statuses say it is leaving and report nothing
    /// ready, and forwarded requests are refused (`Node::shutdown`).
    pub(crate) stopping: AtomicBool,
    /// The node's tasks (ingests included); shutdown waits for them.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    pub(crate) started: Instant,
    /// Whether slow forwards get a copy sent to the next candidate.
    pub(crate) hedging: bool,
    /// Whether peers' loopback, private and link-local addresses are dialed.
    pub(crate) allow_private_addrs: bool,
    pub(crate) hedge_budget: crate::hedge_budget::HedgeBudget,
    /// Forwarded requests each peer has here now (see `forward_shares`).
    pub(crate) forward_shares: crate::forward_shares::ForwardShares,
    /// Proofs that claimed holders hold what they claim (see `possession`).
    pub(crate) possession: crate::possession::PossessionChecks,
    /// The share of forwarded answers of raw-ABI modules checked again (`request::verify`).
    pub(crate) spot_check_rate: f64,
    /// Places of the spot checks under way.
    pub(crate) spot_checks: Arc<tokio::sync::Semaphore>,
    /// Which peers' refusals are logged now (one line per peer and interval).
    pub(crate) refusal_log: crate::refusal_log::RefusalLog,
}

impl NodeInner {
    /// Counts and logs a refused manifest (a peer's refusals once per interval, with a count).
    pub(crate) fn note_refusal(&self, manifest: &Manifest, origin: Origin, refusal: &Refusal) {
        self.metrics.count_rejection(refusal.kind());
        let suppressed = match origin {
            Origin::Gossip(peer) | Origin::Sync(peer) => self.peer_refusal_logged(&peer),
            Origin::Publish | Origin::Store => Some(0),
        };
        if let Some(suppressed) = suppressed {
            tracing::info!(module = %manifest.name, version = manifest.version, ?origin, %refusal, suppressed, "refused manifest");
        }
    }

    /// Whether to log a refusal of `peer`'s input now (see `refusal_log`): `Some` with the
    /// number of its refusals not logged since its last line, `None` to only count it.
    pub(crate) fn peer_refusal_logged(&self, peer: &PeerId) -> Option<u64> {
        self.refusal_log.admit(peer, Instant::now())
    }

    /// This node's status message.
    pub(crate) fn status_message(&self) -> StatusMessage {
        let quic_addr = self.advertised_quic.to_string();
        let view = self.views.load();
        let leaving = self.stopping.load(Ordering::Relaxed);
        let mut ready = if leaving {
            Vec::new()
        } else {
            view.registry.ready_blobs()
        };
        // Past what peers accept, a status would be refused whole and this node would vanish
        // from routing: it names the first blobs only (the rest is found by sync and fetch).
        ready.truncate(MAX_STATUS_BLOBS);
        StatusMessage {
            node: self.keys.public(),
            quic_addr,
            ready_version: ready_version(&ready),
            ready: Some(ready),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            capacity: self.executor.capacity() as u32,
            seq: self.status_seq.fetch_add(1, Ordering::Relaxed) + 1,
            p2p_addrs: self.advertised_p2p.clone(),
            manifests: view.registry.manifest_digest(),
            coordinate: view.coordinate,
            leaving,
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

    /// Sets the state gauges (slots, queue, peers and modules by state) from the executor and
    /// the node's view, before the metrics are read.
    pub(crate) fn refresh_gauges(&self) {
        use crate::core::registry::ModuleState;
        let metrics = &self.metrics;
        let (running, queued) = self.executor.load();
        metrics.slots_busy.set(running as i64);
        metrics.queue_length.set(queued as i64);
        let view = self.views.load();
        let now_ms = self.clock_ms(Instant::now());
        let peers = || view.peers.values();
        let count_peers = |state, matches: &dyn Fn(&crate::core::peers::PeerInfo) -> bool| {
            Metrics::set_state(
                &metrics.peers,
                state,
                peers().filter(|p| matches(p)).count(),
            );
        };
        count_peers("known", &|_| true);
        count_peers("connected", &|p| p.connected);
        count_peers("neighbour", &|p| p.connected && p.neighbour);
        count_peers("leaving", &|p| p.leaving);
        count_peers("down", &|p| {
            p.feedback
                .down_until_ms()
                .is_some_and(|until| until > now_ms)
        });
        let modules = || view.registry.entries();
        let count_modules = |state, matches: &dyn Fn(&ModuleState) -> bool| {
            let count = modules().filter(|e| matches(&e.state)).count();
            Metrics::set_state(&metrics.modules, state, count);
        };
        count_modules("ready", &|s| matches!(s, ModuleState::Ready(_)));
        count_modules("pending", &|s| matches!(s, ModuleState::Pending));
        count_modules("not_runnable", &|s| {
            matches!(s, ModuleState::NotRunnable(_))
        });
        count_modules("remote", &|s| matches!(s, ModuleState::Remote));
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
