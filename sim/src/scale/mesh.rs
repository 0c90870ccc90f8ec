//! The simulated mesh: nodes with a place on the map, a key, and the node's own control-plane
//! state (`wasmesh_node::core::state::NodeState`, with its peer table). Nodes join one after
//! the other through a node already in the mesh, as operators do; from then on every dial,
//! peer exchange, neighbour choice, status and coordinate update is the core's decision. The
//! model only carries what the core asks to send: a connection opens after a round trip of the
//! geographic model, a message arrives after the one-way delay, a ping after the round trip.
//!
//! Every walk over the model's own collections goes in a fixed order, and the core's peer
//! table is ordered by peer id, so a seed gives the same mesh everywhere.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use rand::RngExt;
use rand_pcg::Pcg64;
use wasmesh_node::core::peers::REDIAL_AFTER;
use wasmesh_node::core::state::{Effect, Input, NodeState, StatusContext};
use wasmesh_protocol::wire::{StatusMessage, SyncRequest, SyncResponse};

use super::delivery::{Carried, Delivery, Queued};
pub(crate) use super::node::NodeId;
use super::node::{SimNode, manifest_digest, new_node};

/// The wall clock the model's nodes read (membership certificates only; the mesh is open).
const WALL_MS: u64 = 1_800_000_000_000;

/// The simulated mesh (see the module docs).
pub(crate) struct Mesh {
    pub(crate) nodes: Vec<SimNode>,
    by_peer: HashMap<PeerId, NodeId>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// The model's clock, microseconds.
    pub(crate) now_us: u64,
    base: Instant,
    /// What the control plane carried while the mesh formed.
    pub(crate) carried: Carried,
    /// Peers the cores refused or dropped, by reason.
    pub(crate) refusals: BTreeMap<&'static str, u64>,
    /// Whether the nodes' periodic ticks run (they stop once the mesh has formed: what the
    /// ticks do, dials and peer exchange, has settled by then).
    ticking: bool,
}

impl Mesh {
    /// `n` nodes near random cities, none joined yet.
    pub(crate) fn new(n: usize, rng: &mut Pcg64) -> Self {
        let nodes: Vec<SimNode> = (0..n).map(|i| new_node(i, rng)).collect();
        let by_peer = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.peer_id, i as NodeId))
            .collect();
        Self {
            nodes,
            by_peer,
            queue: BinaryHeap::new(),
            seq: 0,
            now_us: 0,
            base: Instant::now(),
            carried: Carried::default(),
            refusals: BTreeMap::new(),
            ticking: true,
        }
    }

    /// The moment the cores read for the model's time `at_us`.
    pub(crate) fn instant(&self, at_us: u64) -> Instant {
        self.base + Duration::from_micros(at_us)
    }

    /// One-way delay between two nodes, microseconds.
    pub(crate) fn one_way_us(&self, a: NodeId, b: NodeId) -> u64 {
        let (a, b) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        (a.position.one_way_ms(&b.position) * 1000.0).round() as u64
    }

    /// Round trip between two nodes (the geographic model is symmetric), microseconds.
    pub(crate) fn rtt_us(&self, a: NodeId, b: NodeId) -> u64 {
        if a == b { 0 } else { 2 * self.one_way_us(a, b) }
    }

    /// The node with peer id `peer`.
    pub(crate) fn node_of(&self, peer: &PeerId) -> Option<NodeId> {
        self.by_peer.get(peer).copied()
    }

    fn push(&mut self, at: u64, to: NodeId, delivery: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            to,
            delivery,
        }));
    }

    /// The nodes join over `window` of model time, each through a random node that joined
    /// before it (the caller then runs the model with [`Mesh::run_until`]).
    pub(crate) fn schedule_joins(&mut self, window: Duration, rng: &mut Pcg64) {
        let n = self.nodes.len();
        let step = window.as_micros() as u64 / n.max(1) as u64;
        for i in 0..n {
            let at = i as u64 * step;
            let bootstrap: Vec<Multiaddr> = match i {
                0 => Vec::new(),
                _ => {
                    let through = &self.nodes[rng.random_range(0..i)];
                    let with_id = through.addr.clone().with_p2p(through.peer_id);
                    vec![with_id.unwrap_or_else(|addr| addr)]
                }
            };
            let node = &mut self.nodes[i];
            node.state = NodeState::new(node.peer_id, false)
                .allowing_private_addrs(true)
                .with_bootstrap(&bootstrap, self.base + Duration::from_micros(at));
            self.push(at, i as NodeId, Delivery::Tick);
        }
    }

    /// Delivers what is due within `within_us` from now, leaving the clock where it is: the
    /// requests are sampled at one moment of the mesh's life, and what a request sets off (a
    /// probe's connection) is in place for the next.
    pub(crate) fn deliver_within(&mut self, within_us: u64) {
        let now = self.now_us;
        self.run_until(now + within_us);
        self.now_us = now;
    }

    /// Delivers everything due by `until_us`.
    pub(crate) fn run_until(&mut self, until_us: u64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until_us {
                break;
            }
            let Some(Reverse(Queued {
                at, to, delivery, ..
            })) = self.queue.pop()
            else {
                break;
            };
            self.now_us = at;
            self.deliver(to, delivery);
        }
        self.now_us = until_us;
    }

    fn deliver(&mut self, to: NodeId, delivery: Delivery) {
        let now = self.instant(self.now_us);
        match delivery {
            Delivery::Tick if !self.ticking => {}
            Delivery::Tick => {
                let node = &self.nodes[to as usize];
                let connected: Vec<PeerId> = node
                    .connected
                    .iter()
                    .map(|c| self.nodes[*c as usize].peer_id)
                    .collect();
                let input = Input::Tick {
                    connected: &connected,
                    wall_ms: WALL_MS + self.now_us / 1000,
                };
                let effects = self.nodes[to as usize].state.handle(input, now);
                self.apply(to, effects);
                let next = self.now_us + REDIAL_AFTER.as_micros() as u64;
                self.push(next, to, Delivery::Tick);
            }
            Delivery::Connected { from, addr, kept } => self.connected(from, to, &addr, kept),
            Delivery::SyncAsked { from } => {
                let asker = self.nodes[from as usize].peer_id;
                let records = self.nodes[to as usize]
                    .state
                    .peers
                    .introductions(&asker, now);
                let answer = SyncResponse {
                    manifests: Vec::new(),
                    membership: Vec::new(),
                    more: false,
                    peers: records.clone(),
                };
                self.carried.add("sync", answer.encode().len());
                let at = self.now_us + self.one_way_us(to, from);
                self.push(at, from, Delivery::Introduced { records });
            }
            Delivery::Introduced { records, .. } => {
                let connected = self.nodes[to as usize].connected.len();
                let effects = self.nodes[to as usize]
                    .state
                    .take_introductions(&records, connected, now);
                self.apply(to, effects);
            }
            Delivery::Status { from, status } => self.take_status(from, to, *status),
            Delivery::WantReady { from } => {
                let peer = self.nodes[from as usize].peer_id;
                self.nodes[to as usize].state.peers.resend_ready(&peer);
                self.send_status(to, from);
            }
        }
    }

    /// A connection between dialer `from` and `to` opened.
    fn connected(&mut self, from: NodeId, to: NodeId, addr: &Multiaddr, kept: bool) {
        let now = self.instant(self.now_us);
        let first = !self.nodes[from as usize].connected.contains(&to);
        self.nodes[from as usize].connected.insert(to);
        self.nodes[to as usize].connected.insert(from);
        let (dialer, listener) = (
            self.nodes[from as usize].peer_id,
            self.nodes[to as usize].peer_id,
        );
        let opened = Input::ConnectionOpened {
            peer: listener,
            first,
            dialed: Some(addr),
        };
        let mut effects = self.nodes[from as usize].state.handle(opened, now);
        if kept {
            effects.extend(self.nodes[from as usize].state.keep(listener));
        }
        self.apply(from, effects);
        let accepted = Input::ConnectionOpened {
            peer: dialer,
            first,
            dialed: None,
        };
        let effects = self.nodes[to as usize].state.handle(accepted, now);
        self.apply(to, effects);
    }

    /// `to` takes `from`'s status, as its event loop does.
    fn take_status(&mut self, from: NodeId, to: NodeId, status: StatusMessage) {
        let now = self.instant(self.now_us);
        let peer = self.nodes[from as usize].peer_id;
        let node = &mut self.nodes[to as usize];
        let context = StatusContext {
            own_digest: manifest_digest(),
            known: &|_| true,
            connected: node.connected.len(),
        };
        match node.state.take_status(peer, status, context, now) {
            Ok(verdict) => {
                self.carried.add("status_ack", 8);
                if verdict.want_ready {
                    let at = self.now_us + self.one_way_us(to, from);
                    self.push(at, from, Delivery::WantReady { from: to });
                }
                self.apply(to, verdict.effects);
            }
            Err(_) => *self.refusals.entry("status_refused").or_default() += 1,
        }
    }

    /// `from` sends its status to `to`, as `PeerTable::status_for` shapes it.
    pub(crate) fn send_status(&mut self, from: NodeId, to: NodeId) {
        let peer = self.nodes[to as usize].peer_id;
        let node = &mut self.nodes[from as usize];
        let own = node.own_status();
        let Some(status) = node.state.peers.status_for(&peer, &own) else {
            return;
        };
        self.carried.add("status", status.encode().len());
        let at = self.now_us + self.one_way_us(from, to);
        let status = Box::new(status);
        self.push(at, to, Delivery::Status { from, status });
    }

    /// Stops the nodes' periodic ticks.
    pub(crate) fn stop_ticking(&mut self) {
        self.ticking = false;
    }

    /// Carries out what `node`'s core decided (messages go out now, and arrive later).
    pub(crate) fn apply_now(&mut self, node: NodeId, effects: Vec<Effect>) {
        self.apply(node, effects);
    }

    /// Carries out what `node`'s core decided.
    fn apply(&mut self, node: NodeId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::DialBootstrap { addr } => {
                    let target = self.node_at(&addr);
                    self.dial(node, target, addr);
                }
                Effect::Dial { peer, addrs } => {
                    let target = self.node_of(&peer);
                    let addr = addrs.into_iter().next();
                    if let (Some(target), Some(addr)) = (target, addr) {
                        self.dial(node, Some(target), addr);
                    }
                }
                Effect::Disconnect { peer, count } => {
                    if let Some(reason) = count {
                        *self.refusals.entry(reason.as_str()).or_default() += 1;
                    }
                    if let Some(other) = self.node_of(&peer) {
                        self.disconnect(node, other);
                    }
                }
                Effect::Count { reason, .. } => {
                    *self.refusals.entry(reason.as_str()).or_default() += 1
                }
                Effect::SendStatus { peer } => {
                    if let Some(other) = self.node_of(&peer) {
                        self.send_status(node, other);
                    }
                }
                Effect::AskSync { peer } | Effect::AskPeers { peer } => {
                    if let Some(other) = self.node_of(&peer) {
                        let request = SyncRequest {
                            after: None,
                            manifests: false,
                            membership: Vec::new(),
                        };
                        self.carried.add("sync", request.encode().len());
                        let at = self.now_us + self.one_way_us(node, other);
                        self.push(at, other, Delivery::SyncAsked { from: node });
                    }
                }
                // An open mesh: nobody is shut out.
                Effect::ShutOut { .. } | Effect::LetIn { .. } => {}
            }
        }
    }

    /// `node` dials `target` at `addr`: connected already, the core keeps it as a neighbour;
    /// otherwise the connection opens after a round trip.
    fn dial(&mut self, node: NodeId, target: Option<NodeId>, addr: Multiaddr) {
        let Some(target) = target.filter(|t| *t != node) else {
            return;
        };
        if self.nodes[node as usize].connected.contains(&target) {
            let peer = self.nodes[target as usize].peer_id;
            let effects = self.nodes[node as usize].state.keep(peer);
            self.apply(node, effects);
            return;
        }
        self.carried.add("connection", 0);
        let at = self.now_us + self.rtt_us(node, target);
        let delivery = Delivery::Connected {
            from: node,
            addr,
            kept: true,
        };
        self.push(at, target, delivery);
    }

    /// Closes the connection between two nodes; both cores learn it at once.
    fn disconnect(&mut self, a: NodeId, b: NodeId) {
        let now = self.instant(self.now_us);
        for (one, other) in [(a, b), (b, a)] {
            if self.nodes[one as usize].connected.remove(&other) {
                let peer = self.nodes[other as usize].peer_id;
                let effects = self.nodes[one as usize]
                    .state
                    .handle(Input::ConnectionClosed { peer }, now);
                self.apply(one, effects);
            }
        }
    }

    /// The node whose address `addr` names.
    fn node_at(&self, addr: &Multiaddr) -> Option<NodeId> {
        addr.iter().find_map(|protocol| match protocol {
            libp2p::multiaddr::Protocol::P2p(peer) => self.node_of(&peer),
            _ => None,
        })
    }

    /// Each node pings `pings` random connections per round for `rounds` rounds, and sends its
    /// status to its neighbours every `status_every` rounds; each ping moves the node's
    /// coordinate through its core, against the peer's coordinate from its last status.
    pub(crate) fn settle_coordinates(
        &mut self,
        rounds: usize,
        pings: usize,
        status_every: usize,
        rng: &mut Pcg64,
    ) {
        for round in 0..rounds {
            if round % status_every.max(1) == 0 {
                self.exchange_statuses();
            }
            for u in 0..self.nodes.len() {
                let connected: Vec<NodeId> = self.nodes[u].connected.iter().copied().collect();
                if connected.is_empty() {
                    continue;
                }
                for _ in 0..pings {
                    let v = connected[rng.random_range(0..connected.len())];
                    let rtt_us = self.rtt_us(u as NodeId, v);
                    let peer = self.nodes[v as usize].peer_id;
                    let now = self.instant(self.now_us);
                    let effects = self.nodes[u]
                        .state
                        .handle(Input::Pinged { peer, rtt_us }, now);
                    self.apply(u as NodeId, effects);
                }
            }
        }
        self.exchange_statuses();
    }

    /// Every node sends its status to each neighbour, and the statuses are delivered.
    pub(crate) fn exchange_statuses(&mut self) {
        for u in 0..self.nodes.len() {
            for peer in self.nodes[u].state.peers.neighbours() {
                if let Some(v) = self.node_of(&peer) {
                    self.send_status(u as NodeId, v);
                }
            }
        }
        let until = self.now_us + 1_000_000;
        self.run_until(until);
    }

    /// Neighbours per node (connected, statuses both ways), mean.
    pub(crate) fn mean_neighbours(&self) -> f64 {
        let total: usize = self
            .nodes
            .iter()
            .map(|node| node.state.peers.neighbours().len())
            .sum();
        total as f64 / self.nodes.len().max(1) as f64
    }

    /// Connections of each node.
    pub(crate) fn connections(&self) -> Vec<f64> {
        self.nodes
            .iter()
            .map(|node| node.connected.len() as f64)
            .collect()
    }

    /// Connections per node, mean.
    pub(crate) fn mean_connections(&self) -> f64 {
        let total: usize = self.nodes.iter().map(|node| node.connected.len()).sum();
        total as f64 / self.nodes.len().max(1) as f64
    }
}
