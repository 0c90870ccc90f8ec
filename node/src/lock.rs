//! Locking a `std::sync::Mutex` the one way this crate does it.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking over a poisoned one: every critical section in this crate leaves its
/// data consistent at each step (no invariant spans a panic point), so a panic elsewhere while
/// it was held must not take the node down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
