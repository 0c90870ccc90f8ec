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
/// least recently heard one, connected and dialed peers are never evicted, and a table full of
/// those takes no one.
#[test]
fn the_peer_table_is_bounded_and_keeps_its_connections() {
    let mut peers = PeerTable::default();
    let start = Instant::now();
    let connected = peer(u64::MAX);
    peers.track(connected, start).unwrap().connected = true;
    for n in 0..MAX_TRACKED_PEERS as u64 * 3 {
        let info = peers.track(peer(n), start).unwrap();
        info.last_seen = start + std::time::Duration::from_millis(n);
        assert!(peers.len() <= MAX_TRACKED_PEERS);
    }
    assert!(peers.contains(&connected), "a connected peer was evicted");
    let newest = MAX_TRACKED_PEERS as u64 * 3 - 1;
    assert!(peers.contains(&peer(newest)));
    assert!(!peers.contains(&peer(0)), "the least recently heard stayed");

    for info in peers.values_mut() {
        info.connected = true;
    }
    assert!(peers.track(peer(u64::MAX - 1), start).is_none());
    assert_eq!(peers.len(), MAX_TRACKED_PEERS);
}

/// A failed forward seen through a view (a clone of the table) marks the peer down in the table
/// and in every other view at once, and so does the count of forwards under way.
#[test]
fn feedback_through_a_view_is_seen_by_the_table_at_once() {
    let mut table = PeerTable::default();
    let a = peer(1);
    table.track(a, Instant::now()).unwrap();
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
    Connected(u64),
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
        id.clone().prop_map(Event::Connected),
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

    /// Whatever happens, in any order: the table stays within its cap, connected peers stay
    /// in it, and the peers to dial are never connected, being dialed, this node, out of
    /// dial attempts, waiting out a back-off, or without an address.
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
                Event::Connected(p) => {
                    if table.connected(keys[p as usize], now) {
                        connected.insert(keys[p as usize]);
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
                        if let Some(info) = table.track(keys[p as usize], now)
                            && info.addrs.is_empty()
                        {
                            info.addrs.push("/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap());
                        }
                    }
                }
                Event::Pinged(p, rtt) => {
                    let _ = table.pinged(&keys[p as usize], rtt);
                }
                Event::Wait(ms) => now += Duration::from_millis(ms),
            }
            proptest::prop_assert!(table.len() <= MAX_TRACKED_PEERS);
            for peer in &connected {
                proptest::prop_assert!(table.get(peer).is_some_and(|p| p.connected));
            }
            let to_dial = table.to_dial(&own, connected.len(), now);
            proptest::prop_assert!(to_dial.len() + connected.len() <= MAX_DIALED_PEERS.max(connected.len()));
            for (id, addrs) in to_dial {
                let info = table.get(&id).unwrap();
                proptest::prop_assert!(!info.connected && !info.dialing && id != own);
                proptest::prop_assert!(info.dial_failures < MAX_DIAL_FAILURES);
                proptest::prop_assert!(info.next_dial.is_none_or(|at| at <= now));
                proptest::prop_assert!(!addrs.is_empty());
            }
        }
    }
}
