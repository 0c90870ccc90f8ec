//! One node of the scale model: its key, its place on the map, its address as a label, and
//! the node's own control-plane state (the core) with the blobs it holds ready.

use std::collections::BTreeSet;

use libp2p::{Multiaddr, PeerId};
use rand::RngExt;
use rand_pcg::Pcg64;
use wasmesh_node::core::holder_search::HolderSearch;
use wasmesh_node::core::state::NodeState;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair};

use super::costs::CAPACITY;
use crate::latency::{UnitVector, random_position};

/// A node's index in the mesh.
pub(crate) type NodeId = u32;

/// Every node holds the same manifests: statuses never ask for a sync.
pub(crate) fn manifest_digest() -> ContentHash {
    ContentHash::of(b"the manifests every node holds")
}

/// One node of the model.
pub(crate) struct SimNode {
    pub(crate) keys: Keypair,
    pub(crate) peer_id: PeerId,
    pub(crate) position: UnitVector,
    /// Where it is dialed (a label: no packet is sent).
    pub(crate) addr: Multiaddr,
    /// Its data-plane address, as its statuses and holder records name it.
    pub(crate) quic_addr: String,
    /// The node's control-plane state: the core itself.
    pub(crate) state: NodeState,
    /// Nodes it has a connection to (libp2p's side of things).
    pub(crate) connected: BTreeSet<NodeId>,
    /// Blobs ready here.
    pub(crate) ready: Vec<ContentHash>,
    /// When it announces its blobs and looks holders up: the core's own schedule.
    pub(crate) search: HolderSearch,
    status_seq: u64,
}

impl SimNode {
    /// This node's status now, as its event loop makes it.
    pub(crate) fn own_status(&mut self) -> StatusMessage {
        self.status_seq += 1;
        StatusMessage {
            node: self.keys.public(),
            quic_addr: self.quic_addr.clone(),
            ready_version: ready_version(&self.ready),
            ready: Some(self.ready.clone()),
            in_flight: 0,
            capacity: CAPACITY,
            seq: self.status_seq,
            p2p_addrs: vec![self.addr.to_string()],
            manifests: manifest_digest(),
            coordinate: self.state.coordinate,
            leaving: false,
        }
    }

    /// The coordinate it has now.
    pub(crate) fn coordinate(&self) -> Coordinate {
        self.state.coordinate
    }
}

/// Node `i`: a random place near a city, a key from the model's generator, and a loopback
/// address of its own as a label.
pub(crate) fn new_node(i: usize, rng: &mut Pcg64) -> SimNode {
    let position = UnitVector::from(random_position(rng).1);
    let keys = Keypair::from_seed(rng.random());
    let peer_id = wasmesh_keys::identity::libp2p_keypair(&keys)
        .public()
        .to_peer_id();
    let n = i as u32 + 1;
    let ip = std::net::Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    let addr = Multiaddr::from(ip)
        .with(libp2p::multiaddr::Protocol::Udp(4001))
        .with(libp2p::multiaddr::Protocol::QuicV1);
    SimNode {
        keys,
        peer_id,
        position,
        addr,
        quic_addr: format!("{ip}:4002"),
        state: NodeState::new(peer_id, false),
        connected: BTreeSet::new(),
        ready: Vec::new(),
        search: HolderSearch::default(),
        status_seq: 0,
    }
}
