//! Starting and stopping a node: wires the store, executor, data plane, swarm and gateway
//! together and runs their tasks until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wasmesh_keys::{SignedMembershipCert, TrustList, key_file};
use wasmesh_protocol::{ContentHash, ModuleRef, PublicKey};

use crate::admission::Admission;
use crate::config::NodeConfig;
use crate::control::handle::NodeHandle;
use crate::control::owner::Owner;
use crate::control::{self};
use crate::core::registry::ModuleState;
use crate::core::state::NodeState;
use crate::data::DataPlane;
use crate::executor::Executor;
use crate::metrics::Metrics;
use crate::node::{NodeInner, executor_config};
use crate::store::Store;
use crate::tls::TlsIdentity;
use crate::view::Views;
use crate::{clock, gateway};

/// A running node.
pub struct Node {
    inner: Arc<NodeInner>,
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
            .field("peer_id", &self.inner.peer_id)
            .field("http", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node. Returns once it listens on every address and serves HTTP.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let (keys, created) = key_file::load_or_generate(&config.key)?;
        let peer_id = wasmesh_keys::identity::libp2p_keypair(&keys)
            .public()
            .to_peer_id();
        let span = tracing::info_span!("node", id = %short_peer(&peer_id));
        if created {
            span.in_scope(|| tracing::info!(key = %config.key.display(), "created a new node key (mode 0600)"));
        }
        let membership = match &config.cert {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(SignedMembershipCert::decode(&bytes).with_context(|| {
                    format!("{} is not a membership certificate", path.display())
                })?)
            }
            None => None,
        };
        let admission = match (&config.mesh_admin, &membership) {
            (Some(admin), Some(cert)) => {
                let own = Admission::Private {
                    admin: *admin,
                    mesh: cert.cert.mesh.clone(),
                };
                own.check(&keys.public(), Some(cert), clock::now_ms())
                    .context("this node's own membership certificate is not valid")?;
                own
            }
            (Some(_), None) => anyhow::bail!("--mesh-admin needs --cert"),
            (None, _) => Admission::Open,
        };

        let store = Store::open(&config.data_dir).context("cannot open the store")?;
        let executor = Executor::new(executor_config(&config.executor, &store))?;
        let metrics = Arc::new(Metrics::default());
        let identity = TlsIdentity::new(&keys, membership.as_ref())?;
        let data_plane =
            DataPlane::bind(config.quic, identity, admission.clone(), metrics.clone())?;
        let quic_addr = data_plane.local_addr()?;

        let settings = control::SwarmSettings {
            hide_listen_addrs: !config.announce.is_empty(),
            private: admission.is_private(),
            max_inbound_per_address: config.max_inbound_per_address,
            allow_private_addrs: config.allow_private_addrs,
        };
        let mut swarm = control::build_swarm(&keys, settings, metrics.clone())?;
        let mut listeners = std::collections::HashSet::new();
        for addr in &config.listen {
            let listener = swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
            listeners.insert(listener);
        }
        let listen_addrs = wait_for_listeners(&mut swarm, listeners).await?;
        for addr in &config.announce {
            swarm.add_external_address(addr.clone());
        }
        let advertised: Vec<Multiaddr> = if config.announce.is_empty() {
            listen_addrs.clone()
        } else {
            config.announce.clone()
        };
        let p2p_addrs: Vec<Multiaddr> = advertised
            .iter()
            .map(|a| a.clone().with_p2p(peer_id).unwrap_or_else(|a| a))
            .collect();

        let tasks = TaskTracker::new();
        let store_writer =
            crate::store_writer::StoreWriter::spawn(store.clone(), metrics.clone(), &tasks);
        let (control, commands) = NodeHandle::channel(1024);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (stopping_tx, stopping_rx) = watch::channel(false);
        let private_mesh = admission.is_private();
        let providers_changed = Arc::new(Notify::new());
        let started = Instant::now();
        let possession = crate::possession::PossessionChecks::new(
            data_plane.clone(),
            tasks.clone(),
            providers_changed.clone(),
            metrics.clone(),
            started,
        );
        let inner = Arc::new(NodeInner {
            trust: config.trust.iter().cloned().collect::<TrustList>(),
            peer_id,
            peer_id_header: axum::http::HeaderValue::from_str(&peer_id.to_string())?,
            admission,
            replicate: config.replicate.clone(),
            blob_quota: config.blob_quota,
            min_free_disk: config.min_free_disk,
            membership,
            store: store.clone(),
            store_writer,
            executor,
            data_plane: data_plane.clone(),
            metrics,
            views: Views::default(),
            control,
            providers_changed: providers_changed.clone(),
            status_changed: Notify::new(),
            // From the clock, so a restarted node's statuses are newer than its old ones.
            status_seq: AtomicU64::new(clock::now_ms().saturating_mul(1000)),
            in_flight: AtomicU32::new(0),
            advertised_quic: config.announce_quic.unwrap_or(quic_addr),
            advertised_p2p: p2p_addrs.iter().take(8).map(|a| a.to_string()).collect(),
            shutdown: shutdown_rx.clone(),
            stopping: AtomicBool::new(false),
            tasks: tasks.clone(),
            started,
            hedging: config.hedging,
            allow_private_addrs: config.allow_private_addrs,
            hedge_budget: Default::default(),
            forward_shares: crate::forward_shares::ForwardShares::new(
                config.executor.max_concurrent + config.executor.max_queued,
            ),
            possession,
            spot_check_rate: config.spot_check_rate.unwrap_or(if private_mesh {
                0.0
            } else {
                crate::request::SPOT_CHECK_RATE
            }),
            spot_checks: Arc::new(tokio::sync::Semaphore::new(crate::request::MAX_SPOT_CHECKS)),
            refusal_log: Default::default(),
            keys,
        });
        // Bootstrap peers are dialed at the control task's first tick, and again while the node
        // has too few neighbours; their connections make neighbours.
        let state =
            NodeState::new(peer_id, private_mesh).with_bootstrap(&config.bootstrap, Instant::now());
        let mut owner = Owner::new(state);
        let restored = span.in_scope(|| owner.restore(&inner))?;
        // Restored modules are ingested once the first view holds them.
        span.in_scope(|| owner.publish(&inner));
        span.in_scope(|| tracing::info!(restored, %quic_addr, "node starting"));

        tasks.spawn(
            control::run(swarm, inner.clone(), owner, commands, shutdown_rx.clone())
                .instrument(span.clone()),
        );
        tasks.spawn(
            data_plane
                .clone()
                .serve(
                    store,
                    Some(inner.clone() as Arc<dyn crate::data::InvokeHandler>),
                )
                .instrument(span.clone()),
        );
        tasks.spawn(
            status_ticker(inner.clone(), config.status_interval, shutdown_rx.clone())
                .instrument(span.clone()),
        );
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot bind the HTTP gateway to {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let router = gateway::router(inner.clone(), config.gateway.body_timeout);
        let gateway = tasks.spawn(
            gateway::server::serve(
                listener,
                router,
                config.gateway,
                inner.metrics.clone(),
                stopping_rx,
                config.drain_timeout,
            )
            .instrument(span.clone()),
        );
        span.in_scope(|| tracing::info!(%http_addr, "serving HTTP"));
        Ok(Self {
            inner,
            stopping: stopping_tx,
            gateway: std::sync::Mutex::new(Some(gateway)),
            drain_timeout: config.drain_timeout,
            shutdown: shutdown_tx,
            http_addr,
            quic_addr,
            p2p_addrs,
        })
    }

    /// The libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.public_key()
    }

    /// The HTTP gateway's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gateway's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The QUIC data-plane address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Addresses other nodes can bootstrap from (with `/p2p/<peer id>`).
    pub fn p2p_addrs(&self) -> &[Multiaddr] {
        &self.p2p_addrs
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the module a reference names is ready here.
    pub fn is_ready(&self, module_ref: &ModuleRef) -> bool {
        self.inner
            .views
            .load()
            .registry
            .resolve(module_ref)
            .is_some_and(|e| matches!(e.state, ModuleState::Ready(_)))
    }

    /// The version of the module a reference names, if held here.
    pub fn held_version(&self, module_ref: &ModuleRef) -> Option<u64> {
        self.inner
            .views
            .load()
            .registry
            .resolve(module_ref)
            .map(|e| e.signed.manifest.version)
    }

    /// The blob of the module a reference names, if held here.
    pub fn blob_of(&self, module_ref: &ModuleRef) -> Option<ContentHash> {
        self.inner
            .views
            .load()
            .registry
            .resolve(module_ref)
            .map(|e| e.signed.manifest.blob)
    }

    /// What this node knows of its peers now (as `/v1/peers` shows it).
    pub fn peer_views(&self) -> Vec<PeerView> {
        self.inner
            .views
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
        if self.inner.stopping.swap(true, Ordering::Relaxed) {
            return true;
        }
        let started = Instant::now();
        let _ = self.stopping.send(true);
        let leaving = self.inner.control.leave(self.inner.status_message());
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
                while self.inner.in_flight.load(Ordering::Relaxed) > 0
                    || self.inner.data_plane.answering() > 0
                {
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
                left = self.inner.in_flight.load(Ordering::Relaxed),
                "requests still in flight after the drain timeout; stopping anyway"
            );
        }
        finished
    }

    /// The largest round trip to a connected peer that was measured.
    fn slowest_neighbour_rtt(&self) -> Duration {
        let view = self.inner.views.load();
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
        self.inner.stopping.store(true, Ordering::Relaxed);
        let _ = self.stopping.send(true);
        let _ = self.shutdown.send(true);
        let stopped = async {
            // Connection handlers, forwarded requests and fetches end with their connections.
            self.inner.data_plane.shutdown().await;
            // Nothing takes manifests any more: what was accepted reaches the disk.
            self.inner.store_writer.close().await;
            self.inner.tasks.close();
            self.inner.tasks.wait().await;
        };
        if tokio::time::timeout(RELEASE_DEADLINE, stopped)
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
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

/// Forwarded requests one peer may have here at once (running or queued): half of the slots
/// and queue places.
fn short_peer(peer: &PeerId) -> String {
    let text = peer.to_string();
    text[text.len().saturating_sub(8)..].to_owned()
}

/// Waits until every one of `listeners` has reported an address (a listener on 0.0.0.0
/// reports one per interface); the addresses reported by then.
async fn wait_for_listeners(
    swarm: &mut libp2p::Swarm<control::Behaviour>,
    mut listeners: std::collections::HashSet<libp2p::core::transport::ListenerId>,
) -> anyhow::Result<Vec<Multiaddr>> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !listeners.is_empty() {
        tokio::select! {
            _ = &mut deadline => anyhow::bail!("listen addresses not ready within 10 s"),
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    listeners.remove(&listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
                _ => {}
            },
        }
    }
    Ok(addrs)
}

async fn status_ticker(
    node: Arc<NodeInner>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
            _ = node.status_changed.notified() => {}
        }
        if node
            .control
            .publish_status(node.status_message())
            .await
            .is_err()
        {
            return;
        }
    }
}
