//! Tests of `intake`.

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

/// A neighbour behind a NAT advertises its private data-plane address and the relays it
/// reserved on: it is reached through them (so the address is kept), and the relayed
/// address is one to dial, while a rendezvous named without an address is not.
#[test]
fn a_status_naming_rendezvous_keeps_its_private_address_and_its_relayed_one() {
    let keys = Keypair::from_seed([1; 32]);
    let id = identity::peer_id(&keys.public()).unwrap();
    let relay = identity::peer_id(&Keypair::from_seed([2; 32]).public()).unwrap();
    let mut peers = PeerTable::default();
    let now = Instant::now();
    peers.track(id, Newcomer::Named, now);
    let relayed = format!("/ip4/198.51.1.1/udp/4001/quic-v1/p2p/{relay}/p2p-circuit");
    let mut behind_nat = status(&keys, 1, b"a");
    behind_nat.quic_addr = "10.0.0.2:4002".into();
    behind_nat.p2p_addrs = vec![
        "/ip4/10.0.0.2/udp/4001/quic-v1".into(),
        relayed.clone(),
        format!("/p2p/{relay}/p2p-circuit"),
    ];
    peers
        .take_status(id, behind_nat.clone(), now, false, |_| true)
        .unwrap();
    let peer = peers.get(&id).unwrap();
    assert_eq!(peer.quic_addr, Some("10.0.0.2:4002".parse().unwrap()));
    assert_eq!(peer.rendezvous, vec![relay]);
    let dial: Vec<String> = peer.addrs.iter().map(ToString::to_string).collect();
    assert_eq!(dial, vec![relayed]);
    // Without rendezvous, a private address is no place to send packets.
    behind_nat.seq = 2;
    behind_nat.p2p_addrs = vec!["/ip4/10.0.0.2/udp/4001/quic-v1".into()];
    peers
        .take_status(id, behind_nat, now, false, |_| true)
        .unwrap();
    assert_eq!(peers.get(&id).unwrap().quic_addr, None);
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
