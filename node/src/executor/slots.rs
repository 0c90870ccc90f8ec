//! Execution slots, shared fairly between modules.
//!
//! At most `total` guests run at once. A module may hold at most `per_module` of the slots, so
//! a flood of requests to one module — say one that loops until its deadline — always leaves
//! room for others. Waiting requests are served round-robin across modules and in arrival order
//! within a module. At most `max_queued` requests wait; more are refused at once (`busy`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;
use wasmesh_protocol::ContentHash;

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// The wait queue is full.
    QueueFull { running: usize, waiting: usize },
    /// The deadline passed while waiting.
    DeadlinePassed,
}

#[derive(Default)]
struct State {
    free: usize,
    running: HashMap<ContentHash, usize>,
    waiting: HashMap<ContentHash, VecDeque<oneshot::Sender<()>>>,
    /// Modules with waiters, in round-robin order.
    order: VecDeque<ContentHash>,
    queued: usize,
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
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        if let Some(running) = state.running.get_mut(&self.module) {
            *running -= 1;
            if *running == 0 {
                state.running.remove(&self.module);
            }
        }
        state.free += 1;
        self.slots.dispatch(&mut state);
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

    /// Waits for a slot for `module` until `deadline`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        module: ContentHash,
        deadline: Instant,
    ) -> Result<Slot, NoSlot> {
        let receiver = {
            let mut state = self.lock();
            let running = state.running.get(&module).copied().unwrap_or(0);
            let module_waits = state.waiting.get(&module).is_some_and(|q| !q.is_empty());
            if state.free > 0 && running < self.per_module && !module_waits {
                state.free -= 1;
                *state.running.entry(module).or_default() += 1;
                return Ok(self.slot(module));
            }
            if state.queued >= self.max_queued {
                Self::forget_abandoned(&mut state);
            }
            if state.queued >= self.max_queued {
                return Err(NoSlot::QueueFull {
                    running: self.total - state.free,
                    waiting: state.queued,
                });
            }
            let (sender, receiver) = oneshot::channel();
            let queue = state.waiting.entry(module).or_default();
            queue.push_back(sender);
            if queue.len() == 1 {
                state.order.push_back(module);
            }
            state.queued += 1;
            receiver
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(())) => Ok(self.slot(module)),
            // Dropping the receiver marks the place as abandoned; the dispatcher skips it.
            _ => Err(NoSlot::DeadlinePassed),
        }
    }

    fn slot(self: &Arc<Self>, module: ContentHash) -> Slot {
        Slot {
            slots: self.clone(),
            module,
        }
    }

    /// Hands free slots to waiters, round-robin across modules under their cap.
    fn dispatch(&self, state: &mut State) {
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
                    if waiter.send(()).is_ok() {
                        granted = true;
                        break;
                    }
                }
            }
            if granted {
                state.free -= 1;
                *state.running.entry(module).or_default() += 1;
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

    /// Drops the places of waiters that gave up (deadline passed).
    fn forget_abandoned(state: &mut State) {
        let mut forgotten = 0;
        for queue in state.waiting.values_mut() {
            let before = queue.len();
            queue.retain(|waiter| !waiter.is_closed());
            forgotten += before - queue.len();
        }
        state.queued -= forgotten;
        state.waiting.retain(|_, queue| !queue.is_empty());
        let waiting = &state.waiting;
        state.order.retain(|module| waiting.contains_key(module));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn module(n: u8) -> ContentHash {
        ContentHash([n; 32])
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn one_module_cannot_take_every_slot() {
        let slots = Slots::new(4, 16);
        let a1 = slots.acquire(module(1), soon()).await.unwrap();
        let _a2 = slots.acquire(module(1), soon()).await.unwrap();
        // Module 1 is at its cap of 2: a third request waits...
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(module(1), soon()).await.map(|_| ()) }
        });
        // ...while another module still gets a slot at once.
        let b = slots.acquire(module(2), soon()).await.unwrap();
        drop(b);
        assert!(!waiting.is_finished());
        drop(a1);
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn waiters_are_served_round_robin_across_modules() {
        let slots = Slots::new(2, 16);
        let held = [
            slots.acquire(module(1), soon()).await.unwrap(),
            slots.acquire(module(2), soon()).await.unwrap(),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Three waiters of module 1 arrive before one of module 3.
        for (n, m) in [(1, 1), (2, 1), (3, 1), (4, 3)] {
            let slots = slots.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let slot = slots.acquire(module(m), soon()).await.unwrap();
                tx.send(n).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(slot);
            });
            tokio::task::yield_now().await;
        }
        drop(held);
        let first_two = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        assert!(
            first_two.contains(&4),
            "module 3 waited behind module 1: {first_two:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let slots = Slots::new(1, 1);
        let _held = slots.acquire(module(1), soon()).await.unwrap();
        let queued = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(module(2), soon()).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(matches!(
            slots.acquire(module(3), soon()).await.map(|_| ()),
            Err(NoSlot::QueueFull {
                running: 1,
                waiting: 1
            })
        ));
        queued.abort();
    }

    #[tokio::test]
    async fn the_deadline_bounds_the_wait() {
        let slots = Slots::new(1, 4);
        let _held = slots.acquire(module(1), soon()).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            slots.acquire(module(2), deadline).await.map(|_| ()),
            Err(NoSlot::DeadlinePassed)
        ));
    }
}
