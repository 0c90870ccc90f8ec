//! Execution slots, shared fairly between modules.
//!
//! At most `total` guests run at once. A module may hold at most `per_module` of the slots, so
//! a flood of requests to one module — say one that loops until its deadline — always leaves
//! room for others. Waiting requests are served round-robin across modules and in arrival order
//! within a module. At most `max_queued` requests wait; more are refused at once (`busy`), and so
//! is a request that, by the module's mean time in a slot, would not start before its deadline.
//!
//! Cancellation safety: everything a request holds is a guard. A granted slot travels to its
//! waiter as a [`Slot`] value, so a waiter that has gone (its future dropped before or after the
//! grant) drops the `Slot` with its channel and the slot goes to the next waiter. A place in the
//! queue is a guard too: dropping a waiting future removes its place at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use wasmesh_protocol::ContentHash;

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// The wait queue is full.
    QueueFull { running: usize, waiting: usize },
    /// By the module's mean time in a slot, the request would not start before its deadline.
    WouldMissDeadline { expected_wait: Duration },
    /// The deadline passed while waiting.
    DeadlinePassed,
}

struct Waiter {
    id: u64,
    grant: oneshot::Sender<Slot>,
}

#[derive(Default)]
struct State {
    free: usize,
    running: HashMap<ContentHash, usize>,
    waiting: HashMap<ContentHash, VecDeque<Waiter>>,
    /// Modules with waiters, in round-robin order.
    order: VecDeque<ContentHash>,
    queued: usize,
    next_waiter: u64,
    /// Smoothed time a slot of each module is held, in microseconds.
    mean_hold_us: HashMap<ContentHash, u64>,
}

pub(crate) struct Slots {
    state: Mutex<State>,
    total: usize,
    per_module: usize,
    max_queued: usize,
}

/// A held slot; released (and handed to the next waiter) when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    module: ContentHash,
    granted_at: Instant,
    /// False for a slot that was never handed over (its waiter had gone): dropping it must not
    /// release anything.
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let held_us = self.granted_at.elapsed().as_micros() as u64;
        let mut state = self.slots.lock();
        state.release(self.module, held_us);
        self.slots.dispatch(&mut state);
    }
}

/// A request's place in the queue; dropping it (the request gave up or its client went away)
/// removes the place.
struct Place<'a> {
    slots: &'a Slots,
    module: ContentHash,
    id: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.remove_waiter(self.module, self.id);
    }
}

impl State {
    #[cfg(test)]
    fn running_total(&self) -> usize {
        self.running.values().sum()
    }

    fn take(&mut self, module: ContentHash) {
        self.free -= 1;
        *self.running.entry(module).or_default() += 1;
    }

    fn release(&mut self, module: ContentHash, held_us: u64) {
        if let Some(running) = self.running.get_mut(&module) {
            *running -= 1;
            if *running == 0 {
                self.running.remove(&module);
            }
        }
        self.free += 1;
        let mean = self.mean_hold_us.entry(module).or_insert(held_us);
        *mean = wasmesh_protocol::routing::smooth(*mean, held_us);
    }

    fn remove_waiter(&mut self, module: ContentHash, id: u64) {
        let Some(queue) = self.waiting.get_mut(&module) else {
            return;
        };
        let before = queue.len();
        queue.retain(|waiter| waiter.id != id);
        self.queued -= before - queue.len();
        if queue.is_empty() {
            self.waiting.remove(&module);
            self.order.retain(|m| *m != module);
        }
    }

    /// How long a new waiter of `module` would wait, by the module's mean time in a slot: the
    /// waves of its own queue (at most `per_module` at once) or of the whole queue, whichever
    /// is longer. None while the module has no history.
    fn expected_wait(
        &self,
        module: &ContentHash,
        total: usize,
        per_module: usize,
    ) -> Option<Duration> {
        let mean_us = *self.mean_hold_us.get(module)?;
        let own = self.waiting.get(module).map_or(0, VecDeque::len) + 1;
        let waves = own
            .div_ceil(per_module)
            .max((self.queued + 1).div_ceil(total));
        Some(Duration::from_micros(mean_us.saturating_mul(waves as u64)))
    }
}

impl Slots {
    pub(crate) fn new(total: usize, max_queued: usize) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(Self {
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
            total,
            per_module: (total / 2).max(1),
            max_queued,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a slot for `module` until `deadline`. Cancel-safe: dropping the future at any
    /// point gives back whatever it held (its queue place, or a slot granted meanwhile).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        module: ContentHash,
        deadline: Instant,
    ) -> Result<Slot, NoSlot> {
        let (place, granted) = {
            let mut state = self.lock();
            let running = state.running.get(&module).copied().unwrap_or(0);
            let module_waits = state.waiting.contains_key(&module);
            if state.free > 0 && running < self.per_module && !module_waits {
                state.take(module);
                return Ok(self.slot(module));
            }
            if state.queued >= self.max_queued {
                return Err(NoSlot::QueueFull {
                    running: self.total - state.free,
                    waiting: state.queued,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(expected_wait) = state.expected_wait(&module, self.total, self.per_module)
                && expected_wait > left
            {
                return Err(NoSlot::WouldMissDeadline { expected_wait });
            }
            let (grant, granted) = oneshot::channel();
            let id = state.next_waiter;
            state.next_waiter += 1;
            let queue = state.waiting.entry(module).or_default();
            queue.push_back(Waiter { id, grant });
            if queue.len() == 1 {
                state.order.push_back(module);
            }
            state.queued += 1;
            let place = Place {
                slots: self,
                module,
                id,
            };
            (place, granted)
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(wait, granted).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(NoSlot::DeadlinePassed),
        };
        // A granted place is already out of the queue; an abandoned one leaves it here.
        drop(place);
        result
    }

    fn slot(self: &Arc<Self>, module: ContentHash) -> Slot {
        Slot {
            slots: self.clone(),
            module,
            granted_at: Instant::now(),
            armed: true,
        }
    }

    /// Hands free slots to waiters, round-robin across modules under their cap.
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        let mut passes_without_grant = 0;
        while state.free > 0 && passes_without_grant < state.order.len() {
            let Some(module) = state.order.pop_front() else {
                break;
            };
            let running = state.running.get(&module).copied().unwrap_or(0);
            let mut granted = false;
            if running < self.per_module {
                let queue = state.waiting.entry(module).or_default();
                while let Some(waiter) = queue.pop_front() {
                    state.queued -= 1;
                    match waiter.grant.send(self.slot(module)) {
                        Ok(()) => {
                            granted = true;
                            break;
                        }
                        // The waiter is gone; the slot was never handed over.
                        Err(mut unsent) => unsent.armed = false,
                    }
                }
            }
            if granted {
                state.take(module);
                passes_without_grant = 0;
            } else {
                passes_without_grant += 1;
            }
            if state.waiting.get(&module).is_some_and(|q| !q.is_empty()) {
                state.order.push_back(module);
            } else {
                state.waiting.remove(&module);
            }
        }
    }

    /// Guests running and requests waiting now.
    pub(crate) fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (self.total - state.free, state.queued)
    }

    /// Slots free, guests running and requests waiting, read together.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.free, state.running_total(), state.queued)
    }
}

#[cfg(test)]
mod tests;
