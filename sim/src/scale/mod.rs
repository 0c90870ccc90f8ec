//! The scale model: a seeded discrete-event simulation of thousands of nodes that runs the
//! node's own core for every decision the node makes, and models only what carries them.
//!
//! - [`mesh`]: nodes near random cities join one after the other; their cores
//!   (`NodeState`, with the peer table) decide every dial, peer exchange, neighbour, status and
//!   coordinate; the model opens connections after a round trip of the geographic model
//!   ([`crate::latency`]) and delivers messages after the one-way delay.
//! - [`directory`]: holders announce with the core's `HolderSearch`, directory nodes keep
//!   announcements with the core's `Directory`; Kademlia's closest-peer lookups are libp2p's,
//!   so the model takes their converged result and counts their cost with
//!   [`kademlia`](crate::kademlia).
//! - [`requests`]: requests are routed with the core's `routing::candidates` and
//!   `wasmesh_protocol::routing::plan`, probes measured as the node measures them, against an
//!   oracle that knows every holder and every round trip.
//! - [`gossip`]: manifest gossip with gossipsub's parameters over the connections the cores
//!   made.
//!
//! Time is integer microseconds and every choice comes from one seeded generator; the core's
//! peer table walks its peers in id order, so a seed gives the same report everywhere; only
//! `wall_ms` varies.

mod costs;
mod delivery;
mod directory;
mod figures;
mod gossip;
mod mesh;
mod node;
mod requests;

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::gossipsub;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use wasmesh_node::core::holder_search::DIRECTORY_REPLICAS;
use wasmesh_protocol::ContentHash;

use self::costs::VALIDATE_US;
use self::directory::Directories;
pub use self::figures::{
    DirectoryFigures, FormationFigures, GossipParams, MessageFigures, RoutingFigures, ScaleReport,
};
use self::gossip::Overlay;
use self::mesh::{Mesh, NodeId};
use crate::control_traffic::ControlTraffic;
use crate::kademlia::Dht;
use crate::report::{Percentiles, round3};

/// Rounds of coordinate updates before routing, and pings per node per round: about what a node
/// has after a few minutes of pinging (every 5 s) its connections; statuses (which carry the
/// coordinates the pings are measured against) go out every few rounds.
const COORDINATE_ROUNDS: usize = 64;
const PINGS_PER_ROUND: usize = 8;
const STATUS_EVERY_ROUNDS: usize = 4;
/// Kademlia lookups sampled for their cost.
const LOOKUP_SAMPLES: usize = 200;
/// Progress lines while the mesh forms.
const PROGRESS_STEPS: u64 = 10;

/// Lines on standard error saying how far a run is, with the wall time so far.
struct Progress {
    started: Option<std::time::Instant>,
}

impl Progress {
    fn new(on: bool) -> Self {
        Self {
            started: on.then(std::time::Instant::now),
        }
    }

    fn line(&self, what: std::fmt::Arguments<'_>) {
        if let Some(started) = self.started {
            eprintln!("scale: {what} ({:.1} s)", started.elapsed().as_secs_f64());
        }
    }
}

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
    /// The time over which the nodes join, one after the other.
    pub join: Duration,
    /// The time the mesh runs after the last node joined, before the coordinates settle.
    pub settle: Duration,
    /// Progress lines on standard error.
    pub progress: bool,
}

impl ScaleParams {
    /// Defaults for `nodes` nodes: 8 publishes, 10,000 requests, 2% of the nodes (at least 3)
    /// as holders, 100 modules ready on every node, no progress lines.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            publishes: 8,
            requests: 10_000,
            holders: (nodes / 50).max(3).min(nodes),
            modules: 100,
            join: Duration::from_secs(30),
            settle: Duration::from_secs(30),
            progress: false,
        }
    }
}

/// Runs the model.
pub fn run(params: &ScaleParams) -> ScaleReport {
    let wall = std::time::Instant::now();
    let mut rng = Pcg64::seed_from_u64(params.seed);
    let progress = Progress::new(params.progress);
    let mut mesh = Mesh::new(params.nodes, &mut rng);
    mesh.schedule_joins(params.join, &mut rng);
    let formed_us = (params.join + params.settle).as_micros() as u64;
    for tenth in 1..=PROGRESS_STEPS {
        mesh.run_until(formed_us * tenth / PROGRESS_STEPS);
        progress.line(format_args!(
            "forming the mesh: {:.0} of {:.0} s of model time, {:.1} connections per node",
            mesh.now_us as f64 / 1e6,
            formed_us as f64 / 1e6,
            mesh.mean_connections()
        ));
    }
    mesh.settle_coordinates(
        COORDINATE_ROUNDS,
        PINGS_PER_ROUND,
        STATUS_EVERY_ROUNDS,
        &mut rng,
    );
    progress.line(format_args!("coordinates settled"));
    let formation = formation_figures(&mesh, params.nodes);
    mesh.stop_ticking();

    let blob = ContentHash::of(b"the module the sampled requests call");
    let holders = pick_holders(params, &mut rng);
    for holder in &holders {
        mesh.nodes[*holder as usize].ready = vec![blob];
    }
    // The holders' neighbours learn it from their statuses; the directory nodes from their
    // announcements.
    mesh.exchange_statuses();
    let mut directories = Directories::new(&mesh, blob);
    for holder in &holders {
        directories.announce(&mut mesh, *holder);
    }

    progress.line(format_args!("{} holders announced", holders.len()));
    let gossip = gossip_params(&mesh);
    let overlay = Overlay::new(&mesh, &gossip, &mut rng);
    let publishes = publish_all(&overlay, &gossip, params, &mut rng);
    progress.line(format_args!("{} manifests gossiped", params.publishes));
    let (routing, routing_every_holder_known) = requests::route_all(
        &mut mesh,
        &mut directories,
        blob,
        &holders,
        params.requests,
        &mut rng,
    );
    let directory = DirectoryFigures {
        announced: directories.announced,
        refused: stringify(&directories.refused),
        messages: directories.messages,
        bytes: directories.bytes,
    };
    ScaleReport {
        nodes: params.nodes,
        seed: params.seed,
        publishes: params.publishes,
        propagation_ms: publishes.propagation_ms,
        reached_fraction: publishes.reached_fraction,
        propagation_cdf: publishes.propagation_cdf,
        messages_per_node: publishes.messages,
        control_plane: control_plane(params, gossip.mean_connections, formation.mean_neighbours),
        formation,
        directory,
        routing,
        routing_every_holder_known,
        gossip,
        wall_ms: wall.elapsed().as_millis() as u64,
    }
}

/// The holders of the routed module: a random `params.holders` of the nodes.
fn pick_holders(params: &ScaleParams, rng: &mut Pcg64) -> Vec<NodeId> {
    let n = params.nodes;
    let mut holders: Vec<NodeId> = Vec::new();
    while holders.len() < params.holders.min(n) {
        let h = rng.random_range(0..n) as NodeId;
        if !holders.contains(&h) {
            holders.push(h);
        }
    }
    holders
}

/// How the mesh formed: connections and neighbours per node, what the control plane carried
/// per node meanwhile, and what the cores refused.
fn formation_figures(mesh: &Mesh, nodes: usize) -> FormationFigures {
    let per_node = |count: u64| round3(count as f64 / nodes.max(1) as f64);
    FormationFigures {
        mean_connections: round3(mesh.mean_connections()),
        connections: Percentiles::of(&mesh.connections()),
        coordinate_error: Percentiles::of(
            &mesh
                .nodes
                .iter()
                .map(|node| round3(node.coordinate().error))
                .collect::<Vec<_>>(),
        ),
        mean_neighbours: round3(mesh.mean_neighbours()),
        messages_per_node: mesh
            .carried
            .messages
            .iter()
            .map(|(kind, count)| ((*kind).to_owned(), per_node(*count)))
            .collect(),
        refusals: stringify(&mesh.refusals),
    }
}

fn stringify(counts: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(reason, count)| ((*reason).to_owned(), *count))
        .collect()
}

/// Gossipsub's parameters as the node sets them, over the mesh's connections.
fn gossip_params(mesh: &Mesh) -> GossipParams {
    let defaults = gossipsub::Config::default();
    GossipParams {
        dialed_per_node: wasmesh_node::control::MAX_DIALED_PEERS,
        mean_connections: round3(mesh.mean_connections()),
        mesh_n: defaults.mesh_n(),
        mesh_n_high: defaults.mesh_n_high(),
        gossip_lazy: defaults.gossip_lazy(),
        gossip_factor: defaults.gossip_factor(),
        history_gossip: defaults.history_gossip(),
        heartbeat_ms: wasmesh_node::control::HEARTBEAT.as_millis() as u64,
        validate_us: VALIDATE_US,
    }
}

/// What the publishes gave.
struct Publishes {
    propagation_ms: Percentiles,
    reached_fraction: f64,
    propagation_cdf: Vec<(f64, f64)>,
    messages: MessageFigures,
}

/// Gossips `params.publishes` manifests from random origins.
fn publish_all(
    overlay: &Overlay,
    gossip: &GossipParams,
    params: &ScaleParams,
    rng: &mut Pcg64,
) -> Publishes {
    let mut times_ms = Vec::new();
    let mut copies = Vec::new();
    let (mut ihaves, mut via_gossip, mut unreached) = (0u64, 0usize, 0usize);
    for _ in 0..params.publishes {
        let origin = rng.random_range(0..params.nodes) as u32;
        let result = gossip::spread(overlay, gossip, origin, rng);
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
    Publishes {
        propagation_ms: Percentiles::of(&times_ms),
        reached_fraction: round3(1.0 - unreached as f64 / total),
        propagation_cdf,
        messages: MessageFigures {
            copies_mean: round3(copies.iter().sum::<f64>() / total),
            copies: Percentiles::of(&copies),
            ihave_mean: round3(ihaves as f64 / total),
            via_gossip_fraction: round3(via_gossip as f64 / received),
        },
    }
}

/// What one node receives per second on the control plane, with the neighbours the cores chose
/// and the cost of a Kademlia lookup at this size.
fn control_plane(params: &ScaleParams, connections: f64, neighbours: f64) -> ControlTraffic {
    // Its own generator, so that the other samples do not depend on it.
    let mut lookup_rng = Pcg64::seed_from_u64(params.seed.rotate_left(17) ^ 0x6b61_646d);
    let dht = Dht::new(params.nodes, &mut lookup_rng);
    let lookup_requests = (0..LOOKUP_SAMPLES)
        .map(|_| {
            let from = dht.random_node(&mut lookup_rng);
            dht.lookup_requests(from, lookup_rng.random(), DIRECTORY_REPLICAS)
        })
        .sum::<usize>() as f64
        / LOOKUP_SAMPLES as f64;
    ControlTraffic::estimate(
        params.nodes,
        params.modules,
        neighbours,
        connections,
        lookup_requests,
    )
}

#[cfg(test)]
mod tests;
