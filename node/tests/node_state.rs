//! The control plane's state machine, driven directly: inputs in, effects out, time as an
//! argument. No sockets, no clock.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use proptest::prelude::*;
use wasmesh_node::core::admission::ADMISSION_TIMEOUT;
use wasmesh_node::core::peers::ForwardAnswer;
use wasmesh_node::core::peers::{MAX_DIALED_PEERS, MAX_TRACKED_PEERS, REDIAL_AFTER};
use wasmesh_node::core::state::{Effect, Input, NodeState};
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::wire::PeerRecord;
use wasmesh_protocol::{ContentHash, Keypair};

/// The address tests say a connection was dialed at.
static DIALED: LazyLock<libp2p::Multiaddr> =
    LazyLock::new(|| "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap());

fn keys(n: u64) -> Keypair {
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    Keypair::from_seed(seed)
}

fn peer(n: u64) -> PeerId {
    wasmesh_keys::identity::peer_id(&keys(n).public()).unwrap()
}

/// Introduces peer `n` with a loopback address, so that it can be dialed.
fn introduce(state: &mut NodeState, n: u64, now: Instant) {
    let record = PeerRecord {
        node: keys(n).public(),
        addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
    };
    state
        .peers
        .take_introductions(&[record], peer(u64::MAX), now, true);
}

#[test]
fn a_first_connection_asks_for_the_manifests_and_a_full_table_closes_new_ones() {
    let mut state = NodeState::new(peer(u64::MAX), false);
    let now = Instant::now();
    let first = state.handle(opened(peer(0), true), now);
    assert_eq!(first, [Effect::AskSync { peer: peer(0) }]);
    assert!(state.admits(&peer(0)), "an open mesh admits everyone");
    assert!(state.handle(opened(peer(0), false), now).is_empty());
    for n in 1..MAX_TRACKED_PEERS as u64 {
        state.handle(opened(peer(n), true), now);
    }
    let refused = peer(MAX_TRACKED_PEERS as u64);
    assert_eq!(
        state.handle(opened(refused, true), now),
        [Effect::Disconnect {
            peer: refused,
            count: Some(Rejection::PeerTableFull)
        }]
    );
    assert_eq!(state.peers.len(), MAX_TRACKED_PEERS);
}

/// A connection this node dialed (to a peer it chose).
fn opened(peer: PeerId, first: bool) -> Input<'static> {
    Input::ConnectionOpened {
        peer,
        first,
        dialed: Some(&DIALED),
    }
}

#[test]
fn in_a_private_mesh_a_peer_is_shut_out_until_admitted_and_disconnected_when_it_expires() {
    let mut state = NodeState::new(peer(u64::MAX), true);
    let now = Instant::now();
    let a = peer(1);
    assert_eq!(
        state.handle(opened(a, true), now),
        [Effect::ShutOut { peer: a }, Effect::AskSync { peer: a }]
    );
    assert!(!state.admits(&a));
    let until_ms = 5_000;
    let admitted = state.handle(
        Input::Membership {
            peer: a,
            until_ms: Some(until_ms),
        },
        now,
    );
    assert_eq!(admitted, [Effect::LetIn { peer: a }]);
    assert!(state.admits(&a));
    let tick = |state: &mut NodeState, wall_ms| {
        state.handle(
            Input::Tick {
                connected: &[a],
                wall_ms,
            },
            now,
        )
    };
    assert!(!tick(&mut state, until_ms - 1).contains(&Effect::ShutOut { peer: a }));
    let expired = tick(&mut state, until_ms);
    assert!(expired.contains(&Effect::ShutOut { peer: a }));
    assert!(expired.contains(&Effect::Disconnect {
        peer: a,
        count: Some(Rejection::MembershipExpired)
    }));
    assert!(!state.admits(&a));
}

#[test]
fn a_peer_without_membership_is_disconnected_and_counted_once() {
    let mut state = NodeState::new(peer(u64::MAX), true);
    let now = Instant::now();
    let (a, silent) = (peer(1), peer(2));
    state.handle(opened(a, true), now);
    state.handle(opened(silent, true), now);
    let refused = |state: &mut NodeState| {
        state.handle(
            Input::Membership {
                peer: a,
                until_ms: None,
            },
            now,
        )
    };
    let counted = Effect::Disconnect {
        peer: a,
        count: Some(Rejection::NotAdmitted),
    };
    assert_eq!(refused(&mut state), [counted]);
    assert_eq!(
        refused(&mut state),
        [Effect::Disconnect {
            peer: a,
            count: None
        }]
    );
    // The silent one is disconnected once its time is up, and not before.
    let tick = |state: &mut NodeState, at| {
        state.handle(
            Input::Tick {
                connected: &[silent],
                wall_ms: 0,
            },
            at,
        )
    };
    let timed_out = Effect::Disconnect {
        peer: silent,
        count: Some(Rejection::AdmissionTimeout),
    };
    assert!(!tick(&mut state, now + ADMISSION_TIMEOUT / 2).contains(&timed_out));
    assert!(tick(&mut state, now + ADMISSION_TIMEOUT).contains(&timed_out));
    assert_eq!(state.pending_admission(), 0);
}

#[test]
fn a_lost_peer_is_dialed_again_after_its_back_off() {
    let mut state = NodeState::new(peer(u64::MAX), false);
    let start = Instant::now();
    let a = peer(1);
    introduce(&mut state, 1, start);
    let dial = |state: &mut NodeState, at| state.handle(Input::MaybeDial { connected: 0 }, at);
    assert!(matches!(&dial(&mut state, start)[..], [Effect::Dial { peer, .. }] if *peer == a));
    assert!(dial(&mut state, start).is_empty(), "a dial is under way");
    state.handle(Input::DialFailed { peer: a }, start);
    // Two failures' back-off: 2 s.
    assert!(dial(&mut state, start + REDIAL_AFTER).is_empty());
    assert_eq!(dial(&mut state, start + REDIAL_AFTER * 2).len(), 1);
    state.handle(opened(a, true), start);
    state.handle(Input::ConnectionClosed { peer: a }, start);
    assert!(dial(&mut state, start).is_empty());
    assert_eq!(dial(&mut state, start + REDIAL_AFTER).len(), 1);
}

#[test]
fn pings_measure_the_peer_and_routing_probes_dial_it_once() {
    let mut state = NodeState::new(peer(u64::MAX), false);
    let now = Instant::now();
    let a = peer(1);
    introduce(&mut state, 1, now);
    let probe = |state: &mut NodeState| state.handle(Input::ProbeWanted { peer: a }, now);
    assert_eq!(probe(&mut state).len(), 1);
    assert!(probe(&mut state).is_empty(), "already being dialed");
    state.handle(opened(a, true), now);
    state.handle(
        Input::Pinged {
            peer: a,
            rtt_us: 800,
        },
        now,
    );
    state.handle(
        Input::Pinged {
            peer: a,
            rtt_us: 1_600,
        },
        now,
    );
    assert_eq!(state.peers.get(&a).unwrap().rtt_us, Some(900));
}

/// One input, from a small set of peers (more than the table holds).
#[derive(Debug, Clone)]
enum Step {
    Opened(u64, bool, bool),
    Closed(u64),
    DialFailed(u64),
    Pinged(u64, u64),
    Probe(u64),
    Membership(u64, Option<u64>),
    ForwardAnswered(u64, u64),
    Introduced(Vec<u64>),
    MaybeDial,
    Tick(u64),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0u64..(MAX_TRACKED_PEERS as u64 + 40);
    prop_oneof![
        (id.clone(), any::<bool>(), any::<bool>()).prop_map(|(p, f, d)| Step::Opened(p, f, d)),
        id.clone().prop_map(Step::Closed),
        id.clone().prop_map(Step::DialFailed),
        (id.clone(), 1u64..100_000).prop_map(|(p, r)| Step::Pinged(p, r)),
        id.clone().prop_map(Step::Probe),
        (id.clone(), prop::option::of(0u64..20_000)).prop_map(|(p, u)| Step::Membership(p, u)),
        (id.clone(), 0u64..1_000_000).prop_map(|(p, us)| Step::ForwardAnswered(p, us)),
        prop::collection::vec(id, 0..20).prop_map(Step::Introduced),
        Just(Step::MaybeDial),
        (0u64..20_000).prop_map(Step::Tick),
        (0u64..15_000).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of inputs: the table stays within its cap; dials go only to peers that
    /// are neither this node, connected, nor already being dialed, and at most to fill the
    /// connections up to `MAX_DIALED_PEERS`; a peer shut out of gossip is not admitted until
    /// let in; nothing panics.
    #[test]
    fn the_state_keeps_its_bounds_whatever_happens(
        steps in prop::collection::vec(step(), 1..300),
        private_mesh in any::<bool>(),
    ) {
        let own = peer(u64::MAX);
        let ids: Vec<PeerId> = (0..(MAX_TRACKED_PEERS as u64 + 40)).map(peer).collect();
        let mut state = NodeState::new(own, private_mesh);
        let mut now = Instant::now();
        let mut connected: HashSet<PeerId> = HashSet::new();
        for step in steps {
            let before = state.clone();
            let bounded = matches!(step, Step::MaybeDial | Step::Tick(_));
            let effects = match step {
                Step::Opened(p, first, dialed) => {
                    let peer = ids[p as usize];
                    let dialed = dialed.then_some(&*DIALED);
                    let effects = state.handle(Input::ConnectionOpened { peer, first, dialed }, now);
                    connected.insert(peer);
                    for effect in &effects {
                        if let Effect::Disconnect { peer, .. } = effect {
                            connected.remove(peer);
                        }
                    }
                    effects
                }
                Step::Closed(p) => {
                    connected.remove(&ids[p as usize]);
                    state.handle(Input::ConnectionClosed { peer: ids[p as usize] }, now)
                }
                Step::DialFailed(p) => state.handle(Input::DialFailed { peer: ids[p as usize] }, now),
                Step::Pinged(p, rtt_us) => state.handle(Input::Pinged { peer: ids[p as usize], rtt_us }, now),
                Step::Probe(p) => state.handle(Input::ProbeWanted { peer: ids[p as usize] }, now),
                Step::Membership(p, until_ms) => state.handle(Input::Membership { peer: ids[p as usize], until_ms }, now),
                Step::ForwardAnswered(p, exec_us) => {
                    let answer = ForwardAnswer { peer: ids[p as usize], hash: ContentHash::of(b"m"), exec_us, took_us: exec_us + 300 };
                    state.handle(Input::ForwardAnswered(answer), now)
                }
                Step::Introduced(ns) => {
                    for n in ns {
                        introduce(&mut state, n, now);
                    }
                    Vec::new()
                }
                Step::MaybeDial => state.handle(Input::MaybeDial { connected: connected.len() }, now),
                Step::Tick(wall_ms) => {
                    let open: Vec<PeerId> = connected.iter().copied().collect();
                    state.handle(Input::Tick { connected: &open, wall_ms }, now)
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    Vec::new()
                }
            };
            prop_assert!(state.peers.len() <= MAX_TRACKED_PEERS);
            let dials: Vec<&PeerId> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Dial { peer, .. } => Some(peer),
                    _ => None,
                })
                .collect();
            if bounded {
                prop_assert!(dials.len() + connected.len() <= MAX_DIALED_PEERS.max(connected.len()));
            }
            for peer in dials {
                prop_assert!(*peer != own);
                let was = before.peers.get(peer);
                prop_assert!(was.is_some_and(|p| !p.connected && !p.dialing));
            }
            for effect in &effects {
                if let Effect::ShutOut { peer } = effect {
                    prop_assert!(!state.admits(peer));
                }
            }
        }
    }
}

/// A neighbour claiming an exact coordinate (error 0) would get the full weight of every
/// update: its pings do not move this node's coordinate, and are counted. One claiming a
/// plausible error moves it by at most this node's error bound per ping.
#[test]
fn a_neighbour_with_an_implausible_coordinate_cannot_drag_this_node() {
    use wasmesh_protocol::coordinates::{Coordinate, DIMENSIONS};
    let mut state = NodeState::new(peer(u64::MAX), false);
    let now = Instant::now();
    let liar = peer(1);
    state.handle(opened(liar, true), now);
    let far = Coordinate {
        vec: [50_000.0; DIMENSIONS],
        height: 0.1,
        error: 0.0,
    };
    state.peers.get_mut(&liar).unwrap().coordinate = Some(far);
    let before = state.coordinate;
    let ping = Input::Pinged {
        peer: liar,
        rtt_us: 20_000,
    };
    assert_eq!(
        state.handle(ping, now),
        [Effect::Count {
            peer: liar,
            reason: Rejection::CoordinateImplausible
        }]
    );
    assert_eq!(state.coordinate, before);
    state.peers.get_mut(&liar).unwrap().coordinate = Some(Coordinate { error: 0.05, ..far });
    assert!(state.handle(ping, now).is_empty());
    let bound = before.error * 20.0;
    assert!(
        state.coordinate.moved_from(&before) <= bound + 1e-9,
        "moved {} ms, bound {bound} ms",
        state.coordinate.moved_from(&before)
    );
}
