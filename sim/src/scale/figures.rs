//! The scale model's report: the gossip, formation, directory, routing and control-plane
//! figures, and their summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::control_traffic::ControlTraffic;
use crate::report::Percentiles;

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
    /// Requests that found no place to run.
    pub unrouted: usize,
    /// Share of requests whose entry asked the blob's directory nodes (it knew no holder).
    pub via_directory_fraction: f64,
    /// Share of requests whose entry wanted more holders (it had to forward and knew fewer than
    /// the plan probes): it asks the directory nodes in the background, at most once per
    /// `FIND_AGAIN_AFTER` per blob, and what they name serves later requests.
    pub searched_fraction: f64,
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

/// How the mesh formed, as the nodes' cores formed it.
#[derive(Debug, Clone, Serialize)]
pub struct FormationFigures {
    /// Connections per node, mean.
    pub mean_connections: f64,
    /// Connections per node: a mesh whose nodes all dial the same few peers shows it here.
    pub connections: Percentiles,
    /// The relative error each node's coordinate claims once settled (1.0 and above: not
    /// trusted for routing).
    pub coordinate_error: Percentiles,
    /// Neighbours per node (statuses both ways), mean.
    pub mean_neighbours: f64,
    /// Control-plane messages per node while the mesh formed, by kind.
    pub messages_per_node: BTreeMap<String, f64>,
    /// Peers the cores refused or dropped, by reason.
    pub refusals: BTreeMap<String, u64>,
}

/// The holder directory, as the directory nodes' cores kept it.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryFigures {
    /// Holders whose announcement at least one directory node kept.
    pub announced: usize,
    /// Announcements (or parts of them) refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Messages of announcements, lookups' questions and answers, per holder and request.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
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
    /// How the mesh formed.
    pub formation: FormationFigures,
    /// The holder directory.
    pub directory: DirectoryFigures,
    /// Publish until a node has the manifest, over all publishes and nodes.
    pub propagation_ms: Percentiles,
    /// Share of nodes reached (1 unless the mesh is cut).
    pub reached_fraction: f64,
    /// `(ms, share of nodes)` points of the propagation CDF, one per percent.
    pub propagation_cdf: Vec<(f64, f64)>,
    /// Messages.
    pub messages_per_node: MessageFigures,
    /// Routing by the node's own code, knowing what its core knows (neighbours' statuses, the
    /// directory when no neighbour holds the module).
    pub routing: RoutingFigures,
    /// Routing over the same requests planning over every holder, as a node that heard of
    /// every holder would: the baseline.
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
            format!(
                "formation (the cores' decisions): {:.1} connections and {:.1} neighbours per node",
                self.formation.mean_connections, self.formation.mean_neighbours
            ),
            format!(
                "directory: {} holders announced and kept, {} messages",
                self.directory.announced, self.directory.messages
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
        let directory = self.via_directory_fraction * 100.0;
        format!(
            "routing ({requests} requests, {holders} holders; {directory:.1}% asked the directory, \
             {unrouted} unrouted): oracle fraction {oracle:.3}; \
             stretch p50 {:.3}, p95 {:.3}, p99 {:.3}; extra round trip p50 {:.1} ms, \
             p95 {:.1} ms; coordinate estimate error p50 {error:.1}%; \
             {known:.1} holders known and {probed:.1} probed per entry",
            s.p50,
            s.p95,
            s.p99,
            x.p50,
            x.p95,
            known = self.known_mean,
            unrouted = self.unrouted,
        )
    }
}
