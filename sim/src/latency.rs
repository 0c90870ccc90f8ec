//! Latency models: who is how far from whom, as one-way delays in milliseconds.
//!
//! Three models: an explicit matrix, seeded random delays, and geography (cities with
//! coordinates; great-circle distance over two thirds of the speed of light, times a path
//! inflation for real routes, plus an access delay at each end). The real-node harness turns a
//! model into a matrix; the scale model asks for single pairs so it never holds N x N entries.

use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64;

use crate::cities::{CITIES, City, Position};

/// Light in fibre covers about 200 km per millisecond (two thirds of c).
const FIBRE_KM_PER_MS: f64 = 199.86;
/// Real routes are longer than great circles.
pub const PATH_INFLATION: f64 = 1.5;
/// One-way delay of the last mile at each end, in milliseconds.
pub const ACCESS_MS: f64 = 1.0;
const EARTH_RADIUS_KM: f64 = 6371.0;

/// How a scenario's delays are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencyModel {
    /// `matrix[i][j]`: one-way delay from node i to node j.
    Matrix {
        /// Milliseconds.
        matrix: Vec<Vec<f64>>,
    },
    /// Symmetric delays drawn uniformly from `[min_ms, max_ms]` with the scenario's seed.
    Random {
        /// Smallest one-way delay.
        min_ms: f64,
        /// Largest one-way delay.
        max_ms: f64,
    },
    /// Nodes placed in cities, in order (repeating the list when there are more nodes).
    Geo {
        /// City names from the built-in list (see `wasmesh-sim cities`).
        cities: Vec<String>,
    },
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::Random {
            min_ms: 1.0,
            max_ms: 40.0,
        }
    }
}

/// Why a latency model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// The matrix is not N x N.
    #[error("the latency matrix must be {nodes} x {nodes}; row {row} has {len} entries")]
    MatrixShape {
        /// Nodes in the scenario.
        nodes: usize,
        /// The offending row (or the row count when rows are missing).
        row: usize,
        /// Its length.
        len: usize,
    },
    /// A delay is negative or not a number.
    #[error("latency {value} ms at [{row}][{col}] is not a non-negative number")]
    BadDelay {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A city is not in the built-in list.
    #[error("unknown city {0:?} (see `wasmesh-sim cities`)")]
    UnknownCity(String),
    /// The random range is empty or negative.
    #[error("random latency needs 0 <= min_ms <= max_ms")]
    BadRange,
    /// A geographic model without cities.
    #[error("the geographic model needs at least one city")]
    NoCities,
}

/// One-way delays between `nodes` nodes, in milliseconds, plus each node's place name.
#[derive(Debug, Clone)]
pub struct LatencyMatrix {
    /// `one_way_ms[i][j]`: from i to j.
    pub one_way_ms: Vec<Vec<f64>>,
    /// Place of each node (a city, or `node-i`).
    pub places: Vec<String>,
}

impl LatencyMatrix {
    /// Builds the matrix of a model for `nodes` nodes.
    pub fn build(model: &LatencyModel, nodes: usize, seed: u64) -> Result<Self, LatencyError> {
        let generic_places = || (0..nodes).map(|i| format!("node-{i}")).collect();
        match model {
            LatencyModel::Matrix { matrix } => {
                if matrix.len() != nodes {
                    return Err(LatencyError::MatrixShape {
                        nodes,
                        row: matrix.len(),
                        len: matrix.len(),
                    });
                }
                for (row, entries) in matrix.iter().enumerate() {
                    if entries.len() != nodes {
                        return Err(LatencyError::MatrixShape {
                            nodes,
                            row,
                            len: entries.len(),
                        });
                    }
                    for (col, &value) in entries.iter().enumerate() {
                        if !(value >= 0.0 && value.is_finite()) {
                            return Err(LatencyError::BadDelay { row, col, value });
                        }
                    }
                }
                Ok(Self {
                    one_way_ms: matrix.clone(),
                    places: generic_places(),
                })
            }
            LatencyModel::Random { min_ms, max_ms } => {
                if !(0.0 <= *min_ms && min_ms <= max_ms && max_ms.is_finite()) {
                    return Err(LatencyError::BadRange);
                }
                let mut rng = Pcg64::seed_from_u64(seed);
                let mut one_way_ms = vec![vec![0.0; nodes]; nodes];
                let pairs = (0..nodes).flat_map(|i| ((i + 1)..nodes).map(move |j| (i, j)));
                for (i, j) in pairs {
                    let delay = min_ms + (max_ms - min_ms) * rng.random::<f64>();
                    one_way_ms[i][j] = delay;
                    one_way_ms[j][i] = delay;
                }
                Ok(Self {
                    one_way_ms,
                    places: generic_places(),
                })
            }
            LatencyModel::Geo { cities } => {
                if cities.is_empty() {
                    return Err(LatencyError::NoCities);
                }
                let found: Vec<&City> = cities
                    .iter()
                    .map(|name| {
                        City::named(name).ok_or_else(|| LatencyError::UnknownCity(name.clone()))
                    })
                    .collect::<Result<_, _>>()?;
                let placed: Vec<&City> = (0..nodes).map(|i| found[i % found.len()]).collect();
                let one_way_ms = placed
                    .iter()
                    .map(|a| {
                        placed
                            .iter()
                            .map(|b| geo_one_way_ms(a.position(), b.position()))
                            .collect()
                    })
                    .collect();
                Ok(Self {
                    one_way_ms,
                    places: placed.iter().map(|c| c.name.to_owned()).collect(),
                })
            }
        }
    }

    /// Nodes in the matrix.
    pub fn len(&self) -> usize {
        self.one_way_ms.len()
    }

    /// Whether it has no nodes.
    pub fn is_empty(&self) -> bool {
        self.one_way_ms.is_empty()
    }

    /// Round trip between two nodes in milliseconds (0 to itself).
    pub fn rtt_ms(&self, a: usize, b: usize) -> f64 {
        if a == b {
            0.0
        } else {
            self.one_way_ms[a][b] + self.one_way_ms[b][a]
        }
    }
}

/// A position as a unit vector from the Earth's centre: distances between such vectors need no
/// trigonometry per pair, which the scale model computes millions of times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitVector([f64; 3]);

impl From<Position> for UnitVector {
    fn from(p: Position) -> Self {
        let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
        Self([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
    }
}

impl UnitVector {
    /// Great-circle distance in kilometres (from the chord: stable for near points).
    pub fn great_circle_km(&self, other: &UnitVector) -> f64 {
        let chord = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
    }

    /// One-way delay: fibre propagation over an inflated path, plus access at both ends (0 for
    /// the same place).
    pub fn one_way_ms(&self, other: &UnitVector) -> f64 {
        if self == other {
            return 0.0;
        }
        self.great_circle_km(other) * PATH_INFLATION / FIBRE_KM_PER_MS + 2.0 * ACCESS_MS
    }
}

/// Great-circle distance in kilometres.
pub fn great_circle_km(a: Position, b: Position) -> f64 {
    UnitVector::from(a).great_circle_km(&UnitVector::from(b))
}

/// One-way delay between two places (see [`UnitVector::one_way_ms`]).
pub fn geo_one_way_ms(a: Position, b: Position) -> f64 {
    UnitVector::from(a).one_way_ms(&UnitVector::from(b))
}

/// A seeded spot near a random city of the built-in list: the scale model's placement.
pub fn random_position(rng: &mut impl Rng) -> (usize, Position) {
    let index = rng.random_range(0..CITIES.len());
    let city = CITIES[index].position();
    let jitter = |rng: &mut dyn FnMut() -> f64| (rng() - 0.5) * 2.0;
    let mut unit = || rng.random::<f64>();
    (
        index,
        Position {
            lat: (city.lat + jitter(&mut unit)).clamp(-89.0, 89.0),
            lon: city.lon + jitter(&mut unit),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_to_new_york_is_about_forty_ms_one_way() {
        let london = City::named("London").unwrap().position();
        let new_york = City::named("New York").unwrap().position();
        let km = great_circle_km(london, new_york);
        assert!((5500.0..5620.0).contains(&km), "{km}");
        let ms = geo_one_way_ms(london, new_york);
        assert!((40.0..45.0).contains(&ms), "{ms}");
    }

    #[test]
    fn random_matrices_are_symmetric_and_repeatable() {
        let model = LatencyModel::Random {
            min_ms: 2.0,
            max_ms: 9.0,
        };
        let a = LatencyMatrix::build(&model, 6, 3).unwrap();
        let b = LatencyMatrix::build(&model, 6, 3).unwrap();
        assert_eq!(a.one_way_ms, b.one_way_ms);
        for i in 0..6 {
            assert_eq!(a.one_way_ms[i][i], 0.0);
            for j in 0..6 {
                assert_eq!(a.one_way_ms[i][j], a.one_way_ms[j][i]);
                if i != j {
                    assert!((2.0..=9.0).contains(&a.one_way_ms[i][j]));
                }
            }
        }
    }

    #[test]
    fn a_ragged_matrix_is_refused() {
        let model = LatencyModel::Matrix {
            matrix: vec![vec![0.0, 1.0], vec![1.0]],
        };
        assert!(matches!(
            LatencyMatrix::build(&model, 2, 0),
            Err(LatencyError::MatrixShape { row: 1, .. })
        ));
    }
}
