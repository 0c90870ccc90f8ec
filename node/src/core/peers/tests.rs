//! Tests of the peer table: its bound, and a property test of its dial decisions.

use super::*;

pub(super) fn peer(n: u64) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    libp2p::identity::Keypair::ed25519_from_bytes(seed)
        .unwrap()
        .public()
        .to_peer_id()
}

/// Fresh identities cannot grow the table: past the cap each new peer takes the place of the
/// least recently heard one, connected and dialed peers this node chose are never evicted, and
/// a table full of those takes no one it has not chosen.
#[test]
fn the_peer_table_is_bounded_and_keeps_its_chosen_connections() {
    let mut peers = PeerTable::default();
    let start = Instant::now();
    let connected = peer(u64::MAX);
    assert_eq!(peers.connected(connected, true, start), Some(None));
    for n in 0..MAX_TRACKED_PEERS as u64 * 3 {
        let placed = peers.track(peer(n), Newcomer::Named, start).unwrap();
        placed.info.last_seen = start + std::time::Duration::from_millis(n);
        assert!(peers.len() <= MAX_TRACKED_PEERS);
    }
    assert!(peers.contains(&connected), "a connected peer was evicted");
    let newest = MAX_TRACKED_PEERS as u64 * 3 - 1;
    assert!(peers.contains(&peer(newest)));
    assert!(!peers.contains(&peer(0)), "the least recently heard stayed");

    peers.update_each(|info| info.connected = true);
    assert!(
        peers
            .track(peer(u64::MAX - 1), Newcomer::Named, start)
            .is_none()
    );
    assert_eq!(peers.len(), MAX_TRACKED_PEERS);
}

/// Strangers (peers that connected to this node) take at most their share of the table: past
/// it, a new stranger takes the place of the least recently heard stranger, connected or not
/// (which the caller disconnects), so an honest newcomer always gets in; peers this node chose
/// keep their room, and a stranger that stayed connected long enough is one no more.
#[test]
fn strangers_take_at_most_their_share_and_cannot_lock_anyone_out() {
    let mut peers = PeerTable::default();
    let start = Instant::now();
    let chosen: Vec<PeerId> = (0..64).map(|n| peer(1_000_000 + n)).collect();
    for id in &chosen {
        assert_eq!(peers.connected(*id, true, start), Some(None));
    }
    let mut evicted = 0;
    for n in 0..MAX_TRACKED_PEERS as u64 * 2 {
        let now = start + Duration::from_millis(n);
        let Some(gone) = peers.connected(peer(n), false, now) else {
            panic!("stranger {n} was refused");
        };
        if let Some(gone) = gone {
            evicted += 1;
            assert!(!chosen.contains(&gone), "a chosen peer was evicted");
        }
        peers.get_mut(&peer(n)).unwrap().last_seen = now;
        let strangers = peers.values().filter(|p| p.is_stranger(now)).count();
        assert!(strangers <= MAX_STRANGERS, "{strangers} strangers");
    }
    assert!(evicted > 0);
    assert!(chosen.iter().all(|id| peers.contains(id)));
    // The newest stranger is in: the least recently heard ones made room.
    assert!(peers.contains(&peer(MAX_TRACKED_PEERS as u64 * 2 - 1)));
    // A peer this node dials gets in too, however many strangers there are.
    let dialed = peer(2_000_000);
    let now = start + Duration::from_secs(60);
    assert!(peers.connected(dialed, true, now).is_some());
    assert!(!peers.get(&dialed).unwrap().is_stranger(now));
    // A stranger connected for LONG_STANDING is one no more, even after it disconnects.
    let old = peer(MAX_TRACKED_PEERS as u64 * 2 - 1);
    let later = now + LONG_STANDING;
    assert!(!peers.get(&old).unwrap().is_stranger(later));
    peers.disconnected(&old, later);
    assert!(!peers.get(&old).unwrap().is_stranger(later));
    // Strangers are never dialed, and introduced after the peers this node has a record with.
    let mut table = PeerTable::default();
    let address: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
    for (n, dialed) in [(7, false), (9, true)] {
        table.connected(peer(n), dialed, start);
        let info = table.get_mut(&peer(n)).unwrap();
        info.addrs = vec![address.clone()];
        info.key = Some(wasmesh_protocol::PublicKey([n as u8; 32]));
    }
    table.get_mut(&peer(7)).unwrap().last_seen = start + Duration::from_secs(1);
    let introduced = table.introductions(&peer(8), start);
    assert_eq!(introduced[0].node, wasmesh_protocol::PublicKey([9; 32]));
    table.disconnected(&peer(7), start);
    assert!(
        table
            .to_dial(&peer(8), 0, start + Duration::from_secs(60))
            .is_empty()
    );
}

/// A failed forward seen through a view (a clone of the table) marks the peer down in the table
/// and in every other view at once, and so does the count of forwards under way.
#[test]
fn feedback_through_a_view_is_seen_by_the_table_at_once() {
    let mut table = PeerTable::default();
    let a = peer(1);
    table.track(a, Newcomer::Named, Instant::now()).unwrap();
    let view = table.clone();
    let other_view = table.clone();
    let seen = |t: &PeerTable| t.get(&a).unwrap().feedback.clone();
    assert_eq!(seen(&table).down_until_ms(), None);
    seen(&view).mark_down(1_000);
    let until = routing::down_after_failure(1_000);
    assert_eq!(seen(&table).down_until_ms(), Some(until));
    assert_eq!(seen(&other_view).down_until_ms(), Some(until));
    let guard = seen(&view).enter();
    assert_eq!(seen(&table).forwarding(), 1);
    drop(guard);
    assert_eq!(seen(&other_view).forwarding(), 0);
}

/// One thing that can happen to the table.
#[derive(Debug, Clone)]
enum Event {
    Connected(u64, bool),
    Disconnected(u64),
    DialFailed(u64),
    DialStarted(u64, bool),
    Introduced(Vec<u64>),
    Pinged(u64, u64),
    Wait(u64),
}

fn event() -> impl proptest::strategy::Strategy<Value = Event> {
    use proptest::prelude::*;
    // Ids from a range larger than the table, so that eviction happens.
    let id = 0u64..(MAX_TRACKED_PEERS as u64 + 64);
    prop_oneof![
        (id.clone(), any::<bool>()).prop_map(|(p, dialed)| Event::Connected(p, dialed)),
        id.clone().prop_map(Event::Disconnected),
        id.clone().prop_map(Event::DialFailed),
        (id.clone(), any::<bool>()).prop_map(|(p, ok)| Event::DialStarted(p, ok)),
        proptest::collection::vec(id.clone(), 0..40).prop_map(Event::Introduced),
        (id, 0u64..1_000_000).prop_map(|(p, rtt)| Event::Pinged(p, rtt)),
        (0u64..20_000).prop_map(Event::Wait),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever happens, in any order: the table stays within its cap and strangers within
    /// theirs, connected peers stay in it unless evicted (and then reported), and the peers to
    /// dial are never connected, being dialed, this node, strangers, out of dial attempts,
    /// waiting out a back-off, or without an address.
    #[test]
    fn the_table_keeps_its_bounds_and_dials_only_who_it_may(
        events in proptest::collection::vec(event(), 1..400),
    ) {
        let own = peer(u64::MAX);
        let keys: Vec<_> = (0..(MAX_TRACKED_PEERS as u64 + 64)).map(peer).collect();
        let mut table = PeerTable::default();
        let mut now = Instant::now();
        let mut connected = HashSet::new();
        for event in events {
            match event {
                Event::Connected(p, dialed) => {
                    if let Some(evicted) = table.connected(keys[p as usize], dialed, now) {
                        connected.insert(keys[p as usize]);
                        if let Some(evicted) = evicted {
                            connected.remove(&evicted);
                        }
                    }
                }
                Event::Disconnected(p) => {
                    table.disconnected(&keys[p as usize], now);
                    connected.remove(&keys[p as usize]);
                }
                Event::DialFailed(p) => {
                    let _ = table.dial_failed(&keys[p as usize], now);
                }
                Event::DialStarted(p, ok) => table.dial_started(&keys[p as usize], ok, now),
                Event::Introduced(ids) => {
                    for p in ids {
                        if let Some(placed) = table.track(keys[p as usize], Newcomer::Named, now)
                            && placed.info.addrs.is_empty()
                        {
                            placed.info.addrs.push("/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap());
                        }
                    }
                }
                Event::Pinged(p, rtt) => {
                    let _ = table.pinged(&keys[p as usize], rtt);
                }
                Event::Wait(ms) => now += Duration::from_millis(ms),
            }
            proptest::prop_assert!(table.len() <= MAX_TRACKED_PEERS);
            proptest::prop_assert!(table.values().filter(|p| p.is_stranger(now)).count() <= MAX_STRANGERS);
            for peer in &connected {
                proptest::prop_assert!(table.get(peer).is_some_and(|p| p.connected));
            }
            let to_dial = table.to_dial(&own, connected.len(), now);
            let busy = connected.len() + table.values().filter(|p| p.dialing).count();
            proptest::prop_assert!(to_dial.len() + busy <= MAX_DIALED_PEERS.max(busy));
            for (id, addrs) in to_dial {
                let info = table.get(&id).unwrap();
                proptest::prop_assert!(!info.connected && !info.dialing && id != own);
                proptest::prop_assert!(!info.is_stranger(now));
                proptest::prop_assert!(info.dial_failures < MAX_DIAL_FAILURES);
                proptest::prop_assert!(info.next_dial.is_none_or(|at| at <= now));
                proptest::prop_assert!(!addrs.is_empty());
            }
        }
    }
}

/// Nodes that know the same peers dial different ones, and dials under way count toward the
/// cap: a mesh where every node dials the lowest ids, and dials again before its dials have
/// opened, piles its connections onto a few peers.
#[test]
fn dials_spread_over_the_peers_and_count_those_under_way() {
    let start = Instant::now();
    let address: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
    let mut table = PeerTable::default();
    for n in 0..4 * MAX_DIALED_PEERS as u64 {
        let placed = table.track(peer(n), Newcomer::Named, start).unwrap();
        placed.info.addrs = vec![address.clone()];
    }
    let chosen_by = |own: u64| -> HashSet<PeerId> {
        let dials = table.to_dial(&peer(1_000 + own), 0, start);
        assert_eq!(dials.len(), MAX_DIALED_PEERS);
        dials.into_iter().map(|(id, _)| id).collect()
    };
    let (first, second) = (chosen_by(1), chosen_by(2));
    let shared = first.intersection(&second).count();
    assert!(
        shared < MAX_DIALED_PEERS / 2,
        "two nodes chose {shared} of the same {MAX_DIALED_PEERS} peers"
    );

    let own = peer(1_001);
    let dials = table.to_dial(&own, 4, start);
    assert_eq!(dials.len(), MAX_DIALED_PEERS - 4);
    for (id, _) in &dials[..10] {
        table.dial_started(id, true, start);
    }
    assert_eq!(
        table.to_dial(&own, 4, start).len(),
        MAX_DIALED_PEERS - 4 - 10,
        "dials under way take their places"
    );
}
