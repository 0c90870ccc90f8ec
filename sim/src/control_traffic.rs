//! The control plane's traffic per node as the mesh grows: what one node of this version
//! receives per second, from the gossip figures the scale model measures (full copies and
//! IHAVE announcements per message per node) and the node's own parameters and message sizes
//! (real encodings of a status and of a peer-exchange answer).
//!
//! Every node gossips its status every `STATUS_INTERVAL` to the whole mesh, so each node
//! receives `nodes / interval` statuses per second, each about `copies` times, and an IHAVE
//! for it from about `ihave` peers. Pings and peer exchange are per connection and do not grow
//! with the mesh. Gossipsub's heartbeat control (GRAFT, PRUNE) and identify are left out: they
//! are per connection and small.

use serde::Serialize;
use wasmesh_node::config::STATUS_INTERVAL;
use wasmesh_node::control::{PEER_EXCHANGE_EVERY, PING_EVERY};
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{
    MAX_STATUS_BLOBS, MAX_SYNC_PEERS, PeerRecord, StatusMessage, SyncRequest, SyncResponse,
};
use wasmesh_protocol::{ContentHash, Keypair};

use crate::report::round3;

/// A gossip message's envelope beyond its data: the author's peer id (38 bytes), sequence
/// number (8), topic, signature (64), and the protobuf field and message framing.
fn envelope_bytes() -> usize {
    (2 + 38) + (2 + 8) + (2 + 16) + (2 + 64) + 4
}

/// One message id in an IHAVE (this node's ids are 32-byte BLAKE3 hashes), with its framing.
const IHAVE_ID_BYTES: usize = 34;

/// A ping's payload, each way.
const PING_BYTES: usize = 32;

/// Addresses a node advertises (a QUIC and a TCP listener).
const ADDRESSES_PER_PEER: usize = 2;

/// What one node receives per second, by kind (bytes), and the figures behind it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlTraffic {
    /// Modules each node reports ready in its status.
    pub ready_per_status: usize,
    /// One status on the wire, envelope included.
    pub status_bytes: usize,
    /// Statuses authored per second across the mesh (each node receives every one).
    pub unique_statuses_per_s: f64,
    /// Status copies received per second (the unique ones times the copies per message).
    pub status_copies_per_s: f64,
    /// Bytes of status copies.
    pub status_bytes_per_s: f64,
    /// Bytes of IHAVE announcements of statuses.
    pub ihave_bytes_per_s: f64,
    /// Bytes of pings (each connection, both ways).
    pub ping_bytes_per_s: f64,
    /// Bytes of peer exchange (one request and one answer every exchange period).
    pub peer_exchange_bytes_per_s: f64,
    /// All of the above.
    pub total_bytes_per_s: f64,
}

impl ControlTraffic {
    /// The traffic of one node in a mesh of `nodes` where every node reports `modules` ready,
    /// given `copies` full copies and `ihave` IHAVE announcements per message per node and
    /// `connections` connections per node.
    pub fn estimate(
        nodes: usize,
        modules: usize,
        copies: f64,
        ihave: f64,
        connections: f64,
    ) -> Self {
        let ready_per_status = modules.min(MAX_STATUS_BLOBS);
        let status_bytes = status_with(ready_per_status).encode().len() + envelope_bytes();
        let unique_statuses_per_s = nodes as f64 / STATUS_INTERVAL.as_secs_f64();
        let status_copies_per_s = unique_statuses_per_s * copies;
        let status_bytes_per_s = status_copies_per_s * status_bytes as f64;
        let ihave_bytes_per_s = unique_statuses_per_s * ihave * IHAVE_ID_BYTES as f64;
        // Its own pings answered, and its peers' pings.
        let ping_bytes_per_s = connections * 2.0 * PING_BYTES as f64 / PING_EVERY.as_secs_f64();
        let introduced = (connections.round() as usize).min(MAX_SYNC_PEERS);
        let exchange = peer_exchange_request().encode().len()
            + peer_exchange_answer(introduced).encode().len();
        let peer_exchange_bytes_per_s = exchange as f64 / PEER_EXCHANGE_EVERY.as_secs_f64();
        let total_bytes_per_s =
            status_bytes_per_s + ihave_bytes_per_s + ping_bytes_per_s + peer_exchange_bytes_per_s;
        Self {
            ready_per_status,
            status_bytes,
            unique_statuses_per_s: round3(unique_statuses_per_s),
            status_copies_per_s: round3(status_copies_per_s),
            status_bytes_per_s: status_bytes_per_s.round(),
            ihave_bytes_per_s: ihave_bytes_per_s.round(),
            ping_bytes_per_s: ping_bytes_per_s.round(),
            peer_exchange_bytes_per_s: peer_exchange_bytes_per_s.round(),
            total_bytes_per_s: total_bytes_per_s.round(),
        }
    }

    /// One line of the figures.
    pub fn summary(&self) -> String {
        format!(
            "control plane per node: {:.1} KB/s received ({:.1} KB/s statuses: {:.0} unique/s, \
             {:.0} copies/s of {} B with {} ready; {:.1} KB/s IHAVE; {:.2} KB/s pings; \
             {:.2} KB/s peer exchange)",
            self.total_bytes_per_s / 1e3,
            self.status_bytes_per_s / 1e3,
            self.unique_statuses_per_s,
            self.status_copies_per_s,
            self.status_bytes,
            self.ready_per_status,
            self.ihave_bytes_per_s / 1e3,
            self.ping_bytes_per_s / 1e3,
            self.peer_exchange_bytes_per_s / 1e3
        )
    }
}

fn address(port: usize) -> String {
    format!(
        "/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    )
}

/// A status as a node of this version sends it, naming `ready` blobs.
fn status_with(ready: usize) -> StatusMessage {
    StatusMessage {
        node: Keypair::from_seed([1; 32]).public(),
        quic_addr: "127.0.0.1:44333".into(),
        ready_version: 0,
        ready: Some(
            (0..ready)
                .map(|i| ContentHash::of(&i.to_le_bytes()))
                .collect(),
        ),
        in_flight: 3,
        capacity: 8,
        seq: 1_764_000_000_000_000,
        p2p_addrs: (0..ADDRESSES_PER_PEER)
            .map(|i| address(40_000 + i))
            .collect(),
        manifests: ContentHash::of(b"digest"),
        coordinate: Coordinate::default(),
    }
}

fn peer_exchange_request() -> SyncRequest {
    SyncRequest {
        after: None,
        manifests: false,
        membership: Vec::new(),
    }
}

fn peer_exchange_answer(peers: usize) -> SyncResponse {
    SyncResponse {
        manifests: Vec::new(),
        membership: Vec::new(),
        more: false,
        peers: (0..peers)
            .map(|i| PeerRecord {
                node: Keypair::from_seed([i as u8; 32]).public(),
                addrs: (0..ADDRESSES_PER_PEER)
                    .map(|a| address(41_000 + i * 4 + a))
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status traffic grows with the mesh and with the ready set; the per-connection kinds do
    /// not grow with the mesh.
    #[test]
    fn status_traffic_grows_with_the_mesh_and_the_rest_does_not() {
        let small = ControlTraffic::estimate(100, 100, 6.7, 41.0, 12.0);
        let large = ControlTraffic::estimate(10_000, 100, 6.7, 41.0, 12.0);
        assert!((large.status_bytes_per_s / small.status_bytes_per_s - 100.0).abs() < 0.01);
        assert_eq!(large.ping_bytes_per_s, small.ping_bytes_per_s);
        assert_eq!(
            large.peer_exchange_bytes_per_s,
            small.peer_exchange_bytes_per_s
        );
        let bare = ControlTraffic::estimate(100, 0, 6.7, 41.0, 12.0);
        assert_eq!(small.status_bytes - bare.status_bytes, 100 * 32);
        assert!(small.total_bytes_per_s > small.status_bytes_per_s);
    }
}
