//! The routing policy: where a request should run. Pure, so the node and the scale simulator
//! call the same function.
//!
//! Each candidate holds a ready copy of the module: this node itself (round trip 0) or a peer.
//! The expected completion time of a candidate is its smoothed round-trip time plus its expected
//! queueing delay, `in_flight / capacity x mean execution time`. Candidates that are down (until
//! a time after `now`) or lack the module are never chosen. Ties go to the local node, then to
//! the lower id, so the choice is deterministic.

/// The round trip assumed for a peer whose round trip is not measured (not connected, or not
/// pinged yet), in microseconds: it ranks behind measured near peers.
pub const UNMEASURED_RTT_US: u64 = 50_000;

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

    #[test]
    fn down_peers_come_back_when_their_time_is_up() {
        let mut down = peer(1, 100, 0);
        down.down_until_ms = Some(1_000);
        let other = peer(2, 9_000, 0);
        assert_eq!(choose(&[down.clone(), other.clone()], 999).unwrap().id, 2);
        assert_eq!(choose(&[down, other], 1_000).unwrap().id, 1);
    }
}
