//! What the model assumes of a node beyond its code: its execution slots, its guests' mean
//! execution time, and what checking a manifest's signature costs.

/// Cost of checking a manifest's signature before forwarding it (measured: 77 us).
pub(crate) const VALIDATE_US: u64 = 80;
/// Execution slots per node and mean execution time, as the router sees them.
pub(crate) const CAPACITY: u32 = 2;
pub(crate) const MEAN_EXEC_US: u64 = 1_000;
