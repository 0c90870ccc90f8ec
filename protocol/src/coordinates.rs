//! Network coordinates (Vivaldi, with a height): each node places itself in a small space so
//! that the distance between two nodes' coordinates estimates their round trip, and carries its
//! coordinate in its status. A router can then estimate the round trip to a peer it has never
//! pinged, which in a large mesh is most peers.
//!
//! A node moves its coordinate a little after each measured round trip to a peer whose
//! coordinate it knows: towards the peer when the estimate is too long, away when too short,
//! by a step weighted by how sure each side is (Dabek et al., "Vivaldi", SIGCOMM 2004). The
//! height models the access link that every path to the node shares. Pure: the caller supplies
//! the direction used when two coordinates coincide.
//!
//! A peer's coordinate is its own claim. One that claims an error below [`ERROR_FLOOR`] (it
//! would get the full weight of every update; an honest node's error never goes below it), or
//! that is sure of a place the measured round trip contradicts while this node is sure of its
//! own ([`INCONSISTENT_ERROR`], judged against at least [`SHORT_RTT_MS`]), is ignored
//! ([`Observation::Implausible`]). A contradiction still makes this node a little less sure of
//! itself, since it may be the one that is wrong: once most of its samples contradict it, it
//! follows them. No single update moves this node by more than its own error bound (its
//! relative error times the round trip), so a liar can drag it only slowly, and only as far as
//! honest samples let it.

use bincode::{Decode, Encode};

/// Share of the error estimate replaced by each sample.
const ERROR_GAIN: f64 = 0.25;
/// Step size relative to the weighted error.
const MOVE_GAIN: f64 = 0.25;
/// Least height (ms): every path has some access delay.
const MIN_HEIGHT_MS: f64 = 0.1;
/// Error of a node that has no samples yet (relative).
const INITIAL_ERROR: f64 = 1.5;
/// Beyond this relative error an estimate is not trusted.
pub const TRUSTED_ERROR: f64 = 1.0;
/// No coordinate component may leave this range (ms); keeps hostile inputs bounded.
const LIMIT_MS: f64 = 100_000.0;
/// A peer claiming a smaller relative error than this is implausible: no measurement is that
/// exact.
pub const ERROR_FLOOR: f64 = 0.02;
/// A sample whose relative error is above this, from a peer claiming to be trusted, while this
/// node is trusted itself, contradicts the peer's claim.
pub const INCONSISTENT_ERROR: f64 = 4.0;
/// Round trips shorter than this (ms) count as this long when judging a contradiction: between
/// nodes a millisecond apart, an estimate a few milliseconds off is the coordinates' resolution.
pub const SHORT_RTT_MS: f64 = 5.0;
/// The least error bound of a move (relative), so a node sure of itself can still follow a
/// changed network.
const MIN_MOVE_ERROR: f64 = 0.1;

/// What one sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Observation {
    /// The coordinate moved (or stayed) by the sample.
    Taken,
    /// The sample or the peer's coordinate was malformed: nothing changed.
    Invalid,
    /// The peer's coordinate is implausible (see the module docs): nothing changed.
    Implausible,
}

/// Dimensions of the space. Two (the classic choice) cannot hold the globe's round trips well:
/// in the scale model, eight gave estimates with half the error.
pub const DIMENSIONS: usize = 8;

/// A point in [`DIMENSIONS`] dimensions plus a height, in milliseconds of round trip.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
pub struct Coordinate {
    /// Position.
    pub vec: [f64; DIMENSIONS],
    /// Access delay, added to every distance.
    pub height: f64,
    /// Relative error of this node's estimates (0 = exact).
    pub error: f64,
}

impl Default for Coordinate {
    fn default() -> Self {
        Self {
            vec: [0.0; DIMENSIONS],
            height: MIN_HEIGHT_MS,
            error: INITIAL_ERROR,
        }
    }
}

impl Coordinate {
    /// Whether every field is a finite number in range (a peer's coordinate is checked before
    /// use).
    pub fn is_valid(&self) -> bool {
        self.vec
            .iter()
            .chain([&self.height, &self.error])
            .all(|v| v.is_finite() && v.abs() <= LIMIT_MS)
            && self.height >= 0.0
            && self.error >= 0.0
    }

    fn planar_distance(&self, other: &Coordinate) -> f64 {
        self.vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Estimated round trip to `other`, milliseconds.
    pub fn distance_ms(&self, other: &Coordinate) -> f64 {
        self.planar_distance(other) + self.height + other.height
    }

    /// Whether estimates from this coordinate are good enough to route by.
    pub fn is_trusted(&self) -> bool {
        self.error <= TRUSTED_ERROR
    }

    /// Moves towards agreement with one measured round trip `rtt_ms` to a node at `other`.
    /// `fallback` gives the direction to move in when the two coordinates coincide (any
    /// non-zero vector; it is normalised).
    pub fn observe(
        &mut self,
        other: &Coordinate,
        rtt_ms: f64,
        fallback: &[f64; DIMENSIONS],
    ) -> Observation {
        if !(rtt_ms.is_finite() && rtt_ms > 0.0 && other.is_valid()) {
            return Observation::Invalid;
        }
        let estimate = self.distance_ms(other);
        let sample_error = (estimate - rtt_ms).abs() / rtt_ms;
        // Judged against at least `SHORT_RTT_MS`: a millisecond off a round trip shorter than
        // that is an access link's noise, not a lie.
        let miss = (estimate - rtt_ms).abs() / rtt_ms.max(SHORT_RTT_MS);
        let contradicted = self.is_trusted() && other.is_trusted() && miss > INCONSISTENT_ERROR;
        if other.error < ERROR_FLOOR {
            return Observation::Implausible;
        }
        let weight = self.error / (self.error + other.error).max(f64::EPSILON);
        if contradicted {
            // This node may be the one that is wrong: a contradiction does not move it, but
            // makes it a little less sure of itself, so a node most of whose samples contradict
            // it stops trusting its place and follows them again (one liar among honest peers
            // cannot do that).
            let seen = sample_error.min(INITIAL_ERROR);
            self.error = (seen * ERROR_GAIN * weight + self.error * (1.0 - ERROR_GAIN * weight))
                .clamp(ERROR_FLOOR, INITIAL_ERROR);
            return Observation::Implausible;
        }
        // No further than this node's own error bound in one step.
        let bound = self.error.max(MIN_MOVE_ERROR) * rtt_ms;
        // Never below the floor: exact samples would otherwise make an honest node claim an
        // error its peers refuse as implausible.
        self.error = (sample_error * ERROR_GAIN * weight
            + self.error * (1.0 - ERROR_GAIN * weight))
            .clamp(ERROR_FLOOR, INITIAL_ERROR);
        let step = (MOVE_GAIN * weight * (rtt_ms - estimate)).clamp(-bound, bound);
        // The unit vector from `other` to this node, heights included: the difference of the
        // positions and the sum of the heights, over the estimate (the norm of that vector).
        let planar = self.planar_distance(other);
        if planar > 1e-9 && estimate > 0.0 {
            for (mine, theirs) in self.vec.iter_mut().zip(&other.vec) {
                *mine = (*mine + step * (*mine - theirs) / estimate).clamp(-LIMIT_MS, LIMIT_MS);
            }
            let up = (self.height + other.height) / estimate;
            self.height = (self.height + step * up).clamp(MIN_HEIGHT_MS, LIMIT_MS);
        } else {
            let norm = fallback.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 && norm.is_finite() {
                for (mine, direction) in self.vec.iter_mut().zip(fallback) {
                    *mine = (*mine + step * direction / norm).clamp(-LIMIT_MS, LIMIT_MS);
                }
            }
        }
        Observation::Taken
    }

    /// How far this coordinate is from `other`, milliseconds (position and height).
    pub fn moved_from(&self, other: &Coordinate) -> f64 {
        self.planar_distance(other) + (self.height - other.height).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes on a line at 0, 10, 30, 60 ms: after enough samples, estimates match.
    #[test]
    fn coordinates_converge_to_the_measured_round_trips() {
        let places = [0.0f64, 10.0, 30.0, 60.0];
        let rtt = |a: usize, b: usize| (places[a] - places[b]).abs() + 2.0;
        let mut coords = [Coordinate::default(); 4];
        let direction = |k: usize| {
            let mut v = [0.0; DIMENSIONS];
            v[k % DIMENSIONS] = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
            v
        };
        for round in 0..400 {
            for a in 0..4 {
                let b = (a + 1 + round % 3) % 4;
                let other = coords[b];
                let seen = coords[a].observe(&other, rtt(a, b), &direction(a + round));
                // However exact the samples, honest nodes never find each other implausible.
                assert_eq!(seen, Observation::Taken, "round {round}: {a} of {b}");
            }
        }
        for a in 0..4 {
            for b in 0..4 {
                if a != b {
                    let estimate = coords[a].distance_ms(&coords[b]);
                    let error = (estimate - rtt(a, b)).abs() / rtt(a, b);
                    assert!(error < 0.15, "{a}->{b}: {estimate} vs {}", rtt(a, b));
                }
            }
            assert!(coords[a].is_trusted());
        }
    }

    #[test]
    fn hostile_coordinates_are_ignored() {
        let mut mine = Coordinate::default();
        let before = mine;
        let mut nan = Coordinate::default();
        nan.vec[3] = f64::NAN;
        assert!(!nan.is_valid());
        let east = [1.0; DIMENSIONS];
        assert_eq!(mine.observe(&nan, 10.0, &east), Observation::Invalid);
        assert_eq!(
            mine.observe(&Coordinate::default(), f64::INFINITY, &east),
            Observation::Invalid
        );
        assert_eq!(mine, before);
    }

    /// Two nodes of one site, 0.4 ms apart, whose coordinates say 2.5 ms: a few milliseconds
    /// is the coordinates' resolution, not a contradiction, however sure both are.
    #[test]
    fn near_neighbours_a_few_milliseconds_off_are_not_contradictions() {
        let east = [1.0; DIMENSIONS];
        let sure = |x: f64| Coordinate {
            vec: {
                let mut vec = [0.0; DIMENSIONS];
                vec[0] = x;
                vec
            },
            height: 0.1,
            error: 0.2,
        };
        let mut mine = sure(0.0);
        assert!((mine.distance_ms(&sure(2.3)) - 2.5).abs() < 1e-9);
        assert_eq!(mine.observe(&sure(2.3), 0.4, &east), Observation::Taken);
        // Far off a long round trip still is one.
        let mut mine = sure(0.0);
        assert_eq!(
            mine.observe(&sure(500.0), 40.0, &east),
            Observation::Implausible
        );
    }

    /// A peer that claims an error of 0 would get the full weight of every update: it is
    /// ignored. One that claims a plausible error but sits far from what the round trip says
    /// moves this node by at most its error bound per sample, and once this node is sure of
    /// itself, not at all.
    #[test]
    fn a_liar_cannot_drag_the_coordinate_further_than_its_error_bound() {
        let east = [1.0; DIMENSIONS];
        let mut mine = Coordinate::default();
        let far = Coordinate {
            vec: [50_000.0; DIMENSIONS],
            height: 0.1,
            error: 0.0,
        };
        assert_eq!(mine.observe(&far, 20.0, &east), Observation::Implausible);
        assert_eq!(mine, Coordinate::default());
        let claims_a_little = Coordinate {
            error: ERROR_FLOOR,
            ..far
        };
        let before = mine;
        assert_eq!(
            mine.observe(&claims_a_little, 20.0, &east),
            Observation::Taken
        );
        let bound = before.error * 20.0;
        assert!(
            mine.moved_from(&before) <= bound + 1e-9,
            "moved {} ms, bound {bound} ms",
            mine.moved_from(&before)
        );
        // Sure of itself (after honest samples), it no longer takes the liar's word.
        let honest = Coordinate {
            vec: [0.0; DIMENSIONS],
            height: 5.0,
            error: 0.3,
        };
        for _ in 0..200 {
            let _ = mine.observe(&honest, 10.0, &east);
        }
        assert!(mine.is_trusted());
        let sure = mine;
        let claims_trust = Coordinate { error: 0.5, ..far };
        // One liar among honest peers: never moves it, and it stays sure of itself.
        for _ in 0..50 {
            assert_eq!(
                mine.observe(&claims_trust, 20.0, &east),
                Observation::Implausible
            );
            for _ in 0..3 {
                let _ = mine.observe(&honest, 10.0, &east);
            }
            assert!(mine.is_trusted(), "{mine:?}");
        }
        assert!(mine.moved_from(&sure) < 1.0, "{mine:?} vs {sure:?}");
    }

    /// A node sure of a wrong place (1,000 ms from where it is) that every sample contradicts
    /// stops being sure, and then moves to where the samples say.
    #[test]
    fn a_node_sure_of_a_wrong_place_is_corrected_by_the_majority() {
        let east = [1.0; DIMENSIONS];
        let place = |x: f64, error: f64| {
            let mut vec = [0.0; DIMENSIONS];
            vec[0] = x;
            Coordinate {
                vec,
                height: 0.1,
                error,
            }
        };
        let mut mine = place(1_000.0, 0.05);
        let peers = [place(5.0, 0.2), place(-5.0, 0.2)];
        let rtt = 5.2;
        for _ in 0..1_000 {
            for peer in &peers {
                let _ = mine.observe(peer, rtt, &east);
            }
        }
        for peer in &peers {
            let estimate = mine.distance_ms(peer);
            assert!(
                (estimate - rtt).abs() < rtt,
                "{mine:?}: {estimate} ms for {rtt} ms"
            );
        }
    }
}
