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
    fn down_peers_come_back_when_their_time_is_up() {
        let mut down = peer(1, 100, 0);
        down.down_until_ms = Some(1_000);
        let other = peer(2, 9_000, 0);
        assert_eq!(choose(&[down.clone(), other.clone()], 999).unwrap().id, 2);
        assert_eq!(choose(&[down, other], 1_000).unwrap().id, 1);
    }
}
