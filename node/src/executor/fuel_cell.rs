//! The fuel counter of one instance: where the metering code keeps the points a guest has left,
//! and the operations the run, the host calls and the watchdog perform on it from outside the
//! guest (grant, read, charge, stop).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, Ordering};

use wasmer::sys::vm::VMGlobalDefinition;

/// The location of one instance's remaining-fuel counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FuelCell(pub(super) NonNull<VMGlobalDefinition>);

// SAFETY: the pointer is only dereferenced through `exhaust`, whose contract requires the owning
// store to be alive; the value is an aligned 8-byte integer written atomically.
unsafe impl Send for FuelCell {}

impl FuelCell {
    /// A value the watchdog writes to stop a guest: negative, and far enough from `i64::MIN`
    /// that the charges a guest makes before its next check cannot wrap it around.
    const STOPPED: i64 = i64::MIN / 2;

    /// The counter.
    ///
    /// # Safety
    /// The store that owns the instance must be alive while the reference is used.
    unsafe fn atomic(&self) -> &AtomicI64 {
        // SAFETY: `VMGlobalDefinition` is `repr(C, align(16))` and starts with the raw value,
        // whose first 8 bytes hold the i64 counter; the caller keeps the owning store alive.
        // The guest thread reads and writes the same cell with plain aligned 8-byte moves.
        unsafe { AtomicI64::from_ptr(self.0.as_ptr().cast::<i64>()) }
    }

    /// Grants `fuel` before a run.
    ///
    /// # Safety
    /// The store that owns the instance must be alive for the duration of the call.
    pub(crate) unsafe fn set(&self, fuel: u64) {
        let fuel = i64::try_from(fuel).unwrap_or(i64::MAX);
        // SAFETY: the caller keeps the store alive.
        unsafe { self.atomic() }.store(fuel, Ordering::SeqCst);
    }

    /// The fuel left after a run, `None` if it ran out (the counter went negative).
    ///
    /// # Safety
    /// The store that owns the instance must be alive for the duration of the call.
    pub(crate) unsafe fn remaining(&self) -> Option<u64> {
        // SAFETY: the caller keeps the store alive.
        u64::try_from(unsafe { self.atomic() }.load(Ordering::SeqCst)).ok()
    }

    /// Charges `points` of work a host call did for the guest; false if the counter is now
    /// negative (out of fuel, or stopped by the watchdog).
    ///
    /// # Safety
    /// The store that owns the instance must be alive for the duration of the call.
    pub(crate) unsafe fn charge(&self, points: u64) -> bool {
        // At most 2^40 at a time, so that even from `STOPPED` the counter cannot wrap around.
        let points = points.min(1 << 40) as i64;
        // SAFETY: the caller keeps the store alive.
        let before = unsafe { self.atomic() }.fetch_sub(points, Ordering::SeqCst);
        before - points >= 0
    }

    /// Makes the counter negative, so the guest traps at its next check.
    ///
    /// # Safety
    /// The store that owns the instance must be alive for the duration of the call.
    pub(crate) unsafe fn exhaust(&self) {
        // SAFETY: the caller keeps the store alive.
        unsafe { self.atomic() }.store(Self::STOPPED, Ordering::SeqCst);
    }
}
