//! Where a request can run, as the peer table shows it: this node (if the module is ready
//! here) and the peers that report its blob ready, have a data-plane address, are not leaving,
//! and proved they hold it. Each becomes a `wasmesh_protocol::routing::Holder` for
//! `routing::plan`, with what this node measured of it: the round trip, its load as reported
//! plus what this node sent it since, its execution time for this blob, and whether it is down.
//!
//! The request path and the scale model both choose with [`candidates`] and
//! `routing::plan`: the model's figures are the node's.

use std::time::Instant;

use libp2p::PeerId;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::routing::Holder;

use super::peers::{PeerInfo, PeerTable};

/// This node as a holder, when the module is ready here.
#[derive(Debug, Clone, Copy)]
pub struct LocalHolder {
    /// Requests running or queued here.
    pub in_flight: u32,
    /// Guests that can run at once.
    pub capacity: u32,
    /// Mean execution time of the module here, if measured.
    pub exec_us: Option<u64>,
}

/// The places a request for one blob can run.
#[derive(Debug)]
pub struct Candidates<'a> {
    /// Each place as routing sees it; a holder's `id` is [`Candidates::LOCAL`] for this node
    /// (which wins ties), one more than its index in `peers` for a peer.
    pub holders: Vec<Holder<usize>>,
    /// The peers among the holders, by index.
    pub peers: Vec<&'a PeerInfo>,
    /// Peers that claim to hold the blob but have not proved it: to be put to the proof.
    pub unproven: Vec<&'a PeerInfo>,
}

impl Candidates<'_> {
    /// The id of this node among the holders.
    pub const LOCAL: usize = 0;

    /// The peer behind a holder id (`None` for this node).
    pub fn peer(&self, id: usize) -> Option<&PeerInfo> {
        self.peers.get(id.checked_sub(1)?).copied()
    }
}

/// The places a request for `blob` can run, as `table` shows them at `now_ms` (the node's
/// routing clock, with `ms_of` reading an `Instant` on it): `local` when the module is ready
/// here, and the proven peer holders, leaving out `own` and the peers in `exclude`.
pub fn candidates<'a>(
    table: &'a PeerTable,
    own: &PeerId,
    blob: &ContentHash,
    local: Option<LocalHolder>,
    exclude: &[PeerId],
    now_ms: u64,
    ms_of: impl Fn(Instant) -> u64,
) -> Candidates<'a> {
    let mut found = Candidates {
        holders: Vec::new(),
        peers: Vec::new(),
        unproven: Vec::new(),
    };
    if let Some(local) = local.filter(|_| !exclude.contains(own)) {
        found.holders.push(Holder {
            id: Candidates::LOCAL,
            local: true,
            measured_rtt_us: Some(0),
            coordinate: None,
            in_flight: local.in_flight,
            capacity: local.capacity,
            mean_exec_us: local.exec_us,
            down_until_ms: None,
            heard_ms: now_ms,
        });
    }
    for peer in table.values() {
        let claims = peer.ready.contains(blob)
            && peer.key.is_some()
            && peer.data_addr().is_some()
            && !peer.leaving
            && peer.peer_id != *own
            && !exclude.contains(&peer.peer_id);
        if !claims {
            continue;
        }
        if !peer.feedback.has_proven(blob, now_ms) {
            found.unproven.push(peer);
            continue;
        }
        found.holders.push(Holder {
            id: found.peers.len() + 1,
            local: false,
            measured_rtt_us: peer.rtt_us,
            coordinate: peer.coordinate,
            // Its last reported load, plus what this node sent it since.
            in_flight: peer.in_flight.saturating_add(peer.feedback.forwarding()),
            capacity: peer.capacity,
            mean_exec_us: peer.mean_exec_us.get(blob).copied(),
            down_until_ms: peer.feedback.down_until_ms(),
            heard_ms: ms_of(peer.last_seen),
        });
        found.peers.push(peer);
    }
    found
}

/// Whether a peer that claims to hold `blob` is proving it now.
pub fn proving(table: &PeerTable, blob: &ContentHash, now_ms: u64) -> bool {
    table
        .values()
        .any(|peer| peer.ready.contains(blob) && peer.feedback.proof_under_way(blob, now_ms))
}
