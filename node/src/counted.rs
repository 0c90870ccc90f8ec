//! A count of things in progress that a guard keeps: one more while the guard lives, one fewer
//! when it drops, wherever the future holding it stops.

use std::sync::atomic::{AtomicU32, Ordering};

/// One thing in progress, counted in its counter until the guard drops.
#[derive(Debug)]
pub(crate) struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    /// Counts one more in `counter`.
    pub(crate) fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
