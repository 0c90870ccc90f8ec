//! Waiting for a condition with a deadline: tests synchronise on what they can observe.

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous deadline for anything that crosses processes on a busy CI machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Generous deadline for anything that crosses an in-process mesh.
pub const MESH_DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is checked.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Waits until `condition` holds, checking every 20 ms; panics with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(CHECK_EVERY);
    }
}

/// [`wait_until`] for a condition that awaits.
pub async fn wait_until_async<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
