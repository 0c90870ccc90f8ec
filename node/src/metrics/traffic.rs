//! The node's traffic by kind, from its own counters and libp2p's, and the requests through
//! the gateway per route for the live page.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{Direction, Flow, Metrics, TrafficKind};

/// Bytes and messages of one kind of traffic, both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCount {
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Messages sent.
    pub sent_messages: u64,
    /// Messages received (gossip: every copy, duplicates included).
    pub received_messages: u64,
}

/// A node's traffic so far, by kind (see [`Metrics::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Statuses to and from connected peers, with their answers.
    pub status: TrafficCount,
    /// Manifest gossip (message bodies, every copy).
    pub manifest: TrafficCount,
    /// Sync and peer exchange.
    pub sync: TrafficCount,
    /// Holder announcements and lookups to directory nodes.
    pub holders: TrafficCount,
    /// Blobs.
    pub blob: TrafficCount,
    /// Forwarded requests.
    pub invoke: TrafficCount,
    /// Everything on libp2p connections, framing, encryption and gossip control included
    /// (bytes only).
    pub control_plane: TrafficCount,
}

impl Traffic {
    /// Each kind with its name, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, TrafficCount); 7] {
        [
            ("status", self.status),
            ("manifest", self.manifest),
            ("sync", self.sync),
            ("holders", self.holders),
            ("blob", self.blob),
            ("invoke", self.invoke),
            ("libp2p transport", self.control_plane),
        ]
    }
}

impl Metrics {
    /// The node's traffic so far, by kind: its own counts (status, sync, holders, blobs,
    /// forwarded requests), and libp2p's (manifest gossip, the transport's bytes), read from the
    /// exposition.
    pub fn traffic(&self) -> Traffic {
        let own = |kind| {
            let get = |family: &Family<Flow, Counter>, direction| {
                family.get_or_create(&Flow { kind, direction }).get()
            };
            TrafficCount {
                sent_bytes: get(&self.traffic_bytes, Direction::Sent),
                received_bytes: get(&self.traffic_bytes, Direction::Received),
                sent_messages: get(&self.traffic_messages, Direction::Sent),
                received_messages: get(&self.traffic_messages, Direction::Received),
            }
        };
        let text = self.encode();
        let gossip = |topic: &str| {
            let label = format!("\"{topic}\"");
            TrafficCount {
                sent_bytes: sum_of(&text, "_topic_msg_sent_bytes_total{", &label),
                received_bytes: sum_of(&text, "_topic_msg_recv_bytes_unfiltered_total{", &label),
                sent_messages: sum_of(&text, "_topic_msg_sent_counts_total{", &label),
                received_messages: sum_of(
                    &text,
                    "_topic_msg_recv_counts_unfiltered_total{",
                    &label,
                ),
            }
        };
        Traffic {
            status: own(TrafficKind::Status),
            manifest: gossip(wasmesh_protocol::wire::MANIFEST_TOPIC),
            sync: own(TrafficKind::Sync),
            holders: own(TrafficKind::Holders),
            blob: own(TrafficKind::Blob),
            invoke: own(TrafficKind::Invoke),
            control_plane: TrafficCount {
                sent_bytes: sum_of(&text, "_bandwidth_bytes_total{", "direction=\"Outbound\""),
                received_bytes: sum_of(&text, "_bandwidth_bytes_total{", "direction=\"Inbound\""),
                ..TrafficCount::default()
            },
        }
    }
}

/// The sum of the samples of the exposition `text` whose line holds `metric` (the end of a
/// metric's name and the opening brace of its labels) and `label`.
fn sum_of(text: &str, metric: &str, label: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(metric) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}
