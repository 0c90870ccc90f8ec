//! What each node sent and received while a scenario's load ran, per node per second and by
//! kind: each node's own counts (`wasmesh_node::metrics::Traffic`: statuses, manifest gossip
//! with every copy, sync, holder lookups, blobs, forwarded requests, and libp2p's transport
//! bytes), and the relays' packets and bytes, which see every UDP datagram between nodes
//! (control and data plane).

use std::time::Instant;

use serde::Serialize;
use wasmesh_node::metrics::{Traffic, TrafficCount};

use crate::cluster::Cluster;

/// The counts at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// Per node; `None` for a node that is not running.
    nodes: Vec<Option<Traffic>>,
    relay_packets: u64,
    relay_bytes: u64,
}

impl Snapshot {
    /// The counts of every running node and of the relays now.
    pub fn take(cluster: &Cluster) -> Self {
        let (relay_packets, relay_bytes) = cluster.delivered();
        Self {
            at: Instant::now(),
            nodes: (0..cluster.len())
                .map(|i| cluster.node(i).map(|node| node.metrics().traffic()))
                .collect(),
            relay_packets,
            relay_bytes,
        }
    }
}

/// One kind of traffic, per node per second (the mean over the nodes that ran throughout).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficRow {
    /// What moved.
    pub kind: String,
    /// Bytes received.
    pub received_bytes_per_s: f64,
    /// Bytes sent.
    pub sent_bytes_per_s: f64,
    /// Messages received (gossip: every copy).
    pub received_messages_per_s: f64,
    /// Messages sent.
    pub sent_messages_per_s: f64,
}

/// The traffic of a run, per node per second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficReport {
    /// Seconds the counts cover.
    pub seconds: f64,
    /// Nodes that ran throughout (the means are over them).
    pub nodes: usize,
    /// By kind.
    pub rows: Vec<TrafficRow>,
    /// Datagrams the relays delivered, per node per second.
    pub relay_packets_per_node_s: f64,
    /// Bytes the relays delivered, per node per second.
    pub relay_bytes_per_node_s: f64,
}

impl TrafficReport {
    /// The rates between two snapshots.
    pub fn between(start: &Snapshot, end: &Snapshot) -> Self {
        let seconds = end.at.duration_since(start.at).as_secs_f64().max(1e-3);
        // Per node that ran throughout: its counts by kind, at the start and at the end.
        let pairs: Vec<_> = start
            .nodes
            .iter()
            .zip(&end.nodes)
            .filter_map(|(a, b)| Some((a.as_ref()?.by_kind(), b.as_ref()?.by_kind())))
            .collect();
        let nodes = pairs.len();
        let per_node_s = |total: u64| total as f64 / nodes.max(1) as f64 / seconds;
        let rows = Traffic::default()
            .by_kind()
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let sum = |field: fn(&TrafficCount) -> u64| {
                    pairs
                        .iter()
                        .map(|(a, b)| field(&b[k].1).saturating_sub(field(&a[k].1)))
                        .sum::<u64>()
                };
                TrafficRow {
                    kind: (*name).to_owned(),
                    received_bytes_per_s: per_node_s(sum(|c| c.received_bytes)),
                    sent_bytes_per_s: per_node_s(sum(|c| c.sent_bytes)),
                    received_messages_per_s: per_node_s(sum(|c| c.received_messages)),
                    sent_messages_per_s: per_node_s(sum(|c| c.sent_messages)),
                }
            })
            .collect();
        let relay_nodes = end.nodes.iter().flatten().count().max(1) as f64;
        Self {
            seconds,
            nodes,
            rows,
            relay_packets_per_node_s: end.relay_packets.saturating_sub(start.relay_packets) as f64
                / relay_nodes
                / seconds,
            relay_bytes_per_node_s: end.relay_bytes.saturating_sub(start.relay_bytes) as f64
                / relay_nodes
                / seconds,
        }
    }

    /// A readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "traffic per node per second over {:.1} s ({} nodes): relays {:.0} packets, {:.1} KB\n",
            self.seconds,
            self.nodes,
            self.relay_packets_per_node_s,
            self.relay_bytes_per_node_s / 1e3
        );
        let _ = writeln!(
            out,
            "  {:<17} {:>10} {:>10} {:>9} {:>9}",
            "kind", "KB in", "KB out", "msgs in", "msgs out"
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "  {:<17} {:>10.2} {:>10.2} {:>9.1} {:>9.1}",
                row.kind,
                row.received_bytes_per_s / 1e3,
                row.sent_bytes_per_s / 1e3,
                row.received_messages_per_s,
                row.sent_messages_per_s
            );
        }
        out
    }
}
