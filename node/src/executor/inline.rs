//! Running short requests on the calling thread, and long ones on a guest thread.
//!
//! Handing a request to a guest thread and back costs two thread wake-ups, more than a small
//! guest's whole run. So a request first runs where it is, on the async runtime's worker, under a
//! small budget: [`INLINE_FUEL`] and [`INLINE_TIME`] (or its own limits when they are lower).
//! Guests are pure and every run gets a fresh instance, so a run that overruns the budget is
//! simply thrown away and the request runs again on a guest thread with its full limits. The
//! module is then kept off the inline path for [`OFF_INLINE_FOR`], so a slow or hostile guest
//! costs a worker at most one budget now and then, and never holds it for its deadline.
//!
//! Why the budget holds whatever the guest does: every shape of guest code meets a fuel check
//! within [`super::metering::STRAIGHT_LINE_POINTS`] operators or one bulk operation, which is
//! charged for its length before it runs, so a bulk operation larger than the inline fuel traps
//! before it starts; host calls pay for their work in chunks; a guest that asks to sleep is
//! moved off at once. So an inline run ends within its fuel (about a millisecond of plain
//! code), or at the latest when the watchdog stops it at [`INLINE_TIME`] (memory-bound code that
//! misses the caches can be slower per point). What runs before guest code, creating the
//! instance, is bounded by the module itself: a module whose instantiation writes more than
//! [`INLINE_INIT_BYTES`] (data segments, initial tables) never runs inline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmesh_protocol::Limits;

use super::GuestError;

/// Fuel a request may use inline (about a millisecond of guest code).
pub(crate) const INLINE_FUEL: u64 = 1_000_000;

/// Time a request may take inline. Fuel bounds the guest's own work; this catches time spent
/// outside it (host calls), and is generous because a busy machine preempts threads for
/// milliseconds: a preempted run that overran only this would be run twice for nothing.
pub(crate) const INLINE_TIME: Duration = Duration::from_millis(20);

/// How long a module that overran the inline budget runs on guest threads only.
pub(crate) const OFF_INLINE_FOR: Duration = Duration::from_secs(30);

/// A module whose instantiation writes more than this (active data segments, initial table
/// elements) never runs inline: creating its instance alone could hold a worker for
/// milliseconds.
pub(crate) const INLINE_INIT_BYTES: u64 = 1 << 20;

/// Per module: until when it runs on guest threads only.
#[derive(Debug, Default)]
pub(crate) struct InlineRecord {
    /// Milliseconds since the executor started; 0: never overran; `u64::MAX`: never inline.
    off_until_ms: AtomicU64,
}

impl InlineRecord {
    /// The record of a module whose instantiation writes `init_bytes`.
    pub(crate) fn for_module(init_bytes: u64) -> Self {
        let record = Self::default();
        if init_bytes > INLINE_INIT_BYTES {
            record.off_until_ms.store(u64::MAX, Ordering::Relaxed);
        }
        record
    }

    /// Whether the module may try a run inline at `now_ms`.
    pub(crate) fn allowed(&self, now_ms: u64) -> bool {
        self.off_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Takes the module off the inline path for a while.
    pub(crate) fn overran(&self, now_ms: u64) {
        let until = now_ms.saturating_add(OFF_INLINE_FOR.as_millis() as u64);
        self.off_until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

/// The budget of an inline run: the request's limits and deadline, lowered to the inline ones.
pub(crate) fn budget(limits: &Limits, deadline: Instant, now: Instant) -> (Limits, Instant) {
    let inline = Limits {
        fuel: limits.fuel.min(INLINE_FUEL),
        ..*limits
    };
    (inline, deadline.min(now + INLINE_TIME))
}

/// Whether an inline run's failure is only the inline budget running out (so the request must
/// run again with its own limits), rather than the request's own limits.
pub(crate) fn overran_budget(
    error: &GuestError,
    limits: &Limits,
    deadline: Instant,
    inline_deadline: Instant,
) -> bool {
    match error {
        GuestError::FuelExhausted { .. } => limits.fuel > INLINE_FUEL,
        GuestError::Timeout { .. } => deadline > inline_deadline,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(fuel: u64) -> Limits {
        Limits {
            fuel,
            ..Limits::default()
        }
    }

    #[test]
    fn only_the_budget_running_out_sends_a_request_to_a_blocking_thread() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        let (inline, inline_deadline) = budget(&limits(10_000_000), deadline, now);
        assert_eq!(inline.fuel, INLINE_FUEL);
        assert_eq!(inline_deadline, now + INLINE_TIME);
        let fuel = GuestError::FuelExhausted { fuel: INLINE_FUEL };
        let timeout = GuestError::Timeout { timeout_ms: 2_000 };
        assert!(overran_budget(
            &fuel,
            &limits(10_000_000),
            deadline,
            inline_deadline
        ));
        assert!(overran_budget(
            &timeout,
            &limits(10_000_000),
            deadline,
            inline_deadline
        ));
        // A request whose own limits are the lower ones failed for real.
        assert!(!overran_budget(
            &fuel,
            &limits(1_000),
            deadline,
            inline_deadline
        ));
        let soon = now + Duration::from_micros(500);
        let (_, own_deadline) = budget(&limits(10_000_000), soon, now);
        assert!(!overran_budget(
            &timeout,
            &limits(10_000_000),
            soon,
            own_deadline
        ));
        let trap = GuestError::Trap {
            detail: "unreachable".into(),
        };
        assert!(!overran_budget(
            &trap,
            &limits(10_000_000),
            deadline,
            inline_deadline
        ));
    }

    #[test]
    fn a_module_with_a_large_instantiation_never_runs_inline() {
        let record = InlineRecord::for_module(INLINE_INIT_BYTES + 1);
        assert!(!record.allowed(u64::MAX - 1));
        record.overran(1_000);
        assert!(!record.allowed(u64::MAX - 1));
        assert!(InlineRecord::for_module(INLINE_INIT_BYTES).allowed(0));
    }

    #[test]
    fn an_overrun_keeps_the_module_off_the_inline_path_for_a_while() {
        let record = InlineRecord::default();
        assert!(record.allowed(1_000));
        record.overran(1_000);
        assert!(!record.allowed(1_000 + OFF_INLINE_FOR.as_millis() as u64 - 1));
        assert!(record.allowed(1_000 + OFF_INLINE_FOR.as_millis() as u64));
    }
}
