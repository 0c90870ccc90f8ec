//! Running a request on this node, for a client or for a peer that forwarded it, and this
//! node's load as its statuses report it.
//!
//! [`LocalLoad`] is shared by everything that runs or reports requests: the request path and
//! the forward server count what they run in it (a guard, released wherever the request stops),
//! the event loop reads it into each status, and the daemon reads it while it drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use wasmesh_protocol::Limits;

use crate::counted::Counted;
use crate::executor::{CompiledModule, Executor, GuestError, Output, Request};
use crate::metrics::Metrics;

/// This node's load: requests running here and whether it is stopping.
#[derive(Debug)]
pub(crate) struct LocalLoad {
    in_flight: AtomicU32,
    stopping: AtomicBool,
    capacity: u32,
}

impl LocalLoad {
    /// No request running, for a node with `capacity` execution slots.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
        }
    }

    /// Requests running or queued here now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Guests that can run at once.
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Whether the node has started to stop.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Marks the node as stopping; whether it already was.
    pub(crate) fn stop(&self) -> bool {
        self.stopping.swap(true, Ordering::Relaxed)
    }
}

/// Runs requests on this node's executor, counting them in its load and metrics.
#[derive(Clone)]
pub(crate) struct LocalRunner {
    executor: Executor,
    metrics: Arc<Metrics>,
    load: Arc<LocalLoad>,
}

impl LocalRunner {
    /// A runner on `executor`.
    pub(crate) fn new(executor: Executor, metrics: Arc<Metrics>, load: Arc<LocalLoad>) -> Self {
        Self {
            executor,
            metrics,
            load,
        }
    }

    /// The load this runner counts in.
    pub(crate) fn load(&self) -> &LocalLoad {
        &self.load
    }

    /// Guests running and waiting for a slot now.
    pub(crate) fn executor_load(&self) -> (usize, usize) {
        self.executor.load()
    }

    /// Runs a request here; an answer after `deadline` is a timeout.
    pub(crate) async fn run(
        &self,
        module: Arc<CompiledModule>,
        input: Vec<u8>,
        limits: Limits,
        deadline: Instant,
    ) -> Result<Output, GuestError> {
        let started = Instant::now();
        let in_flight = Counted::enter(&self.load.in_flight);
        let result = self
            .executor
            .run_until(module.clone(), Request { input, limits }, deadline)
            .await;
        drop(in_flight);
        let outcome = match &result {
            Ok(output) => {
                module
                    .exec_mean
                    .observe(output.exec_time.as_micros() as u64);
                let queued = started.elapsed().saturating_sub(output.exec_time);
                self.metrics.queue_wait.observe(queued.as_secs_f64());
                self.metrics
                    .execution_duration
                    .observe(output.exec_time.as_secs_f64());
                "ok"
            }
            Err(error) => error.kind().as_str(),
        };
        self.metrics.count_invocation(outcome, "local");
        result
    }
}
