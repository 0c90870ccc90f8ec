//! Wall-clock deadlines for running guests.
//!
//! wasmer 7.1 has no way to interrupt a running instance from outside. Every instance is metered,
//! though, and checks its remaining fuel at each branch and call. One watchdog thread keeps the
//! running executions ordered by deadline; when one passes, it zeroes that instance's fuel
//! counter, so the guest traps at its next check, and marks the execution as timed out. The guest
//! thread may overwrite the zero with a value it had just loaded, so the watchdog repeats the
//! write every millisecond until the execution ends.
//!
//! An execution is registered as soon as its instance's counter exists, while the instance is
//! being created (`sandbox::InstantiationScope`), so a module's start function runs under the
//! request's deadline as its handler does.
//!
//! Soundness: the counter lives in the instance's store. An execution unregisters (under the
//! watchdog's lock) before its store is dropped, and the watchdog writes only to registered
//! executions while holding that lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::fuel_cell::FuelCell;

/// How long the thread sleeps when nothing runs (a new execution wakes it).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// How often a fired deadline re-zeroes the counter until the guest stops.
const REPEAT: Duration = Duration::from_millis(1);

/// Running executions by (deadline, id): the first entry is the next to come due. A finished
/// execution removes its own entry, so the thread wakes only for deadlines that can fire.
#[derive(Default)]
struct State {
    next_id: u64,
    running: BTreeMap<(Instant, u64), Running>,
    /// When the thread wakes next by itself (None: it is awake): a new deadline after it needs
    /// no wake-up.
    sleeping_until: Option<Instant>,
    shutdown: bool,
}

struct Running {
    cell: FuelCell,
    fired: Arc<AtomicBool>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Owns the watchdog thread; dropping it stops the thread.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

impl Watchdog {
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        thread::Builder::new()
            .name("wasmesh-watchdog".into())
            .spawn(move || run(&worker))?;
        Ok(Self { shared })
    }

    /// A handle that registers executions with this watchdog.
    pub(crate) fn watcher(&self) -> Watcher {
        Watcher {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
    }
}

/// Registers executions with a watchdog; cheap to clone.
#[derive(Clone)]
pub(crate) struct Watcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watches an execution whose fuel counter is `cell` until the returned guard is dropped.
    pub(crate) fn watch(&self, cell: FuelCell, deadline: Instant) -> Watch {
        let fired = Arc::new(AtomicBool::new(false));
        let mut state = self.shared.lock();
        let key = (deadline, state.next_id);
        state.next_id += 1;
        let is_earliest = state.sleeping_until.is_some_and(|until| deadline < until);
        if is_earliest {
            state.sleeping_until = None;
        }
        state.running.insert(
            key,
            Running {
                cell,
                fired: fired.clone(),
            },
        );
        drop(state);
        if is_earliest {
            self.shared.wake.notify_one();
        }
        Watch {
            shared: self.shared.clone(),
            key,
            fired,
        }
    }
}

/// A registered execution. Drop it before the store of the watched instance.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    /// Its entry in the table (a fired deadline repeats under a later key).
    key: (Instant, u64),
    fired: Arc<AtomicBool>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("fired", &self.fired())
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Whether the deadline passed and the guest was stopped.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.running.remove(&self.key).is_none() {
            // It fired, and the repeat moved it: find it by id.
            let id = self.key.1;
            state.running.retain(|(_, entry), _| *entry != id);
        }
    }
}

fn run(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        while let Some(entry) = state.running.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), running) = entry.remove_entry();
            running.fired.store(true, Ordering::SeqCst);
            // SAFETY: the execution is still registered, so its store is alive (see the module
            // documentation), and we hold the lock that unregistering takes.
            unsafe { running.cell.exhaust() };
            state.running.insert((now + REPEAT, id), running);
        }
        let wait = match state.running.first_key_value() {
            Some(((deadline, _), _)) => deadline.saturating_duration_since(now),
            None => IDLE_WAIT,
        };
        state.sleeping_until = Some(now + wait);
        state = shared
            .wake
            .wait_timeout(state, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}
