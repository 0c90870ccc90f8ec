//! Property tests of the routing policy.

use proptest::prelude::*;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::routing::{
    Candidate, Holder, PROBE_BEST, STALE_AFTER_MS, choose, plan, rank,
};

fn candidate() -> impl Strategy<Value = Candidate<u32>> {
    (
        0u32..1000,
        0u64..200_000,
        0u32..64,
        0u32..16,
        1u64..50_000,
        any::<bool>(),
        prop::option::of(0u64..2_000),
    )
        .prop_map(
            |(id, rtt_us, in_flight, capacity, mean_exec_us, has_module, down_until_ms)| {
                Candidate {
                    id,
                    local: false,
                    rtt_us,
                    in_flight,
                    capacity,
                    mean_exec_us,
                    has_module,
                    down_until_ms,
                }
            },
        )
}

/// Holders with distinct ids (their index), up to 12.
fn holders() -> impl Strategy<Value = Vec<Holder<u32>>> {
    proptest::collection::vec(
        (
            prop::option::of(0u64..200_000),
            0u32..64,
            0u32..16,
            prop::option::of(1u64..50_000),
            prop::option::of(0u64..30_000),
            0u64..30_000,
        ),
        0..12,
    )
    .prop_map(|fields| {
        fields
            .into_iter()
            .enumerate()
            .map(
                |(
                    id,
                    (measured_rtt_us, in_flight, capacity, mean_exec_us, down_until_ms, heard_ms),
                )| {
                    Holder {
                        id: id as u32,
                        local: false,
                        measured_rtt_us,
                        coordinate: None,
                        in_flight,
                        capacity,
                        mean_exec_us,
                        down_until_ms,
                        heard_ms,
                    }
                },
            )
            .collect()
    })
}

proptest! {
    #[test]
    fn a_plan_routes_only_to_current_holders_that_are_up_and_probes_only_unmeasured_ones(
        holders in holders(),
        now in 0u64..40_000,
    ) {
        let plan = plan(&holders, &Coordinate::default(), None, now);
        for id in &plan.order {
            let holder = &holders[*id as usize];
            prop_assert!(holder.down_until_ms.is_none_or(|until| now >= until));
            prop_assert!(now.saturating_sub(holder.heard_ms) <= STALE_AFTER_MS);
        }
        let routable = holders
            .iter()
            .filter(|h| h.down_until_ms.is_none_or(|until| now >= until))
            .filter(|h| now.saturating_sub(h.heard_ms) <= STALE_AFTER_MS)
            .count();
        prop_assert_eq!(plan.order.len(), routable);
        prop_assert!(plan.probe.len() <= PROBE_BEST);
        for id in &plan.probe {
            prop_assert!(plan.order.iter().take(PROBE_BEST).any(|o| o == id));
            prop_assert!(holders[*id as usize].measured_rtt_us.is_none());
        }
    }

    #[test]
    fn never_chooses_a_peer_that_is_down_or_lacks_the_module(
        peers in proptest::collection::vec(candidate(), 0..12),
        now in 0u64..2_000,
    ) {
        for chosen in rank(&peers, now) {
            prop_assert!(chosen.has_module);
            prop_assert!(chosen.down_until_ms.is_none_or(|until| now >= until));
        }
        let eligible = peers.iter().filter(|c| c.is_eligible(now)).count();
        prop_assert_eq!(rank(&peers, now).len(), eligible);
    }

    #[test]
    fn prefers_local_when_local_is_idle_and_holds_the_module(
        peers in proptest::collection::vec(candidate(), 0..12),
        mean_exec_us in 1u64..50_000,
        capacity in 1u32..16,
    ) {
        let mut all = peers;
        all.push(Candidate {
            id: 5_000,
            local: true,
            rtt_us: 0,
            in_flight: 0,
            capacity,
            mean_exec_us,
            has_module: true,
            down_until_ms: None,
        });
        prop_assert!(choose(&all, 0).unwrap().local);
    }

    #[test]
    fn picks_the_lower_rtt_peer_when_loads_are_equal(
        a in candidate(),
        rtt_a in 0u64..100_000,
        rtt_b in 0u64..100_000,
    ) {
        prop_assume!(rtt_a != rtt_b);
        let a = Candidate { id: 1, rtt_us: rtt_a, has_module: true, down_until_ms: None, ..a };
        let b = Candidate { id: 2, rtt_us: rtt_b, ..a.clone() };
        let expected = if rtt_a < rtt_b { 1 } else { 2 };
        prop_assert_eq!(choose(&[a, b], 0).unwrap().id, expected);
    }

    #[test]
    fn spreads_load_when_the_nearest_peer_is_saturated(
        near_rtt in 0u64..10_000,
        extra_rtt in 1u64..10_000,
        capacity in 1u32..16,
        mean_exec_us in 1_000u64..20_000,
    ) {
        let near = Candidate {
            id: 1,
            local: false,
            rtt_us: near_rtt,
            in_flight: 0,
            capacity,
            mean_exec_us,
            has_module: true,
            down_until_ms: None,
        };
        let far = Candidate { id: 2, rtt_us: near_rtt + extra_rtt, ..near.clone() };
        prop_assert_eq!(choose(&[near.clone(), far.clone()], 0).unwrap().id, 1);
        // Enough queued on the near peer to outweigh the extra round trip: the far one wins.
        let queued = ((extra_rtt * u64::from(capacity)) / mean_exec_us + 1) as u32 + capacity;
        let saturated = Candidate { in_flight: queued, ..near };
        prop_assert_eq!(choose(&[saturated, far], 0).unwrap().id, 2);
    }

    #[test]
    fn the_choice_is_deterministic(peers in proptest::collection::vec(candidate(), 0..12), now in 0u64..2_000) {
        let mut reversed = peers.clone();
        reversed.reverse();
        let first: Vec<u32> = rank(&peers, now).iter().map(|c| c.id).collect();
        let second: Vec<u32> = rank(&reversed, now).iter().map(|c| c.id).collect();
        // Equal ids may come in either order; compare the expected times instead.
        let times = |ids: &[u32], list: &[Candidate<u32>]| -> Vec<u64> {
            ids.iter().map(|id| list.iter().filter(|c| c.id == *id).map(|c| c.expected_us()).min().unwrap_or(0)).collect()
        };
        prop_assert_eq!(times(&first, &peers), times(&second, &peers));
    }
}
