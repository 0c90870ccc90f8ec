//! A mesh of real nodes in this process, each on its own loopback address behind its relay
//! (see [`crate::relay`]), with the faults a scenario asks for: kill, restart on the same data
//! folder, partition and heal.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use wasmesh_node::config::{NodeConfig, Replicate};
use wasmesh_node::daemon::Node;
use wasmesh_protocol::{ContentHash, PublicKey};

use crate::relay::{LatencyNet, LinkView, node_ip};
use wasmesh_node::control::MAX_DIALED_PEERS;

/// How many running nodes a starting node dials first.
const BOOTSTRAP_PEERS: usize = 3;

/// One node of the mesh, running or not.
#[derive(Debug)]
struct Member {
    config: NodeConfig,
    node: Option<Node>,
    peer_id: Option<PeerId>,
    /// Where peers reach its libp2p socket (its relay).
    relay_p2p: Multiaddr,
}

/// The mesh.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
    net: LatencyNet,
    _dir: tempfile::TempDir,
}

/// The mesh as a load generator sees it: gateways and which nodes are up and linked.
#[derive(Debug, Clone)]
pub struct MeshView {
    /// Gateway URL per node.
    pub urls: Vec<String>,
    /// Which nodes are up and linked.
    pub links: LinkView,
}

/// What each node is started with.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Which modules it replicates.
    pub replicate: Replicate,
    /// Whether it hedges slow forwards.
    pub hedging: bool,
    /// How often it sends its status when nothing changes (`None`: the local default, 500
    /// ms, which settles meshes in tests faster than the 2 s of `wasmesh node run`).
    pub status_interval: Option<std::time::Duration>,
}

impl Default for NodeSetup {
    /// As `wasmesh node run` starts: every module, hedging on (statuses at the local pace).
    fn default() -> Self {
        Self {
            replicate: Replicate::All,
            hedging: true,
            status_interval: None,
        }
    }
}

impl Cluster {
    /// Prepares (does not start) one node per entry of `setups`, with the delays of
    /// `one_way_ms` between them, trusting `trust`.
    pub fn new(
        one_way_ms: &[Vec<f64>],
        setups: &[NodeSetup],
        trust: &[PublicKey],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            one_way_ms.len() == setups.len(),
            "{} latency rows for {} nodes",
            one_way_ms.len(),
            setups.len()
        );
        let dir = tempfile::tempdir().context("cannot create the simulation folder")?;
        let net = LatencyNet::start(one_way_ms).context("cannot start the relays")?;
        let mut members = Vec::new();
        for (index, setup) in setups.iter().enumerate() {
            let ip = node_ip(index);
            // Fixed ports, so a restarted node is found where it was. The probe sockets stay
            // open until all three are chosen, so no port is picked twice.
            let p2p_probe = UdpSocket::bind((ip, 0))
                .with_context(|| format!("cannot bind {ip}: is 127.0.0.0/8 routed to lo?"))?;
            let quic_probe = UdpSocket::bind((ip, 0))?;
            let http_probe = TcpListener::bind((ip, 0))?;
            let (p2p, quic, http) = (
                p2p_probe.local_addr()?,
                quic_probe.local_addr()?,
                http_probe.local_addr()?,
            );
            drop((p2p_probe, quic_probe, http_probe));
            // Not on the network until started.
            net.isolate(index, true);
            let relay_p2p = net.relay(index, p2p)?;
            let relay_quic = net.relay(index, quic)?;
            let data_dir = dir.path().join(format!("node-{index}"));
            let mut config = NodeConfig::local(&data_dir);
            config.listen = vec![quic_multiaddr(p2p)];
            config.quic = quic;
            config.http = http;
            config.announce = vec![quic_multiaddr(relay_p2p)];
            config.announce_quic = Some(relay_quic);
            config.trust = trust.iter().copied().map(Into::into).collect();
            config.replicate = setup.replicate.clone();
            config.hedging = setup.hedging;
            if let Some(interval) = setup.status_interval {
                config.status_interval = interval;
            }
            members.push(Member {
                config,
                node: None,
                peer_id: None,
                relay_p2p: quic_multiaddr(relay_p2p),
            });
        }
        Ok(Self {
            members,
            net,
            _dir: dir,
        })
    }

    /// Nodes in the mesh (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the mesh has no nodes.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Starts node `index` (again, on the same data folder), joining through running nodes.
    pub async fn start(&mut self, index: usize) -> anyhow::Result<()> {
        let bootstrap: Vec<Multiaddr> = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != index && m.node.is_some())
            .filter_map(|(_, m)| {
                let id = m.peer_id?;
                Some(m.relay_p2p.clone().with(Protocol::P2p(id)))
            })
            .take(BOOTSTRAP_PEERS)
            .collect();
        self.net.isolate(index, false);
        let member = self
            .members
            .get_mut(index)
            .with_context(|| format!("no node {index}"))?;
        anyhow::ensure!(member.node.is_none(), "node {index} is already running");
        let mut config = member.config.clone();
        config.bootstrap = bootstrap;
        let node = Node::start(config)
            .await
            .with_context(|| format!("cannot start node {index}"))?;
        member.peer_id = Some(node.peer_id());
        member.node = Some(node);
        Ok(())
    }

    /// Kills node `index` as a crash would: it drops off the network at once (nothing it sends
    /// afterwards arrives, so peers see no goodbye), then stops.
    pub async fn kill(&mut self, index: usize) {
        self.net.isolate(index, true);
        if let Some(node) = self.members.get_mut(index).and_then(|m| m.node.take()) {
            // No drain: a crashed node tells nobody and finishes nothing.
            node.stop().await;
        }
    }

    /// Stops every node, all at once (each drains, tells its neighbours and waits for its
    /// requests, as an operator's stop does).
    pub async fn shutdown(&mut self) {
        let stopping = self
            .members
            .iter_mut()
            .filter_map(|member| member.node.take())
            .map(|node| async move { node.shutdown().await });
        futures::future::join_all(stopping).await;
    }

    /// Cuts the mesh into groups.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        self.net.partition(groups);
    }

    /// Ends every partition.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Makes node `index` stall now and then, or normal again with `None`.
    pub fn set_slow(&self, index: usize, stalls: Option<crate::relay::Stalls>) {
        self.net.set_slow(index, stalls);
    }

    /// Forwards hedged by all running nodes so far.
    pub fn hedges(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.node.as_ref())
            .map(|node| node.metrics().hedges.get())
            .sum()
    }

    /// Whether packets flow between two nodes now (ignoring whether they run).
    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.net.connected(a, b)
    }

    /// The running node `index`.
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.members.get(index).and_then(|m| m.node.as_ref())
    }

    /// Whether node `index` runs.
    pub fn is_running(&self, index: usize) -> bool {
        self.node(index).is_some()
    }

    /// The gateway URL of node `index` (the same across restarts).
    pub fn url(&self, index: usize) -> String {
        format!("http://{}", self.members[index].config.http)
    }

    /// Which node a peer id belongs to.
    pub fn index_of(&self, peer: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.peer_id.is_some_and(|id| id.to_string() == peer))
    }

    /// What a load generator needs to know of the mesh, readable from any thread.
    pub fn view(&self) -> MeshView {
        MeshView {
            urls: (0..self.len()).map(|i| self.url(i)).collect(),
            links: self.net.links(),
        }
    }

    /// Packets and bytes the relays delivered.
    pub fn delivered(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.net.counters();
        (c.forwarded.load(Relaxed), c.forwarded_bytes.load(Relaxed))
    }

    /// The relays' packet counts: (delivered, dropped by faults, unroutable).
    pub fn packet_counts(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.net.counters();
        (
            c.forwarded.load(Relaxed),
            c.dropped_by_fault.load(Relaxed),
            c.dropped_unroutable.load(Relaxed),
        )
    }

    /// Whether the mesh has formed. Up to `MAX_DIALED_PEERS + 1` nodes, every node connects to
    /// every other, so: every running node sees every running node it is linked to as connected
    /// and measured (a round trip known). In larger meshes a node connects to only some of the
    /// others: every running node is connected to, and has measured, at least
    /// `MAX_DIALED_PEERS` peers.
    pub fn is_meshed(&self) -> bool {
        if self.is_large() {
            return self.running().all(|i| {
                let views = self.node(i).map(Node::peer_views).unwrap_or_default();
                views
                    .iter()
                    .filter(|v| v.connected && v.rtt_us.is_some())
                    .count()
                    >= MAX_DIALED_PEERS
            });
        }
        self.running().all(|i| {
            let views = self.node(i).map(Node::peer_views).unwrap_or_default();
            self.running()
                .filter(|&j| j != i && self.linked(i, j))
                .all(|j| {
                    let id = self.members[j].peer_id;
                    views
                        .iter()
                        .any(|v| Some(v.peer_id) == id && v.connected && v.rtt_us.is_some())
                })
        })
    }

    /// Whether the mesh is too large for every node to connect to every other.
    fn is_large(&self) -> bool {
        self.members.len() > MAX_DIALED_PEERS + 1
    }

    /// Whether every running node can route `blob` to the running, linked holders that have it
    /// ready. Where every node connects to every other: to each of them, reported ready,
    /// connected and measured. In larger meshes a node learns only of the peers it connects to
    /// or is introduced to: to at least one of them, reported ready.
    pub fn is_routable(&self, blob: &ContentHash, holders: &[usize]) -> bool {
        let large = self.is_large();
        self.running().all(|i| {
            let views = self.node(i).map(Node::peer_views).unwrap_or_default();
            let mut reachable = holders
                .iter()
                .filter(|&&h| h != i && self.is_running(h) && self.linked(i, h));
            let routable = |&h: &usize| {
                let id = self.members[h].peer_id;
                views.iter().any(|v| {
                    Some(v.peer_id) == id
                        && (large || (v.connected && v.rtt_us.is_some()))
                        && v.ready.contains(blob)
                })
            };
            match large {
                true => holders.contains(&i) || reachable.any(&routable),
                false => reachable.all(&routable),
            }
        })
    }

    /// Indices of the running nodes.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.is_running(i))
    }
}

/// Waits until `condition` holds, checking every `every`; fails with `what` after `deadline`.
pub async fn wait_for(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if condition() {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(every).await;
    }
}

fn quic_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip())
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}
