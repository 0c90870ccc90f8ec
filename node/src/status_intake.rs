//! Taking a peer's status into the peer table: which fields change, whether the peer became a
//! provider of something new, and whether to ask it for a sync. Pure: the time is an argument,
//! and the caller counts, logs and notifies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use wasmesh_keys::identity;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::StatusMessage;

use crate::address_scope;
use crate::registry::{PeerInfo, track_peer};

/// The shortest time between two syncs this node asks of one peer.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Why a peer's status was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRefusal {
    /// It is wrong (forged, malformed): its sender is penalised.
    Invalid(&'static str),
    /// It may be fine, but the peer table is full of peers that cannot be evicted.
    TableFull,
}

/// What taking a status changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusTaken {
    /// It was newer than the last status of that peer (older ones change nothing).
    pub fresh: bool,
    /// The peer now reports a blob ready that it did not before.
    pub new_provider: bool,
    /// Addresses were dropped because they are not globally routable.
    pub dropped_addresses: bool,
    /// The peer's manifest digest, when this node has not asked it for a sync at that digest
    /// lately. The caller compares it with its own and asks.
    pub unsynced_digest: Option<ContentHash>,
}

/// Takes `status`, which gossip says comes from `from`, into `peers`.
pub fn take_status(
    peers: &mut HashMap<PeerId, PeerInfo>,
    from: PeerId,
    status: StatusMessage,
    now: Instant,
    allow_private_addrs: bool,
) -> Result<StatusTaken, StatusRefusal> {
    if identity::peer_id(&status.node) != Some(from) {
        return Err(StatusRefusal::Invalid(
            "status key does not match its sender",
        ));
    }
    let quic_addr = status
        .quic_addr
        .parse::<SocketAddr>()
        .map_err(|_| StatusRefusal::Invalid("bad QUIC address"))?;
    let peer = track_peer(peers, from, now).ok_or(StatusRefusal::TableFull)?;
    if status.seq <= peer.seq && peer.key.is_some() {
        return Ok(StatusTaken::default());
    }
    let new_provider = status.ready.iter().any(|h| !peer.ready.contains(h));
    peer.key = Some(status.node);
    peer.quic_addr = Some(quic_addr);
    peer.ready = status.ready.into_iter().collect();
    peer.in_flight = status.in_flight;
    peer.capacity = status.capacity;
    peer.seq = status.seq;
    let advertised: Vec<Multiaddr> = status
        .p2p_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let advertised_count = advertised.len();
    peer.addrs = advertised
        .into_iter()
        .filter(|a| allow_private_addrs || address_scope::is_global(a))
        .collect();
    peer.last_seen = now;
    peer.coordinate = Some(status.coordinate);
    let theirs = status.manifests;
    // Once per digest a peer reports, and not more often than SYNC_EVERY: a peer that changes
    // its digest in every status must not make this node sync with it every time.
    let unsynced = peer.synced_digest != Some(theirs)
        && peer
            .synced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SYNC_EVERY);
    Ok(StatusTaken {
        fresh: true,
        new_provider,
        dropped_addresses: peer.addrs.len() < advertised_count,
        unsynced_digest: unsynced.then_some(theirs),
    })
}
