//! The built-in list of cities where simulated nodes live, with their coordinates (degrees).

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

/// A place a node can be put.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct City {
    /// Name, as scenarios write it.
    pub name: &'static str,
    /// Latitude in degrees (north positive).
    pub lat: f64,
    /// Longitude in degrees (east positive).
    pub lon: f64,
}

impl City {
    /// The city of this name (case-insensitive).
    pub fn named(name: &str) -> Option<&'static City> {
        CITIES.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Its position.
    pub fn position(&self) -> Position {
        Position {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

const fn city(name: &'static str, lat: f64, lon: f64) -> City {
    City { name, lat, lon }
}

/// Cities on every inhabited continent, roughly where edge sites are.
pub const CITIES: &[City] = &[
    city("Amsterdam", 52.37, 4.90),
    city("Frankfurt", 50.11, 8.68),
    city("London", 51.51, -0.13),
    city("Paris", 48.86, 2.35),
    city("Madrid", 40.42, -3.70),
    city("Milan", 45.46, 9.19),
    city("Stockholm", 59.33, 18.07),
    city("Warsaw", 52.23, 21.01),
    city("Istanbul", 41.01, 28.98),
    city("Moscow", 55.76, 37.62),
    city("New York", 40.71, -74.01),
    city("Ashburn", 39.04, -77.49),
    city("Chicago", 41.88, -87.63),
    city("Dallas", 32.78, -96.80),
    city("Los Angeles", 34.05, -118.24),
    city("San Francisco", 37.77, -122.42),
    city("Seattle", 47.61, -122.33),
    city("Toronto", 43.65, -79.38),
    city("Mexico City", 19.43, -99.13),
    city("Miami", 25.76, -80.19),
    city("Sao Paulo", -23.55, -46.63),
    city("Buenos Aires", -34.60, -58.38),
    city("Santiago", -33.45, -70.67),
    city("Bogota", 4.71, -74.07),
    city("Lagos", 6.52, 3.38),
    city("Nairobi", -1.29, 36.82),
    city("Johannesburg", -26.20, 28.05),
    city("Cairo", 30.04, 31.24),
    city("Dubai", 25.20, 55.27),
    city("Mumbai", 19.08, 72.88),
    city("Bangalore", 12.97, 77.59),
    city("Singapore", 1.35, 103.82),
    city("Jakarta", -6.21, 106.85),
    city("Hong Kong", 22.32, 114.17),
    city("Shanghai", 31.23, 121.47),
    city("Seoul", 37.57, 126.98),
    city("Tokyo", 35.68, 139.69),
    city("Sydney", -33.87, 151.21),
    city("Melbourne", -37.81, 144.96),
    city("Auckland", -36.85, 174.76),
];
