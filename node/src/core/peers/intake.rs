//! Taking what peers say into the peer table: a peer's status (which fields change, whether the
//! peer became a provider of something new, whether to ask it for a sync or for its ready list),
//! and the peers a neighbour introduces in its sync response. The caller counts, logs and
//! notifies.
//!
//! Only connections and introductions put a peer in the table. A status comes from the peer
//! itself over its connection, and updates the entry that connection made.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use wasmesh_keys::identity;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::holders::SignedHolder;
use wasmesh_protocol::wire::{MAX_SYNC_PEERS, PeerRecord, StatusMessage, ready_version};

use super::{Newcomer, PeerTable};
use crate::address_scope;

/// Blobs a peer may report ready that this node knows no manifest of; more are dropped (a
/// status of thousands of made-up hashes must not cost memory per peer).
pub const MAX_UNKNOWN_READY: usize = 64;

/// Takes the ready list a status carries (or only its version): the blobs `known` and at most
/// [`MAX_UNKNOWN_READY`] others. Whether the peer now holds a blob it did not, and whether its
/// list must be asked for.
fn take_ready(
    peer: &mut super::PeerInfo,
    ready: Option<Vec<ContentHash>>,
    version: u64,
    known: impl Fn(&ContentHash) -> bool,
) -> (bool, bool) {
    let Some(ready) = ready else {
        // The set this node holds stays until the new one arrives.
        return (false, peer.ready_version != Some(version));
    };
    let mut unknown = 0;
    let kept: std::collections::HashSet<ContentHash> = ready
        .into_iter()
        .filter(|hash| {
            known(hash) || {
                unknown += 1;
                unknown <= MAX_UNKNOWN_READY
            }
        })
        .collect();
    let new_provider = kept.iter().any(|h| !peer.ready.contains(h));
    peer.ready = kept;
    peer.ready_version = Some(version);
    (new_provider, false)
}

/// The shortest time between two syncs this node asks of one peer.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// Why a peer's status was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRefusal {
    /// It is wrong (forged, malformed): its sender is penalised.
    Invalid(&'static str),
    /// It comes from a peer the table does not hold (it was full when the peer connected).
    UnknownPeer,
    /// It comes from a peer of a private mesh that has not proved membership yet.
    NotAdmitted,
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
    /// The status named a ready set this node does not have and did not carry it: the answer
    /// asks for it.
    pub want_ready: bool,
}

impl PeerTable {
    /// Takes `status`, which the peer `from` sent on its connection; of the blobs it reports
    /// ready, those `known` (of a manifest this node holds) are kept, and at most
    /// [`MAX_UNKNOWN_READY`] others.
    pub fn take_status(
        &mut self,
        from: PeerId,
        status: StatusMessage,
        now: Instant,
        allow_private_addrs: bool,
        known: impl Fn(&ContentHash) -> bool,
    ) -> Result<StatusTaken, StatusRefusal> {
        if !identity::is_peer_id_of(&from, &status.node) {
            return Err(StatusRefusal::Invalid(
                "status key does not match its sender",
            ));
        }
        let quic_addr = status
            .quic_addr
            .parse::<SocketAddr>()
            .map_err(|_| StatusRefusal::Invalid("bad QUIC address"))?;
        if let Some(ready) = &status.ready
            && ready_version(ready) != status.ready_version
        {
            return Err(StatusRefusal::Invalid(
                "ready version does not match its list",
            ));
        }
        let peer = self.get_mut(&from).ok_or(StatusRefusal::UnknownPeer)?;
        if status.seq <= peer.seq && peer.key.is_some() {
            return Ok(StatusTaken::default());
        }
        let carries_list = status.ready.is_some();
        let (new_provider, want_ready) =
            take_ready(peer, status.ready, status.ready_version, known);
        peer.key = Some(status.node);
        peer.in_flight = status.in_flight;
        peer.capacity = status.capacity;
        peer.seq = status.seq;
        // Dial addresses travel with the ready list; a status without it keeps the last ones.
        let advertised_count = status.p2p_addrs.len();
        let addrs = dialable(&status.p2p_addrs, allow_private_addrs);
        let dropped_addresses = addrs.len() < advertised_count;
        let rendezvous = super::data_path::rendezvous_in(&status.p2p_addrs);
        if carries_list || !addrs.is_empty() || !rendezvous.is_empty() {
            peer.addrs = addrs;
            peer.rendezvous = rendezvous;
        }
        // An address this node may not send packets to is no data-plane address for it, unless
        // the peer names rendezvous: then it is reached through them (`data_path`), never
        // dialed there, as a holder record's is (`take_holder`).
        peer.quic_addr = (address_scope::socket_is_dialable(&quic_addr, allow_private_addrs)
            || !peer.rendezvous.is_empty())
        .then_some(quic_addr);
        peer.last_seen = now;
        peer.coordinate = Some(status.coordinate);
        peer.leaving = status.leaving;
        if status.leaving {
            // Whatever its list says, a leaving peer is no provider.
            peer.ready.clear();
        }
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
            dropped_addresses,
            unsynced_digest: unsynced.then_some(theirs),
            want_ready,
        })
    }

    /// Takes a holder of `blob` a directory node named (its record verified by the caller): a
    /// peer not yet known gets an entry if the table has room; unless the peer is a neighbour
    /// (its own statuses say what it holds), the record's address, key and coordinate are taken
    /// and the blob counts as ready there until a status says otherwise. Returns whether it is a holder of the blob
    /// this node did not know of.
    pub fn take_holder(
        &mut self,
        record: &SignedHolder,
        blob: ContentHash,
        own: PeerId,
        now: Instant,
        allow_private_addrs: bool,
    ) -> bool {
        let holder = &record.holder;
        let Some(id) = identity::peer_id(&holder.node).filter(|id| *id != own) else {
            return false;
        };
        let Ok(quic_addr) = holder.quic_addr.parse::<SocketAddr>() else {
            return false;
        };
        // A holder behind a NAT whose mapping its rendezvous do not agree on advertises its
        // private address: it is reached through the rendezvous it names, never dialed there.
        let rendezvous = super::data_path::rendezvous_in(&holder.p2p_addrs);
        if !address_scope::socket_is_dialable(&quic_addr, allow_private_addrs)
            && rendezvous.is_empty()
        {
            return false;
        }
        let Some(placed) = self.track(id, Newcomer::Named, now) else {
            return false;
        };
        let peer = placed.info;
        // A neighbour's own statuses say what it holds: a directory's word adds nothing.
        if peer.neighbour {
            return false;
        }
        peer.key = Some(holder.node);
        peer.quic_addr = Some(quic_addr);
        peer.coordinate = Some(holder.coordinate);
        peer.last_seen = now;
        let addrs = dialable(&holder.p2p_addrs, allow_private_addrs);
        if !addrs.is_empty() {
            peer.addrs = addrs;
        }
        peer.rendezvous = rendezvous;
        peer.ready.insert(blob)
    }

    /// Takes the peers a neighbour introduced (`records`, from its sync response): one not yet
    /// known gets an entry with its dialable addresses, if the table has room, and a known one
    /// without addresses gets them. Returns how many were new. `own` is this node's id (a
    /// neighbour may introduce it back).
    pub fn take_introductions(
        &mut self,
        records: &[PeerRecord],
        own: PeerId,
        now: Instant,
        allow_private_addrs: bool,
    ) -> usize {
        let mut introduced = 0;
        for record in records.iter().take(MAX_SYNC_PEERS) {
            // The cheap id finds a known peer; a newcomer's key is checked before it is kept.
            let Some(id) = identity::unchecked_peer_id(&record.node).filter(|id| *id != own) else {
                continue;
            };
            let addrs = dialable(&record.addrs, allow_private_addrs);
            if addrs.is_empty() {
                continue;
            }
            if let Some(known) = self.get_mut(&id) {
                // Connected without known addresses (a Kademlia lookup's connection): now it
                // can be kept as a neighbour.
                if known.addrs.is_empty() {
                    known.addrs = addrs;
                }
                continue;
            }
            if identity::peer_id(&record.node).is_none() {
                continue;
            }
            let Some(placed) = self.track(id, Newcomer::Named, now) else {
                break;
            };
            placed.info.addrs = addrs;
            introduced += 1;
        }
        introduced
    }
}

/// The addresses of `advertised` this node may dial: well-formed and globally routable unless
/// `allow_private_addrs` (a relayed one by its relay's address). A rendezvous reserved on
/// (`<relay address>/p2p/<relay>/p2p-circuit`, see `data_path`) is dialed through that relay's
/// libp2p circuit (`control::relays`), after the direct ones; one named without its address is
/// no place to dial.
fn dialable(advertised: &[String], allow_private_addrs: bool) -> Vec<Multiaddr> {
    let (circuits, direct): (Vec<Multiaddr>, Vec<Multiaddr>) = advertised
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .partition(super::data_path::is_circuit);
    let through_relay = circuits
        .into_iter()
        .filter(|a| address_scope::ip_of(a).is_some());
    direct
        .into_iter()
        .chain(through_relay)
        .filter(|a| allow_private_addrs || address_scope::is_global(a))
        .collect()
}

#[cfg(test)]
mod tests;
