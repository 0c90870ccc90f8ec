//! A running node: its addresses and views for the caller, and stopping it, drained
//! ([`Node::shutdown`]) or at once ([`Node::stop`]). Starting it, with the services it is made
//! of, is [`start`]'s.

mod listeners;
mod services;
mod shared;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wasmesh_protocol::{ContentHash, ModuleRef, PublicKey};

pub use self::start::RestoreError;
use crate::control::handle::NodeHandle;
use crate::core::registry::ModuleState;
use crate::data::DataPlane;
use crate::local_run::LocalLoad;
use crate::metrics::Metrics;
use crate::store_writer::StoreWriter;
use crate::view::Views;

/// A running node.
pub struct Node {
    peer_id: PeerId,
    public_key: PublicKey,
    views: Arc<Views>,
    metrics: Arc<Metrics>,
    load: Arc<LocalLoad>,
    control: NodeHandle,
    data_plane: DataPlane,
    store_writer: StoreWriter,
    /// The node's tasks (ingests included); stopping waits for them.
    tasks: TaskTracker,
    /// Turned true when the node starts to stop: the gateway accepts no new connections.
    stopping: watch::Sender<bool>,
    /// The gateway's task, which ends once its connections have finished (see `drain`).
    gateway: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    drain_timeout: Duration,
    shutdown: watch::Sender<bool>,
    http_addr: SocketAddr,
    quic_addr: SocketAddr,
    p2p_addrs: Vec<Multiaddr>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The HTTP gateway's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gateway's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The QUIC data-plane address peers are told (the bound one, a wildcard replaced by this
    /// node's best address).
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Addresses other nodes can bootstrap from (with `/p2p/<peer id>`), best first, as this
    /// node advertised them at start.
    pub fn p2p_addrs(&self) -> &[Multiaddr] {
        &self.p2p_addrs
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the module a reference names is ready here.
    pub fn is_ready(&self, module_ref: &ModuleRef) -> bool {
        self.views
            .load()
            .registry
            .resolve(module_ref)
            .is_some_and(|e| matches!(e.state, ModuleState::Ready(_)))
    }

    /// The version of the module a reference names, if held here.
    pub fn held_version(&self, module_ref: &ModuleRef) -> Option<u64> {
        self.views
            .load()
            .registry
            .resolve(module_ref)
            .map(|e| e.signed.manifest.version)
    }

    /// The blob of the module a reference names, if held here.
    pub fn blob_of(&self, module_ref: &ModuleRef) -> Option<ContentHash> {
        self.views
            .load()
            .registry
            .resolve(module_ref)
            .map(|e| e.signed.manifest.blob)
    }

    /// What this node knows of its peers now (as `/v1/peers` shows it).
    pub fn peer_views(&self) -> Vec<PeerView> {
        self.views
            .load()
            .peers
            .values()
            .map(|p| PeerView {
                peer_id: p.peer_id,
                connected: p.connected,
                rtt_us: p.rtt_us,
                ready: p.ready.iter().copied().collect(),
            })
            .collect()
    }

    /// Stops taking requests and lets those in flight finish, for at most the drain timeout:
    /// - every neighbour is told that this node is leaving (a status with nothing ready), and
    ///   the node waits (up to 1 s) until each has answered, so none routes here any more;
    /// - forwarded requests that still arrive are refused as `Stopping` (the sender tries its
    ///   next candidate at once);
    /// - the gateway accepts no new connection and finishes the requests it is serving
    ///   (forwards to peers included: the data plane stays up until they end);
    /// - the requests peers forwarded here run to the end, and those that were on their way
    ///   when the neighbours took the news (two round trips) are answered too.
    ///
    /// Returns whether everything in flight finished in time.
    pub async fn drain(&self) -> bool {
        if self.load.stop() {
            return true;
        }
        let started = Instant::now();
        let _ = self.stopping.send(true);
        let leaving = self.control.leave();
        let told = tokio::time::timeout(LEAVE_ACK_WAIT.min(self.drain_timeout), leaving)
            .await
            .is_ok_and(|answered| answered.is_ok());
        let gateway = crate::lock::lock(&self.gateway).take();
        // A forward a neighbour sent just before it took the leaving status may still be on
        // its way (over QUIC, not the connection the status answer took): a few round trips.
        let on_the_way = self.slowest_neighbour_rtt().saturating_mul(2);
        let finished = tokio::time::timeout(
            self.drain_timeout.saturating_sub(started.elapsed()),
            async {
                tokio::time::sleep(on_the_way.clamp(MIN_ON_THE_WAY, MAX_ON_THE_WAY)).await;
                if let Some(gateway) = gateway {
                    let _ = gateway.await;
                }
                while self.load.in_flight() > 0 || self.data_plane.answering() > 0 {
                    tokio::time::sleep(DRAIN_POLL).await;
                }
            },
        )
        .await
        .is_ok();
        let took_ms = started.elapsed().as_millis() as u64;
        if finished {
            tracing::info!(
                took_ms,
                neighbours_told = told,
                "drained: every request in flight finished"
            );
        } else {
            tracing::warn!(
                took_ms,
                left = self.load.in_flight(),
                "requests still in flight after the drain timeout; stopping anyway"
            );
        }
        finished
    }

    /// The largest round trip to a connected peer that was measured.
    fn slowest_neighbour_rtt(&self) -> Duration {
        let view = self.views.load();
        let slowest_us = view
            .peers
            .values()
            .filter(|p| p.connected)
            .filter_map(|p| p.rtt_us)
            .max()
            .unwrap_or(0);
        Duration::from_micros(slowest_us)
    }

    /// Stops gracefully: drains first (see [`Node::drain`]), then [`Node::stop`]s.
    pub async fn shutdown(&self) {
        self.drain().await;
        self.stop().await;
    }

    /// Stops every task and closes the endpoints at once, requests in flight or not (a
    /// simulated crash; [`Node::shutdown`] drains first); returns once the tasks have ended (or
    /// 10 s have passed), so that a node restarted in the same process can bind the same ports.
    pub async fn stop(&self) {
        self.load.stop();
        let _ = self.stopping.send(true);
        let _ = self.shutdown.send(true);
        let stopped = async {
            // Connection handlers, forwarded requests and fetches end with their connections.
            self.data_plane.shutdown().await;
            // Nothing takes manifests any more: what was accepted reaches the disk.
            self.store_writer.close().await;
            self.tasks.close();
            self.tasks.wait().await;
        };
        if tokio::time::timeout(RELEASE_DEADLINE, stopped)
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tasks.len(),
                "tasks still running after shutdown"
            );
        }
    }
}

/// How long shutdown waits for the node's tasks to end.
const RELEASE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a leaving node waits for its neighbours to answer the status that says so.
const LEAVE_ACK_WAIT: Duration = Duration::from_secs(1);

/// How often a draining node looks whether the requests peers forwarded to it have finished.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How long a leaving node waits, after its neighbours took the news, for forwards they sent
/// before (two of the slowest round trips, within these bounds).
const MIN_ON_THE_WAY: Duration = Duration::from_millis(20);
const MAX_ON_THE_WAY: Duration = Duration::from_secs(1);

/// One peer as a node sees it.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// Its id.
    pub peer_id: PeerId,
    /// Whether a libp2p connection is open.
    pub connected: bool,
    /// Smoothed round trip (libp2p ping), microseconds.
    pub rtt_us: Option<u64>,
    /// Blobs it reports ready.
    pub ready: Vec<ContentHash>,
}
