//! The node's clocks: wall-clock time in the form the protocol takes it, and the monotonic
//! milliseconds since start that routing decisions read ([`NodeClock`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The clock routing decisions read: milliseconds since this node started (monotonic, and
/// small enough for the atomics peers' feedback is kept in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeClock {
    started: std::time::Instant,
}

impl NodeClock {
    /// A clock that starts now.
    pub(crate) fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
        }
    }

    /// When the node started.
    pub(crate) fn started(&self) -> std::time::Instant {
        self.started
    }

    /// Milliseconds from the node's start to `at`.
    pub(crate) fn ms(&self, at: std::time::Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Milliseconds from the node's start to now.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms(std::time::Instant::now())
    }
}
