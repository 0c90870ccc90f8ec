//! The routing policy: where a request should run. Pure (times are milliseconds on the caller's
//! clock), so the node and the scale model call the same functions:
//!
//! - [`plan`] turns what a node knows of each holder of a module ([`Holder`]) into the order in
//!   which to try them and the peers worth measuring;
//! - a holder's round trip is its measured one, else an estimate from network coordinates
//!   ([`estimated_rtt_us`]), else [`UNMEASURED_RTT_US`];
//! - feedback: a failed forward marks the peer down for [`DOWN_FOR_MS`]; answers move the means
//!   ([`smooth`], [`Spread`]).
//!
//! Each candidate holds a ready copy of the module: this node itself (round trip 0) or a peer.
//! The expected completion time of a candidate is its smoothed round-trip time plus its expected
//! queueing delay, `in_flight / capacity x mean execution time`. Candidates that are down (until
//! a time after `now`) or lack the module are never chosen. Ties go to the local node, then to
//! the lower id, so the choice is deterministic.

use crate::coordinates::Coordinate;

/// The round trip assumed for a peer whose round trip is not measured (not connected, or not
/// pinged yet), in microseconds: it ranks behind measured near peers.
pub const UNMEASURED_RTT_US: u64 = 50_000;

/// How many of the best-ranked holders whose round trip is only estimated get measured (the node
/// connects to them, and pings them).
pub const PROBE_BEST: usize = 3;

/// How long a peer is skipped after a failed forward before it is tried again, milliseconds.
pub const DOWN_FOR_MS: u64 = 3_000;

/// A peer not heard of for this long (milliseconds) is not routed to: statuses come every few
/// seconds, and a crashed peer falls silent.
pub const STALE_AFTER_MS: u64 = 10_000;

/// The mean execution time assumed where none has been seen yet, microseconds.
pub const DEFAULT_EXEC_US: u64 = 1_000;

/// Folds one sample into a smoothed mean (weight 1/8 for the new sample, as TCP smooths round
/// trips). Used for round trips, execution times and slot hold times alike.
pub fn smooth(mean: u64, sample: u64) -> u64 {
    mean.saturating_mul(7).saturating_add(sample) / 8
}

/// How long forwarded requests to one peer take, as a smoothed mean and mean deviation (as TCP
/// keeps for its retransmission timer), so that a forward can be called slow at about its p95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Smoothed duration, microseconds.
    pub mean_us: u64,
    /// Smoothed absolute deviation from the mean, microseconds.
    pub dev_us: u64,
}

impl Spread {
    /// The spread after a first sample.
    pub fn first(sample_us: u64) -> Self {
        Self {
            mean_us: sample_us,
            dev_us: sample_us / 2,
        }
    }

    /// Folds in one more sample.
    pub fn observe(&mut self, sample_us: u64) {
        let error = self.mean_us.abs_diff(sample_us);
        self.dev_us = self.dev_us.saturating_mul(3).saturating_add(error) / 4;
        self.mean_us = smooth(self.mean_us, sample_us);
    }

    /// A duration few requests exceed: the mean plus four deviations.
    pub fn high_us(&self) -> u64 {
        self.mean_us.saturating_add(self.dev_us.saturating_mul(4))
    }
}

/// No forward is hedged before it has had this long (microseconds): below it, a second copy
/// costs more than it can save.
pub const HEDGE_FLOOR_US: u64 = 2_000;

/// When to send a copy of a forwarded request to the next candidate: once the first has taken
/// longer than forwards to that peer usually take (`spread`), or, with no history yet, twice
/// the expected completion time (round trip plus execution).
pub fn hedge_after_us(spread: Option<&Spread>, expected_us: u64) -> u64 {
    spread
        .map_or(expected_us.saturating_mul(2), Spread::high_us)
        .max(HEDGE_FLOOR_US)
}

/// What the router knows of one place a request could run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<Id> {
    /// Who (a peer id, or a node index in the simulator).
    pub id: Id,
    /// Whether this is the node deciding (round trip 0).
    pub local: bool,
    /// Smoothed round-trip time in microseconds (0 for local).
    pub rtt_us: u64,
    /// Requests it is running or queueing.
    pub in_flight: u32,
    /// Requests it can run at once.
    pub capacity: u32,
    /// Mean execution time of this module there, in microseconds.
    pub mean_exec_us: u64,
    /// Whether it holds the module ready.
    pub has_module: bool,
    /// Marked down until this time (ms, the caller's clock); `None` when up.
    pub down_until_ms: Option<u64>,
}

impl<Id> Candidate<Id> {
    /// Whether it may be chosen at `now_ms`.
    pub fn is_eligible(&self, now_ms: u64) -> bool {
        self.has_module && self.down_until_ms.is_none_or(|until| now_ms >= until)
    }

    /// Expected completion time in microseconds: round trip plus expected queueing.
    pub fn expected_us(&self) -> u64 {
        let rtt = if self.local { 0 } else { self.rtt_us };
        let queueing = if self.capacity == 0 {
            // No capacity reported: as if a full queue of one execution.
            u64::from(self.in_flight.max(1)).saturating_mul(self.mean_exec_us)
        } else {
            u64::from(self.in_flight).saturating_mul(self.mean_exec_us) / u64::from(self.capacity)
        };
        rtt.saturating_add(queueing)
    }
}

/// The eligible candidates, best first: the order in which to try them (failover included).
pub fn rank<Id: Ord>(candidates: &[Candidate<Id>], now_ms: u64) -> Vec<&Candidate<Id>> {
    let mut eligible: Vec<&Candidate<Id>> = candidates
        .iter()
        .filter(|c| c.is_eligible(now_ms))
        .collect();
    eligible.sort_by(|a, b| {
        a.expected_us()
            .cmp(&b.expected_us())
            .then(b.local.cmp(&a.local))
            .then(a.id.cmp(&b.id))
    });
    eligible
}

/// What a node knows of one holder of a ready copy of a module: itself, or a peer whose status
/// lists the module's blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder<Id> {
    /// Who.
    pub id: Id,
    /// Whether this is the node deciding.
    pub local: bool,
    /// Measured (smoothed ping) round trip, microseconds.
    pub measured_rtt_us: Option<u64>,
    /// Its network coordinate, when it has reported one.
    pub coordinate: Option<Coordinate>,
    /// Requests it is running or queueing (its last report plus what this node sent since).
    pub in_flight: u32,
    /// Requests it can run at once.
    pub capacity: u32,
    /// Mean execution time of this module there, microseconds, when seen.
    pub mean_exec_us: Option<u64>,
    /// Marked down until then (after a failed forward).
    pub down_until_ms: Option<u64>,
    /// When it was last heard of (its last status); the local node is always current.
    pub heard_ms: u64,
}

/// The round trip to a peer never measured, estimated from network coordinates when both are
/// settled enough to trust.
pub fn estimated_rtt_us(own: &Coordinate, theirs: Option<&Coordinate>) -> Option<u64> {
    let theirs = theirs?;
    (own.is_trusted() && theirs.is_trusted()).then(|| (own.distance_ms(theirs) * 1000.0) as u64)
}

/// What a router does with a request: the holders to try, best first, and those among the best
/// that should be measured so that later requests compare measured round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<Id> {
    /// The order in which to try the eligible holders (failover included).
    pub order: Vec<Id>,
    /// Holders among the first [`PROBE_BEST`] of `order` whose round trip is only estimated.
    pub probe: Vec<Id>,
}

/// The candidate a holder makes, seen from `own` coordinate; a holder never heard of in
/// execution takes `default_exec_us`.
pub fn candidate<Id: Clone>(
    holder: &Holder<Id>,
    own: &Coordinate,
    default_exec_us: u64,
) -> Candidate<Id> {
    let rtt_us = if holder.local {
        0
    } else {
        holder
            .measured_rtt_us
            .or_else(|| estimated_rtt_us(own, holder.coordinate.as_ref()))
            .unwrap_or(UNMEASURED_RTT_US)
    };
    Candidate {
        id: holder.id.clone(),
        local: holder.local,
        rtt_us,
        in_flight: holder.in_flight,
        capacity: holder.capacity,
        mean_exec_us: holder.mean_exec_us.unwrap_or(default_exec_us),
        has_module: true,
        down_until_ms: holder.down_until_ms,
    }
}

/// Plans a request at `now_ms`: peers heard of within [`STALE_AFTER_MS`] and up are ranked with
/// [`rank`]; a holder without a mean execution time takes the local one (`local_exec_us`), else
/// [`DEFAULT_EXEC_US`].
pub fn plan<Id: Ord + Clone>(
    holders: &[Holder<Id>],
    own: &Coordinate,
    local_exec_us: Option<u64>,
    now_ms: u64,
) -> Plan<Id> {
    let default_exec_us = local_exec_us.unwrap_or(DEFAULT_EXEC_US);
    let current: Vec<&Holder<Id>> = holders
        .iter()
        .filter(|h| h.local || now_ms.saturating_sub(h.heard_ms) <= STALE_AFTER_MS)
        .collect();
    let candidates: Vec<Candidate<Id>> = current
        .iter()
        .map(|h| candidate(h, own, default_exec_us))
        .collect();
    let order: Vec<Id> = rank(&candidates, now_ms)
        .into_iter()
        .map(|c| c.id.clone())
        .collect();
    let probe = order
        .iter()
        .take(PROBE_BEST)
        .filter(|id| {
            current
                .iter()
                .any(|h| h.id == **id && !h.local && h.measured_rtt_us.is_none())
        })
        .cloned()
        .collect();
    Plan { order, probe }
}

/// Until when a peer is skipped after a failed forward at `now_ms`.
pub fn down_after_failure(now_ms: u64) -> u64 {
    now_ms.saturating_add(DOWN_FOR_MS)
}

/// The best candidate, if any is eligible.
pub fn choose<Id: Ord>(candidates: &[Candidate<Id>], now_ms: u64) -> Option<&Candidate<Id>> {
    rank(candidates, now_ms).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u32, rtt_us: u64, in_flight: u32) -> Candidate<u32> {
        Candidate {
            id,
            local: false,
            rtt_us,
            in_flight,
            capacity: 4,
            mean_exec_us: 1_000,
            has_module: true,
            down_until_ms: None,
        }
    }

    #[test]
    fn a_saturated_near_peer_loses_to_an_idle_far_one() {
        let near = peer(1, 500, 40);
        let far = peer(2, 5_000, 0);
        assert_eq!(choose(&[near.clone(), far.clone()], 0).unwrap().id, 2);
        assert_eq!(choose(&[peer(1, 500, 0), far], 0).unwrap().id, 1);
    }

    #[test]
    fn a_steady_peer_is_hedged_soon_and_an_erratic_one_late() {
        let mut steady = Spread::first(10_000);
        let mut erratic = Spread::first(10_000);
        for i in 0..50 {
            steady.observe(10_000 + i % 2 * 200);
            erratic.observe(if i % 2 == 0 { 2_000 } else { 18_000 });
        }
        assert!(hedge_after_us(Some(&steady), 0) < 12_000);
        assert!(hedge_after_us(Some(&erratic), 0) > 30_000);
        assert_eq!(hedge_after_us(None, 5_000), 10_000);
        assert_eq!(hedge_after_us(None, 10), HEDGE_FLOOR_US);
    }

    fn holder(
        id: u32,
        measured_rtt_us: Option<u64>,
        coordinate: Option<Coordinate>,
    ) -> Holder<u32> {
        Holder {
            id,
            local: false,
            measured_rtt_us,
            coordinate,
            in_flight: 0,
            capacity: 4,
            mean_exec_us: None,
            down_until_ms: None,
            heard_ms: 0,
        }
    }

    #[test]
    fn unmeasured_holders_among_the_best_are_probed_and_measured_ones_are_not() {
        let holders = [
            holder(1, Some(900), None),
            holder(2, None, None),
            holder(3, Some(100), None),
            holder(4, None, None),
            holder(5, None, None),
        ];
        let plan = plan(&holders, &Coordinate::default(), None, 0);
        // Measured near peers first, then the unmeasured at the assumed round trip.
        assert_eq!(plan.order, [3, 1, 2, 4, 5]);
        assert_eq!(plan.probe, [2]);
    }

    #[test]
    fn silent_peers_are_not_routed_to_and_the_local_node_always_is() {
        let mut silent = holder(1, Some(10), None);
        silent.heard_ms = 0;
        let mut local = holder(2, None, None);
        local.local = true;
        let plan = plan(
            &[silent, local],
            &Coordinate::default(),
            None,
            STALE_AFTER_MS + 1,
        );
        assert_eq!(plan.order, [2]);
        assert!(plan.probe.is_empty());
    }

    #[test]
    fn a_failed_peer_is_skipped_for_a_while() {
        let mut failed = holder(1, Some(10), None);
        failed.down_until_ms = Some(down_after_failure(5_000));
        let other = holder(2, Some(9_000), None);
        let holders = [failed, other];
        let own = Coordinate::default();
        assert_eq!(plan(&holders, &own, None, 5_000).order, [2]);
        assert_eq!(
            plan(&holders, &own, None, 5_000 + DOWN_FOR_MS).order,
            [1, 2]
        );
    }

    #[test]
    fn down_peers_come_back_when_their_time_is_up() {
        let mut down = peer(1, 100, 0);
        down.down_until_ms = Some(1_000);
        let other = peer(2, 9_000, 0);
        assert_eq!(choose(&[down.clone(), other.clone()], 999).unwrap().id, 2);
        assert_eq!(choose(&[down, other], 1_000).unwrap().id, 1);
    }
}
