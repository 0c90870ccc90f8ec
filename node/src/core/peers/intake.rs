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
        // An address this node may not send packets to is no data-plane address for it.
        peer.quic_addr =
            address_scope::socket_is_dialable(&quic_addr, allow_private_addrs).then_some(quic_addr);
        peer.in_flight = status.in_flight;
        peer.capacity = status.capacity;
        peer.seq = status.seq;
        // Dial addresses travel with the ready list; a status without it keeps the last ones.
        // Rendezvous (`data_path`) are not addresses to dial: none of them is dropped.
        let advertised_count = status
            .p2p_addrs
            .iter()
            .filter(|a| {
                a.parse::<Multiaddr>()
                    .map_or(true, |a| !super::data_path::is_circuit(&a))
            })
            .count();
        let addrs = dialable(&status.p2p_addrs, allow_private_addrs);
        let dropped_addresses = addrs.len() < advertised_count;
        let rendezvous = super::data_path::rendezvous_in(&status.p2p_addrs);
        if carries_list || !addrs.is_empty() || !rendezvous.is_empty() {
            peer.addrs = addrs;
            peer.rendezvous = rendezvous;
        }
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

/// The addresses of `advertised` this node may dial: well-formed, globally routable unless
/// `allow_private_addrs`, and not a rendezvous (`.../p2p-circuit`: see `data_path`).
fn dialable(advertised: &[String], allow_private_addrs: bool) -> Vec<Multiaddr> {
    advertised
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .filter(|a| !super::data_path::is_circuit(a))
        .filter(|a| allow_private_addrs || address_scope::is_global(a))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmesh_protocol::Keypair;
    use wasmesh_protocol::coordinates::Coordinate;

    use super::*;
    use crate::core::peers::MAX_DIALED_PEERS;

    fn status(keys: &Keypair, seq: u64, digest: &[u8]) -> StatusMessage {
        StatusMessage {
            node: keys.public(),
            quic_addr: "127.0.0.1:4433".into(),
            ready_version: ready_version(&[]),
            ready: Some(Vec::new()),
            in_flight: 0,
            capacity: 1,
            seq,
            p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
            manifests: ContentHash::of(digest),
            coordinate: Coordinate::default(),
            leaving: false,
        }
    }

    #[test]
    fn a_status_of_an_unknown_peer_changes_nothing() {
        let keys = Keypair::from_seed([1; 32]);
        let id = identity::peer_id(&keys.public()).unwrap();
        let mut peers = PeerTable::default();
        let now = Instant::now();
        assert_eq!(
            peers.take_status(id, status(&keys, 1, b"a"), now, true, |_| true),
            Err(StatusRefusal::UnknownPeer)
        );
        assert!(peers.is_empty());
    }

    #[test]
    fn a_status_without_its_ready_list_asks_for_it_once_the_version_is_new() {
        let keys = Keypair::from_seed([1; 32]);
        let id = identity::peer_id(&keys.public()).unwrap();
        let mut peers = PeerTable::default();
        let now = Instant::now();
        peers.track(id, Newcomer::Named, now);
        let ready = vec![ContentHash::of(b"blob")];
        let mut full = status(&keys, 1, b"a");
        full.ready_version = ready_version(&ready);
        full.ready = Some(ready.clone());
        let taken = peers
            .take_status(id, full.clone(), now, true, |_| true)
            .unwrap();
        assert!(taken.new_provider && !taken.want_ready);
        // The same set, by version only: nothing to ask.
        let same = StatusMessage {
            seq: 2,
            ready: None,
            ..full.clone()
        };
        assert!(
            !peers
                .take_status(id, same, now, true, |_| true)
                .unwrap()
                .want_ready
        );
        // A new version without its list: asked for, and the old set kept meanwhile.
        let newer = StatusMessage {
            seq: 3,
            ready_version: full.ready_version ^ 1,
            ready: None,
            ..full.clone()
        };
        assert!(
            peers
                .take_status(id, newer, now, true, |_| true)
                .unwrap()
                .want_ready
        );
        assert!(peers.get(&id).unwrap().ready.contains(&ready[0]));
        // A list that does not match its version is refused.
        let lying = StatusMessage {
            seq: 4,
            ready_version: 7,
            ..full
        };
        assert!(matches!(
            peers.take_status(id, lying, now, true, |_| true),
            Err(StatusRefusal::Invalid(_))
        ));
    }

    #[test]
    fn a_directory_names_holders_but_not_for_neighbours() {
        use wasmesh_protocol::holders::Holder;
        let own = identity::peer_id(&Keypair::from_seed([0; 32]).public()).unwrap();
        let keys = Keypair::from_seed([1; 32]);
        let id = identity::peer_id(&keys.public()).unwrap();
        let record = Holder {
            node: keys.public(),
            quic_addr: "127.0.0.1:4433".into(),
            p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
            coordinate: Coordinate::default(),
            issued_ms: 1,
        }
        .sign(&keys);
        let blob = ContentHash::of(b"blob");
        let mut peers = PeerTable::default();
        let now = Instant::now();
        assert!(peers.take_holder(&record, blob, own, now, true));
        let peer = peers.get(&id).unwrap();
        assert!(peer.ready.contains(&blob) && peer.quic_addr.is_some());
        assert_eq!(peers.providers_of(&blob).len(), 1);
        // A neighbour's statuses are its word on what it holds.
        let other = ContentHash::of(b"other");
        peers.connected(id, true, now);
        peers.make_neighbour(&id);
        assert!(!peers.take_holder(&record, other, own, now, true));
        assert!(!peers.get(&id).unwrap().ready.contains(&other));
    }

    #[test]
    fn a_peer_changing_its_digest_is_synced_with_at_most_every_two_seconds() {
        let keys = Keypair::from_seed([1; 32]);
        let id = identity::peer_id(&keys.public()).unwrap();
        let mut peers = PeerTable::default();
        let start = Instant::now();
        peers.track(id, Newcomer::Named, start);
        let first = peers
            .take_status(id, status(&keys, 1, b"a"), start, true, |_| true)
            .unwrap();
        assert_eq!(first.unsynced_digest, Some(ContentHash::of(b"a")));
        let peer = peers.get_mut(&id).unwrap();
        peer.synced_digest = first.unsynced_digest;
        peer.synced_at = Some(start);
        // A new digest a moment later: not yet.
        let soon = start + Duration::from_millis(500);
        let second = peers
            .take_status(id, status(&keys, 2, b"b"), soon, true, |_| true)
            .unwrap();
        assert_eq!(second.unsynced_digest, None);
        // Once SYNC_EVERY has passed: yes.
        let later = start + SYNC_EVERY;
        let third = peers
            .take_status(id, status(&keys, 3, b"c"), later, true, |_| true)
            .unwrap();
        assert_eq!(third.unsynced_digest, Some(ContentHash::of(b"c")));
    }

    #[test]
    fn introductions_add_dialable_peers_only_and_within_bounds() {
        let own = identity::peer_id(&Keypair::from_seed([0; 32]).public()).unwrap();
        let records: Vec<PeerRecord> = (1..=40u8)
            .map(|i| PeerRecord {
                node: Keypair::from_seed([i; 32]).public(),
                addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
            })
            .collect();
        let mut peers = PeerTable::default();
        let now = Instant::now();
        assert_eq!(peers.take_introductions(&records, own, now, false), 0);
        assert!(
            peers.is_empty(),
            "loopback addresses are not dialable by default"
        );
        assert_eq!(
            peers.take_introductions(&records, own, now, true),
            MAX_SYNC_PEERS
        );
        assert_eq!(peers.len(), MAX_SYNC_PEERS);
    }

    /// A peer connected before anyone introduced it (through a Kademlia lookup's connection) is
    /// kept as a neighbour once an introduction gives it a dialable address, while there is room
    /// for neighbours, and not once there is none.
    #[test]
    fn connected_peers_are_kept_as_neighbours_once_dialable_and_up_to_the_cap() {
        let own = identity::peer_id(&Keypair::from_seed([0; 32]).public()).unwrap();
        let id = |i: u8| identity::peer_id(&Keypair::from_seed([i; 32]).public()).unwrap();
        let introduction = |i: u8| PeerRecord {
            node: Keypair::from_seed([i; 32]).public(),
            addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        };
        let mut peers = PeerTable::default();
        let now = Instant::now();
        assert!(peers.connected(id(1), true, now).is_some());
        assert!(peers.to_keep().is_empty(), "kept with no dialable address");
        assert_eq!(
            peers.take_introductions(&[introduction(1)], own, now, false),
            0
        );
        assert!(peers.to_keep().is_empty(), "kept at a refused address");
        assert_eq!(
            peers.take_introductions(&[introduction(1)], own, now, true),
            0
        );
        assert_eq!(peers.to_keep(), vec![id(1)]);
        assert!(peers.make_neighbour(&id(1)));
        assert!(peers.to_keep().is_empty(), "a neighbour is kept again");

        for i in 2..=MAX_DIALED_PEERS as u8 {
            assert!(peers.connected(id(i), true, now).is_some());
            assert!(peers.make_neighbour(&id(i)));
        }
        let last = MAX_DIALED_PEERS as u8 + 1;
        assert!(peers.connected(id(last), true, now).is_some());
        peers.take_introductions(&[introduction(last)], own, now, true);
        assert!(peers.to_keep().is_empty(), "kept past the cap");
        peers.disconnected(&id(2), now);
        assert_eq!(peers.to_keep(), vec![id(last)]);
    }
}
