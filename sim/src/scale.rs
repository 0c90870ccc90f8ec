//! The scale model: a seeded discrete-event simulation of manifest gossip and request routing
//! over thousands of nodes, with the node's own parameters.
//!
//! - Placement: each node near a random city of the built-in list; delays from the geographic
//!   model of [`crate::latency`].
//! - Connections: each node dials `wasmesh_node::control::MAX_DIALED_PEERS` random peers (as
//!   peer exchange does); links are two-way.
//! - Gossip: gossipsub with the node's heartbeat and the library's defaults (read from
//!   `gossipsub::Config::default()`): a symmetric mesh of `mesh_n` (at most `mesh_n_high`) per
//!   node, flood publishing by the origin, eager forwarding to the mesh, and at each heartbeat
//!   IHAVE to `max(gossip_lazy, gossip_factor x others)` non-mesh peers for messages of the last
//!   `history_gossip` heartbeats, answered by IWANT and the message. Each receipt costs a
//!   signature check before forwarding.
//! - Coordinates: each node pings random connections for a while and moves its network
//!   coordinate (`wasmesh_protocol::coordinates`), as the node does with every ping.
//! - Routing: for sampled requests, the entry knows the holders among its neighbours (their
//!   statuses, measured round trips) and those the blob's directory names: the
//!   `HOLDERS_WANTED` nearest to the entry's coordinate (`wasmesh_protocol::holders::nearest`)
//!   among the first `MAX_HOLDERS_PER_BLOB` that announced. It plans with
//!   `wasmesh_protocol::routing::plan`, the node's own function: measured round trips for
//!   neighbours, coordinate estimates for the others; the holders the plan says to probe are
//!   measured and the request planned again, as the node's first requests do. The oracle knows
//!   every holder and every round trip.
//! - Lookups: the [`kademlia`](crate::kademlia) model counts the requests of a closest-peer
//!   lookup at this size, for the control plane's traffic.
//!
//! Time is integer microseconds and every choice comes from one seeded generator, so a seed
//! gives the same report everywhere; only `wall_ms` varies.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use libp2p::gossipsub;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use serde::Serialize;
use wasmesh_node::core::directory::MAX_HOLDERS_PER_BLOB;
use wasmesh_node::core::holder_search::{DIRECTORY_REPLICAS, HOLDERS_WANTED};
use wasmesh_protocol::coordinates::{Coordinate, DIMENSIONS};
use wasmesh_protocol::holders;
use wasmesh_protocol::routing::{self, Holder};

use crate::control_traffic::ControlTraffic;
use crate::kademlia::Dht;
use crate::latency::{UnitVector, random_position};
use crate::report::{Percentiles, round3};

/// Cost of checking a manifest's signature before forwarding it (measured: 77 us).
const VALIDATE_US: u64 = 80;
/// Rounds of coordinate updates before routing, and pings per node per round: about what a node
/// has after a few minutes of pinging (every 5 s) its connections.
const COORDINATE_ROUNDS: usize = 64;
const PINGS_PER_ROUND: usize = 8;
/// Execution slots per node and mean execution time, as the router sees them.
const CAPACITY: u32 = 2;
const MEAN_EXEC_US: u64 = 1_000;
/// Kademlia lookups sampled for their cost.
const LOOKUP_SAMPLES: usize = 200;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct ScaleParams {
    /// Nodes.
    pub nodes: usize,
    /// Seed of every choice.
    pub seed: u64,
    /// Manifests published (from random origins), one after the other.
    pub publishes: usize,
    /// Routed requests sampled.
    pub requests: usize,
    /// Nodes holding the routed module.
    pub holders: usize,
    /// Modules each node reports ready in its status (for the control plane's traffic).
    pub modules: usize,
}

impl ScaleParams {
    /// Defaults for `nodes` nodes: 8 publishes, 10,000 requests, 2% of the nodes (at least 3)
    /// as holders, 100 modules ready on every node.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            publishes: 8,
            requests: 10_000,
            holders: (nodes / 50).max(3).min(nodes),
            modules: 100,
        }
    }
}

/// The gossip parameters used.
#[derive(Debug, Clone, Serialize)]
pub struct GossipParams {
    /// Connections each node dials.
    pub dialed_per_node: usize,
    /// Mean connections per node (dialed and accepted).
    pub mean_connections: f64,
    /// Mesh degree target and bound.
    pub mesh_n: usize,
    /// Upper mesh bound.
    pub mesh_n_high: usize,
    /// Least IHAVE targets per heartbeat.
    pub gossip_lazy: usize,
    /// Share of non-mesh peers gossiped to.
    pub gossip_factor: f64,
    /// Heartbeats a message is gossiped for.
    pub history_gossip: usize,
    /// Heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// Signature check per hop, microseconds.
    pub validate_us: u64,
}

/// Routing against the oracle.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingFigures {
    /// Requests sampled.
    pub requests: usize,
    /// Holders of the module.
    pub holders: usize,
    /// Share of requests routed where the oracle would.
    pub oracle_fraction: f64,
    /// (chosen round trip + execution) / (oracle round trip + execution).
    pub stretch: Percentiles,
    /// Round trip paid beyond the oracle's, milliseconds.
    pub extra_rtt_ms: Percentiles,
    /// Share of requests whose entry had a measured round trip to at least one holder.
    pub measured_fraction: f64,
    /// Relative error of round trips estimated from coordinates (entry to an unconnected
    /// holder, one per request).
    pub estimate_error: Percentiles,
    /// Holders the entry measured because the plan named them, per request (mean).
    pub probed_mean: f64,
    /// Holders the entry knew of (neighbours' statuses and the directory's answer), mean.
    pub known_mean: f64,
}

/// Messages per node per publish.
#[derive(Debug, Clone, Serialize)]
pub struct MessageFigures {
    /// Full copies received (first and duplicates), mean.
    pub copies_mean: f64,
    /// Full copies received, percentiles.
    pub copies: Percentiles,
    /// IHAVE announcements received, mean.
    pub ihave_mean: f64,
    /// Copies that arrived by IWANT (gossip repair) rather than eager push, share.
    pub via_gossip_fraction: f64,
}

/// The scale model's report.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Publishes simulated.
    pub publishes: usize,
    /// Parameters.
    pub gossip: GossipParams,
    /// Publish until a node has the manifest, over all publishes and nodes.
    pub propagation_ms: Percentiles,
    /// Share of nodes reached (1 unless the mesh is cut).
    pub reached_fraction: f64,
    /// `(ms, share of nodes)` points of the propagation CDF, one per percent.
    pub propagation_cdf: Vec<(f64, f64)>,
    /// Messages.
    pub messages_per_node: MessageFigures,
    /// Routing, knowing the holders this version knows (neighbours and the directory).
    pub routing: RoutingFigures,
    /// Routing over the same requests knowing every holder, as version 1's flooded statuses
    /// told every node: the baseline.
    pub routing_every_holder_known: RoutingFigures,
    /// What one node receives per second on the control plane.
    pub control_plane: ControlTraffic,
    /// Wall-clock run time (the only figure that varies between runs of a seed).
    pub wall_ms: u64,
}

impl ScaleReport {
    /// A readable summary of the figures.
    pub fn summary(&self) -> String {
        let (nodes, seed, publishes) = (self.nodes, self.seed, self.publishes);
        let connections = self.gossip.mean_connections;
        let mesh = self.gossip.mesh_n;
        let p = &self.propagation_ms;
        let reached = self.reached_fraction;
        let m = &self.messages_per_node;
        let (copies, copies_p99, ihave) = (m.copies_mean, m.copies.p99, m.ihave_mean);
        let repaired = m.via_gossip_fraction * 100.0;
        let wall_ms = self.wall_ms;
        [
            format!(
                "scale model: {nodes} nodes, seed {seed}, {publishes} publishes, \
                 {connections:.0} connections per node (mesh {mesh})"
            ),
            format!(
                "propagation: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
                 reached {reached:.3}",
                p.p50, p.p95, p.p99, p.max
            ),
            format!(
                "messages per node per publish: {copies:.2} copies (p99 {copies_p99}), \
                 {ihave:.1} IHAVE; {repaired:.1}% repaired by gossip"
            ),
            self.routing.summary(),
            format!(
                "baseline, every holder known: {}",
                self.routing_every_holder_known.summary()
            ),
            self.control_plane.summary(),
            format!("wall time {wall_ms} ms"),
        ]
        .join("\n")
    }
}

impl RoutingFigures {
    /// One line of the routing figures.
    fn summary(&self) -> String {
        let (requests, holders, oracle) = (self.requests, self.holders, self.oracle_fraction);
        let (s, x) = (&self.stretch, &self.extra_rtt_ms);
        let error = self.estimate_error.p50 * 100.0;
        let probed = self.probed_mean;
        format!(
            "routing ({requests} requests, {holders} holders): oracle fraction {oracle:.3}; \
             stretch p50 {:.3}, p95 {:.3}, p99 {:.3}; extra round trip p50 {:.1} ms, \
             p95 {:.1} ms; coordinate estimate error p50 {error:.1}%; \
             {known:.1} holders known and {probed:.1} probed per entry",
            s.p50,
            s.p95,
            s.p99,
            x.p50,
            x.p95,
            known = self.known_mean,
        )
    }
}

/// The simulated mesh.
struct World {
    positions: Vec<UnitVector>,
    coordinates: Vec<Coordinate>,
    connections: Vec<Vec<u32>>,
    mesh: Vec<Vec<u32>>,
    /// Heartbeat phase per node, microseconds.
    phase: Vec<u64>,
}

impl World {
    fn one_way_us(&self, a: u32, b: u32) -> u64 {
        (self.positions[a as usize].one_way_ms(&self.positions[b as usize]) * 1000.0).round() as u64
    }

    fn build(params: &ScaleParams, gossip: &GossipParams, rng: &mut Pcg64) -> Self {
        let n = params.nodes;
        let positions: Vec<UnitVector> = (0..n)
            .map(|_| UnitVector::from(random_position(rng).1))
            .collect();
        let mut connections: Vec<Vec<u32>> = vec![Vec::new(); n];
        let dial = gossip.dialed_per_node.min(n.saturating_sub(1));
        for u in 0..n {
            let mut dialed = 0;
            let mut attempts = 0;
            while dialed < dial && attempts < dial * 8 {
                attempts += 1;
                let v = rng.random_range(0..n);
                if v == u || connections[u].contains(&(v as u32)) {
                    continue;
                }
                connections[u].push(v as u32);
                connections[v].push(u as u32);
                dialed += 1;
            }
        }
        let mut mesh: Vec<Vec<u32>> = vec![Vec::new(); n];
        for u in 0..n {
            let mut attempts = 0;
            while mesh[u].len() < gossip.mesh_n && attempts < gossip.mesh_n * 8 {
                attempts += 1;
                let Some(&v) = connections[u].get(rng.random_range(0..connections[u].len().max(1)))
                else {
                    break;
                };
                let vi = v as usize;
                if mesh[u].contains(&v) || mesh[vi].len() >= gossip.mesh_n_high {
                    continue;
                }
                mesh[u].push(v);
                mesh[vi].push(u as u32);
            }
        }
        let heartbeat_us = gossip.heartbeat_ms * 1000;
        let phase = (0..n).map(|_| rng.random_range(0..heartbeat_us)).collect();
        let mut world = Self {
            positions,
            coordinates: vec![Coordinate::default(); n],
            connections,
            mesh,
            phase,
        };
        world.settle_coordinates(rng);
        world
    }

    /// Round trip (the geographic model is symmetric).
    fn rtt_us(&self, a: u32, b: u32) -> u64 {
        if a == b { 0 } else { 2 * self.one_way_us(a, b) }
    }

    /// Each node pings random connections and moves its coordinate, as the node does.
    fn settle_coordinates(&mut self, rng: &mut Pcg64) {
        for _ in 0..COORDINATE_ROUNDS {
            for u in 0..self.positions.len() {
                if self.connections[u].is_empty() {
                    continue;
                }
                for _ in 0..PINGS_PER_ROUND {
                    let v = self.connections[u][rng.random_range(0..self.connections[u].len())];
                    let rtt_ms = self.rtt_us(u as u32, v) as f64 / 1000.0;
                    let direction: [f64; DIMENSIONS] =
                        std::array::from_fn(|_| rng.random::<f64>() - 0.5);
                    let theirs = self.coordinates[v as usize];
                    let _ = self.coordinates[u].observe(&theirs, rtt_ms, &direction);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A full copy arrives at `to` from `from`.
    Copy,
    /// `from`'s heartbeat: gossip what it got recently.
    Heartbeat,
    /// An IHAVE from `from` arrives at `to`.
    Ihave,
}

/// Something that happens at `at` (microseconds); `seq` keeps equal times in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: u64,
    seq: u64,
    kind: Kind,
    from: u32,
    to: u32,
}

/// The event queue, earliest first.
#[derive(Default)]
struct Events {
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
}

impl Events {
    fn push(&mut self, at: u64, kind: Kind, from: u32, to: u32) {
        self.seq += 1;
        self.heap.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
            from,
            to,
        }));
    }

    fn pop(&mut self) -> Option<Event> {
        self.heap.pop().map(|Reverse(event)| event)
    }

    /// Queues the heartbeats at which `node` gossips a message it got at `at`.
    fn heartbeats(&mut self, world: &World, gossip: &GossipParams, node: u32, at: u64) {
        let heartbeat = gossip.heartbeat_ms * 1000;
        let phase = world.phase[node as usize];
        let next = if at <= phase {
            phase
        } else {
            phase + (at - phase).div_ceil(heartbeat) * heartbeat
        };
        for k in 0..gossip.history_gossip as u64 {
            self.push(next + k * heartbeat, Kind::Heartbeat, node, node);
        }
    }
}

/// One publish: who got it when, and the message counts.
struct Spread {
    arrival: Vec<Option<u64>>,
    copies: Vec<u32>,
    ihaves: Vec<u32>,
    via_gossip: usize,
}

fn spread(world: &World, gossip: &GossipParams, origin: u32, rng: &mut Pcg64) -> Spread {
    let n = world.positions.len();
    let mut arrival: Vec<Option<u64>> = vec![None; n];
    let mut copies = vec![0u32; n];
    let mut ihaves = vec![0u32; n];
    let mut via_gossip = 0;
    let mut wanted = vec![false; n];
    let mut events = Events::default();
    // The origin has it at 0 and floods it to every connection.
    arrival[origin as usize] = Some(0);
    for &v in &world.connections[origin as usize] {
        events.push(world.one_way_us(origin, v), Kind::Copy, origin, v);
    }
    events.heartbeats(world, gossip, origin, 0);
    while let Some(Event {
        at, kind, from, to, ..
    }) = events.pop()
    {
        match kind {
            Kind::Copy => {
                let t = to as usize;
                copies[t] += 1;
                if arrival[t].is_some() {
                    continue;
                }
                if wanted[t] {
                    via_gossip += 1;
                }
                let ready = at + VALIDATE_US;
                arrival[t] = Some(ready);
                for &v in &world.mesh[t] {
                    if v != from {
                        events.push(ready + world.one_way_us(to, v), Kind::Copy, to, v);
                    }
                }
                events.heartbeats(world, gossip, to, ready);
            }
            Kind::Heartbeat => {
                let u = from as usize;
                let others: Vec<u32> = world.connections[u]
                    .iter()
                    .copied()
                    .filter(|v| !world.mesh[u].contains(v))
                    .collect();
                let count = gossip
                    .gossip_lazy
                    .max((gossip.gossip_factor * others.len() as f64) as usize)
                    .min(others.len());
                for _ in 0..count {
                    let v = others[rng.random_range(0..others.len())];
                    events.push(at + world.one_way_us(from, v), Kind::Ihave, from, v);
                }
            }
            Kind::Ihave => {
                let t = to as usize;
                ihaves[t] += 1;
                if arrival[t].is_none() && !wanted[t] {
                    // IWANT back, then the copy.
                    wanted[t] = true;
                    let back = world.one_way_us(to, from) + world.one_way_us(from, to);
                    events.push(at + back, Kind::Copy, from, to);
                }
            }
        }
    }
    Spread {
        arrival,
        copies,
        ihaves,
        via_gossip,
    }
}

/// Runs the model.
pub fn run(params: &ScaleParams) -> ScaleReport {
    let wall = std::time::Instant::now();
    let defaults = gossipsub::Config::default();
    let gossip = GossipParams {
        dialed_per_node: wasmesh_node::control::MAX_DIALED_PEERS,
        mean_connections: 0.0,
        mesh_n: defaults.mesh_n(),
        mesh_n_high: defaults.mesh_n_high(),
        gossip_lazy: defaults.gossip_lazy(),
        gossip_factor: defaults.gossip_factor(),
        history_gossip: defaults.history_gossip(),
        heartbeat_ms: wasmesh_node::control::HEARTBEAT.as_millis() as u64,
        validate_us: VALIDATE_US,
    };
    let mut rng = Pcg64::seed_from_u64(params.seed);
    let world = World::build(params, &gossip, &mut rng);
    let gossip = GossipParams {
        mean_connections: round3(
            world.connections.iter().map(Vec::len).sum::<usize>() as f64
                / params.nodes.max(1) as f64,
        ),
        ..gossip
    };

    let mut times_ms = Vec::new();
    let mut copies = Vec::new();
    let mut ihaves = 0u64;
    let mut via_gossip = 0usize;
    let mut unreached = 0usize;
    for _ in 0..params.publishes {
        let origin = rng.random_range(0..params.nodes) as u32;
        let result = spread(&world, &gossip, origin, &mut rng);
        for (node, at) in result.arrival.iter().enumerate() {
            match at {
                Some(us) if node != origin as usize => times_ms.push(*us as f64 / 1000.0),
                Some(_) => {}
                None => unreached += 1,
            }
        }
        copies.extend(result.copies.iter().map(|&c| f64::from(c)));
        ihaves += result.ihaves.iter().map(|&c| u64::from(c)).sum::<u64>();
        via_gossip += result.via_gossip;
    }
    let total = (params.nodes * params.publishes).max(1) as f64;
    times_ms.sort_by(f64::total_cmp);
    let propagation_cdf = (1..=100)
        .filter_map(|pct| {
            let index = (pct * times_ms.len()).div_ceil(100).checked_sub(1)?;
            times_ms
                .get(index)
                .map(|ms| (round3(*ms), f64::from(pct as u32) / 100.0))
        })
        .collect();
    let received = times_ms.len().max(1) as f64;
    let messages_per_node = MessageFigures {
        copies_mean: round3(copies.iter().sum::<f64>() / total),
        copies: Percentiles::of(&copies),
        ihave_mean: round3(ihaves as f64 / total),
        via_gossip_fraction: round3(via_gossip as f64 / received),
    };
    // Its own generator, so that the routing samples do not depend on it.
    let mut lookup_rng = Pcg64::seed_from_u64(params.seed.rotate_left(17) ^ 0x6b61_646d);
    let dht = Dht::new(params.nodes, &mut lookup_rng);
    let lookup_requests = (0..LOOKUP_SAMPLES)
        .map(|_| {
            let from = dht.random_node(&mut lookup_rng);
            dht.lookup_requests(from, lookup_rng.random(), DIRECTORY_REPLICAS)
        })
        .sum::<usize>() as f64
        / LOOKUP_SAMPLES as f64;
    let control_plane = ControlTraffic::estimate(
        params.nodes,
        params.modules,
        gossip.mean_connections,
        lookup_requests,
    );
    ScaleReport {
        nodes: params.nodes,
        seed: params.seed,
        publishes: params.publishes,
        propagation_ms: Percentiles::of(&times_ms),
        reached_fraction: round3(1.0 - unreached as f64 / total),
        propagation_cdf,
        messages_per_node,
        routing: route(&world, params, &mut rng.clone(), Knowledge::Directory),
        routing_every_holder_known: route(&world, params, &mut rng, Knowledge::Everything),
        control_plane,
        gossip,
        wall_ms: wall.elapsed().as_millis() as u64,
    }
}

/// Which holders an entry knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Knowledge {
    /// Those among its neighbours, and the directory's nearest.
    Directory,
    /// Every holder.
    Everything,
}

/// Samples requests and routes each with the node's policy and with the oracle.
fn route(
    world: &World,
    params: &ScaleParams,
    rng: &mut Pcg64,
    knowledge: Knowledge,
) -> RoutingFigures {
    let n = params.nodes;
    let mut holders: Vec<u32> = Vec::new();
    while holders.len() < params.holders.min(n) {
        let h = rng.random_range(0..n) as u32;
        if !holders.contains(&h) {
            holders.push(h);
        }
    }
    let rtt = |a: u32, b: u32| world.rtt_us(a, b);
    let mut estimate_errors = Vec::new();
    let mut hits = 0usize;
    let mut measured = 0usize;
    let mut stretch = Vec::with_capacity(params.requests);
    let mut extra = Vec::with_capacity(params.requests);
    let mut probed = 0usize;
    let mut known_total = 0usize;
    for _ in 0..params.requests {
        let entry = rng.random_range(0..n) as u32;
        let connected = &world.connections[entry as usize];
        let own = &world.coordinates[entry as usize];
        // The neighbours that hold it, and the directory's nearest; each once.
        let known_ids: Vec<u32> = match knowledge {
            Knowledge::Everything => holders.clone(),
            Knowledge::Directory => {
                let directory = holders.iter().take(MAX_HOLDERS_PER_BLOB).copied();
                let mut ids: Vec<u32> = holders::nearest(
                    own,
                    directory.map(|h| (&world.coordinates[h as usize], h)),
                    usize::from(HOLDERS_WANTED),
                );
                for &h in &holders {
                    if (h == entry || connected.contains(&h)) && !ids.contains(&h) {
                        ids.push(h);
                    }
                }
                ids
            }
        };
        known_total += known_ids.len();
        let mut known: Vec<Holder<u32>> = known_ids
            .iter()
            .map(|&h| Holder {
                id: h,
                local: h == entry,
                measured_rtt_us: connected.contains(&h).then(|| rtt(entry, h)),
                coordinate: Some(world.coordinates[h as usize]),
                in_flight: 0,
                capacity: CAPACITY,
                mean_exec_us: Some(MEAN_EXEC_US),
                down_until_ms: None,
                heard_ms: 0,
            })
            .collect();
        if known.iter().any(|h| h.local || h.measured_rtt_us.is_some()) {
            measured += 1;
        }
        // The estimate to the first holder that is not a neighbour, whatever the entry knows.
        if let Some(&unconnected) = holders
            .iter()
            .find(|&&h| h != entry && !connected.contains(&h))
            && let Some(estimated) =
                routing::estimated_rtt_us(own, Some(&world.coordinates[unconnected as usize]))
        {
            let actual = rtt(entry, unconnected).max(1) as f64;
            estimate_errors.push((estimated as f64 - actual).abs() / actual);
        }
        // As the node does over its first requests: plan, measure the holders the plan names
        // (it connects to them and pings them), plan again, until the plan names none.
        let chosen = loop {
            let plan = routing::plan(&known, own, Some(MEAN_EXEC_US), 0);
            if plan.probe.is_empty() {
                break plan.order.first().copied();
            }
            for holder in known.iter_mut().filter(|h| plan.probe.contains(&h.id)) {
                holder.measured_rtt_us = Some(rtt(entry, holder.id));
                probed += 1;
            }
        };
        let Some(chosen) = chosen else {
            continue;
        };
        let best = holders.iter().map(|&h| rtt(entry, h)).min().unwrap_or(0);
        let got = rtt(entry, chosen);
        if got == best {
            hits += 1;
        }
        stretch.push((got + MEAN_EXEC_US) as f64 / (best + MEAN_EXEC_US) as f64);
        extra.push((got - best) as f64 / 1000.0);
    }
    let requests = params.requests.max(1) as f64;
    RoutingFigures {
        requests: params.requests,
        holders: holders.len(),
        oracle_fraction: round3(hits as f64 / requests),
        stretch: Percentiles::of(&stretch),
        extra_rtt_ms: Percentiles::of(&extra),
        measured_fraction: round3(measured as f64 / requests),
        estimate_error: Percentiles::of(&estimate_errors),
        probed_mean: round3(probed as f64 / requests),
        known_mean: round3(known_total as f64 / requests),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let params = ScaleParams {
            requests: 500,
            publishes: 2,
            ..ScaleParams::new(400, 11)
        };
        let mut a = run(&params);
        let mut b = run(&params);
        a.wall_ms = 0;
        b.wall_ms = 0;
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(a.reached_fraction, 1.0);
        assert!(a.propagation_ms.p50 > 0.0);
        let mut c = run(&ScaleParams { seed: 12, ..params });
        c.wall_ms = 0;
        assert_ne!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&c).unwrap()
        );
    }

    /// Knowing only the neighbours' holders and the directory's nearest, routing is as good as
    /// knowing every holder; the control plane grows slowly with the mesh.
    #[test]
    fn the_directory_routes_as_well_as_knowing_every_holder() {
        let params = ScaleParams {
            requests: 1_000,
            publishes: 1,
            holders: 40,
            ..ScaleParams::new(1_000, 3)
        };
        let report = run(&params);
        let (directory, everything) = (&report.routing, &report.routing_every_holder_known);
        assert!(directory.known_mean < everything.known_mean / 2.0);
        assert!(
            directory.oracle_fraction >= everything.oracle_fraction - 0.05,
            "{} against {}",
            directory.oracle_fraction,
            everything.oracle_fraction
        );
        assert!(directory.stretch.p95 <= everything.stretch.p95 * 1.1);
        let smaller = run(&ScaleParams {
            nodes: 100,
            holders: 3,
            ..params
        });
        let (large, small) = (&report.control_plane, &smaller.control_plane);
        assert!(large.lookup_requests > small.lookup_requests);
        assert!(large.total_bytes_per_s < small.total_bytes_per_s * 1.5);
    }
}
