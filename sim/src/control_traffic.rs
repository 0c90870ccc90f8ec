//! The control plane's traffic per node as the mesh grows: what one node of this version
//! receives per second, from the node's own parameters and message sizes (real encodings of a
//! status, a holder record, a peer-exchange answer) and the cost of a Kademlia lookup the
//! [`kademlia`](crate::kademlia) model measures.
//!
//! - Statuses go to neighbours only, every `STATUS_INTERVAL` (the busy case: load changes all
//!   the time), without the ready list and dial addresses, which travel once per change of the
//!   ready set (left out here: modules change rarely). Each is answered.
//! - Pings and peer exchange are per connection.
//! - Holders: every ready blob is announced every `ANNOUNCE_EVERY` to its directory nodes, after
//!   a lookup; every blob routed elsewhere is looked up every `HOLDER_REFRESH` (the worst case:
//!   every module routed elsewhere), and the directory nodes answer with holder records. Each
//!   lookup request is assumed to open a new connection, unless to a neighbour.
//! - Only the lookups grow with the mesh, with the requests a lookup needs: logarithmically.
//!
//! Gossipsub's heartbeat control and manifests (publishes are rare) are left out.

use serde::Serialize;
use wasmesh_node::config::STATUS_INTERVAL;
use wasmesh_node::control::{PEER_EXCHANGE_EVERY, PING_EVERY};
use wasmesh_node::core::holder_search::{
    ANNOUNCE_EVERY, DIRECTORIES_ASKED, DIRECTORY_REPLICAS, HOLDER_REFRESH, HOLDERS_WANTED,
};
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::holders::{Holder, HolderAnswer, HolderRequest, SignedHolder};
use wasmesh_protocol::wire::{
    MAX_SYNC_PEERS, PeerRecord, StatusAck, StatusMessage, SyncRequest, SyncResponse, ready_version,
};
use wasmesh_protocol::{ContentHash, Keypair};

use crate::kademlia::K;
use crate::report::round3;

/// What a request-response message costs beyond its body, as received: protocol negotiation
/// (multistream-select names the protocol, echoed) and stream framing.
const STREAM_BYTES: usize = 60;

/// A ping's payload, each way.
const PING_BYTES: usize = 32;

/// Addresses a node advertises (a QUIC and a TCP listener).
const ADDRESSES_PER_PEER: usize = 2;

/// A new connection, as received by both ends together: the QUIC handshake with libp2p's
/// certificates both ways, and identify both ways. An estimate from the messages' sizes.
const CONNECTION_BYTES: usize = 4_500;

/// A Kademlia request (a key and framing) and one peer in an answer (id, two binary
/// addresses, connection type, framing).
const KAD_REQUEST_BYTES: usize = 48;
const KAD_PEER_BYTES: usize = 64;

/// What one node receives per second, by kind (bytes), and the figures behind it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlTraffic {
    /// Neighbours per node (statuses both ways), mean.
    pub neighbours: f64,
    /// Connections per node (each pinged), mean.
    pub connections: f64,
    /// One status without its ready list, and its answer, as received.
    pub status_bytes: usize,
    /// Bytes of statuses and their answers.
    pub status_bytes_per_s: f64,
    /// Bytes of pings (each connection, both ways).
    pub ping_bytes_per_s: f64,
    /// Bytes of peer exchange (one request and one answer every exchange period).
    pub peer_exchange_bytes_per_s: f64,
    /// Kademlia requests per lookup (mean, measured by the model).
    pub lookup_requests: f64,
    /// Lookups per second this node starts (announcements and holder lookups).
    pub lookups_per_s: f64,
    /// Bytes of lookups (answers, requests served, new connections), announcements and holder
    /// answers.
    pub holder_bytes_per_s: f64,
    /// All of the above.
    pub total_bytes_per_s: f64,
}

impl ControlTraffic {
    /// The traffic of one node in a mesh of `nodes` where every node holds `modules` ready and
    /// routes as many elsewhere, with `neighbours` connections per node and lookups of
    /// `lookup_requests` requests.
    pub fn estimate(
        nodes: usize,
        modules: usize,
        neighbours: f64,
        connections: f64,
        lookup_requests: f64,
    ) -> Self {
        let interval = STATUS_INTERVAL.as_secs_f64();
        let status_bytes = compact_status().encode().len()
            + StatusAck { want_ready: false }.encode().len()
            + 2 * STREAM_BYTES;
        // Its neighbours' statuses, and the answers to its own.
        let status_bytes_per_s = neighbours * status_bytes as f64 / interval;
        let ping_bytes_per_s = connections * 2.0 * PING_BYTES as f64 / PING_EVERY.as_secs_f64();
        let introduced = (neighbours.round() as usize).min(MAX_SYNC_PEERS);
        let exchange = peer_exchange_request().encode().len()
            + peer_exchange_answer(introduced).encode().len()
            + 2 * STREAM_BYTES;
        let peer_exchange_bytes_per_s = exchange as f64 / PEER_EXCHANGE_EVERY.as_secs_f64();

        let announces_per_s = modules as f64 / ANNOUNCE_EVERY.as_secs_f64();
        let finds_per_s = modules as f64 / HOLDER_REFRESH.as_secs_f64();
        let lookups_per_s = announces_per_s + finds_per_s;
        // A lookup request to a peer that is not a neighbour opens a connection.
        let new_connection = 1.0 - (connections / nodes.max(1) as f64).min(1.0);
        let per_request = (K * KAD_PEER_BYTES + STREAM_BYTES) as f64
            // The requests of others' lookups this node serves: as many, by symmetry.
            + (KAD_REQUEST_BYTES + STREAM_BYTES) as f64
            + new_connection * CONNECTION_BYTES as f64;
        let lookup_bytes = lookup_requests * per_request;
        // Announcements: sent to the replicas; received as many, by symmetry.
        let announcement = announce().encode().len() + STREAM_BYTES;
        let announce_bytes = (DIRECTORY_REPLICAS * announcement) as f64;
        // Holder answers to this node's questions; the questions it answers, by symmetry.
        let question = find().encode().len() + STREAM_BYTES;
        let answer = found().encode().len() + STREAM_BYTES;
        let find_bytes = (DIRECTORIES_ASKED * (question + answer)) as f64;
        let holder_bytes_per_s = lookups_per_s * lookup_bytes
            + announces_per_s * announce_bytes
            + finds_per_s * find_bytes;
        let total_bytes_per_s =
            status_bytes_per_s + ping_bytes_per_s + peer_exchange_bytes_per_s + holder_bytes_per_s;
        Self {
            neighbours: round3(neighbours),
            connections: round3(connections),
            status_bytes,
            status_bytes_per_s: status_bytes_per_s.round(),
            ping_bytes_per_s: ping_bytes_per_s.round(),
            peer_exchange_bytes_per_s: peer_exchange_bytes_per_s.round(),
            lookup_requests: round3(lookup_requests),
            lookups_per_s: round3(lookups_per_s),
            holder_bytes_per_s: holder_bytes_per_s.round(),
            total_bytes_per_s: total_bytes_per_s.round(),
        }
    }

    /// One line of the figures.
    pub fn summary(&self) -> String {
        format!(
            "control plane per node: {:.1} KB/s received ({:.1} KB/s statuses from {:.0} \
             neighbours, {} B each with its answer; {:.2} KB/s pings; {:.2} KB/s peer exchange; \
             {:.2} KB/s holders: {:.3} lookups/s of {:.1} requests)",
            self.total_bytes_per_s / 1e3,
            self.status_bytes_per_s / 1e3,
            self.neighbours,
            self.status_bytes,
            self.ping_bytes_per_s / 1e3,
            self.peer_exchange_bytes_per_s / 1e3,
            self.holder_bytes_per_s / 1e3,
            self.lookups_per_s,
            self.lookup_requests,
        )
    }
}

fn address(port: usize) -> String {
    format!(
        "/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    )
}

/// A status as a node of this version sends it most of the time: without the ready list and
/// the dial addresses.
fn compact_status() -> StatusMessage {
    StatusMessage {
        node: Keypair::from_seed([1; 32]).public(),
        quic_addr: "127.0.0.1:44333".into(),
        ready_version: ready_version(&[]),
        ready: None,
        in_flight: 3,
        capacity: 8,
        seq: 1_764_000_000_000_000,
        p2p_addrs: Vec::new(),
        manifests: ContentHash::of(b"digest"),
        coordinate: Coordinate::default(),
        leaving: false,
    }
}

fn holder_record() -> SignedHolder {
    let keys = Keypair::from_seed([1; 32]);
    Holder {
        node: keys.public(),
        quic_addr: "127.0.0.1:44333".into(),
        p2p_addrs: (0..ADDRESSES_PER_PEER)
            .map(|i| address(40_000 + i))
            .collect(),
        coordinate: Coordinate::default(),
        issued_ms: 1_764_000_000_000,
    }
    .sign(&keys)
}

fn announce() -> HolderRequest {
    HolderRequest::Announce {
        holder: holder_record(),
        blobs: vec![ContentHash::of(b"blob")],
    }
}

fn find() -> HolderRequest {
    HolderRequest::Find {
        blob: ContentHash::of(b"blob"),
        near: Coordinate::default(),
        max: HOLDERS_WANTED,
    }
}

fn found() -> HolderAnswer {
    HolderAnswer {
        holders: vec![holder_record(); usize::from(HOLDERS_WANTED)],
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

    /// Only the lookups grow with the mesh, with their requests; statuses grow with the
    /// neighbours, not with the mesh.
    #[test]
    fn only_lookups_grow_with_the_mesh() {
        let small = ControlTraffic::estimate(1_000, 100, 40.0, 60.0, 6.0);
        let large = ControlTraffic::estimate(10_000, 100, 40.0, 60.0, 9.0);
        assert_eq!(large.status_bytes_per_s, small.status_bytes_per_s);
        assert_eq!(large.ping_bytes_per_s, small.ping_bytes_per_s);
        assert!(large.holder_bytes_per_s > small.holder_bytes_per_s);
        assert!(large.holder_bytes_per_s < 2.0 * small.holder_bytes_per_s);
        let idle = ControlTraffic::estimate(10_000, 0, 40.0, 60.0, 9.0);
        assert_eq!(idle.holder_bytes_per_s, 0.0);
    }
}
