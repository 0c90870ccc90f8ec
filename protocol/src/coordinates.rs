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
    pub fn observe(&mut self, other: &Coordinate, rtt_ms: f64, fallback: &[f64; DIMENSIONS]) {
        if !(rtt_ms.is_finite() && rtt_ms > 0.0 && other.is_valid()) {
            return;
        }
        let estimate = self.distance_ms(other);
        let weight = self.error / (self.error + other.error).max(f64::EPSILON);
        let sample_error = (estimate - rtt_ms).abs() / rtt_ms;
        self.error = (sample_error * ERROR_GAIN * weight
            + self.error * (1.0 - ERROR_GAIN * weight))
            .min(INITIAL_ERROR);
        let step = MOVE_GAIN * weight * (rtt_ms - estimate);
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
                coords[a].observe(&other, rtt(a, b), &direction(a + round));
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
        mine.observe(&nan, 10.0, &east);
        mine.observe(&Coordinate::default(), f64::INFINITY, &east);
        assert_eq!(mine, before);
    }
}
