use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn module(n: u8) -> ContentHash {
    ContentHash([n; 32])
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

type Waiting = Pin<Box<dyn Future<Output = Result<Slot, NoSlot>>>>;

/// How an acquire stands after its first poll.
enum Started {
    Held(Slot),
    Waiting(Waiting),
    Refused,
}

impl Started {
    fn waiting(self) -> Waiting {
        match self {
            Started::Waiting(future) => future,
            _ => panic!("expected the request to wait"),
        }
    }

    fn is_held(&self) -> bool {
        matches!(self, Started::Held(_))
    }
}

/// Starts an acquire and polls it once, as the executor's first poll does.
fn start_acquire(slots: &Arc<Slots>, m: u8, deadline: Instant) -> Started {
    let slots = slots.clone();
    let mut future: Waiting = Box::pin(async move { slots.acquire(module(m), deadline).await });
    match poll_once(&mut future) {
        Poll::Ready(Ok(slot)) => Started::Held(slot),
        Poll::Ready(Err(_)) => Started::Refused,
        Poll::Pending => Started::Waiting(future),
    }
}

fn poll_once(future: &mut Waiting) -> Poll<Result<Slot, NoSlot>> {
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    future.as_mut().poll(&mut context)
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
            tokio::task::yield_now().await;
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
    let _queued = start_acquire(&slots, 2, soon()).waiting();
    assert!(matches!(
        slots.acquire(module(3), soon()).await.map(|_| ()),
        Err(NoSlot::QueueFull {
            running: 1,
            waiting: 1
        })
    ));
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
    assert_eq!(slots.counts(), (0, 1, 0), "the expired place is gone");
}

#[tokio::test]
async fn a_granted_waiter_dropped_before_it_is_polled_gives_the_slot_back() {
    let slots = Slots::new(1, 4);
    let held = slots.acquire(module(1), soon()).await.unwrap();
    let waiter = start_acquire(&slots, 1, soon()).waiting();
    assert_eq!(slots.counts(), (0, 1, 1));
    // The release grants the slot to the waiter, whose client then goes away unpolled.
    drop(held);
    assert_eq!(slots.counts(), (0, 1, 0), "granted to the waiter");
    drop(waiter);
    assert_eq!(slots.counts(), (1, 0, 0), "the grant came back");
    assert!(start_acquire(&slots, 2, soon()).is_held());
}

#[tokio::test]
async fn a_dropped_waiter_passes_its_turn_to_the_next() {
    let slots = Slots::new(1, 4);
    let held = slots.acquire(module(1), soon()).await.unwrap();
    let first = start_acquire(&slots, 1, soon()).waiting();
    let mut second = start_acquire(&slots, 1, soon()).waiting();
    drop(held);
    drop(first);
    assert!(matches!(poll_once(&mut second), Poll::Ready(Ok(_))));
}

#[tokio::test]
async fn a_request_that_cannot_start_in_time_is_refused_at_once() {
    let slots = Slots::new(1, 16);
    // Teach the slots that module 1 holds a slot for about 50 ms.
    {
        let mut state = slots.lock();
        state.mean_hold_us.insert(module(1), 50_000);
    }
    let _held = slots.acquire(module(1), soon()).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(10);
    assert!(matches!(
        slots.acquire(module(1), deadline).await.map(|_| ()),
        Err(NoSlot::WouldMissDeadline { .. })
    ));
    assert_eq!(slots.counts(), (0, 1, 0), "nothing was queued");
}

/// Deadlines that pass while the slot is being released: whichever wins, nothing is lost.
#[test]
fn timeouts_racing_grants_lose_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let slots = Slots::new(1, 4);
        let mut outcomes = [0usize; 2];
        for round in 0..300u64 {
            let held = slots.acquire(module(1), soon()).await.unwrap();
            let wait = Duration::from_micros(200 + round % 7 * 150);
            let waiter = tokio::spawn({
                let slots = slots.clone();
                async move {
                    slots
                        .acquire(module(1), Instant::now() + wait)
                        .await
                        .is_ok()
                }
            });
            let releaser = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(round % 11 * 100)).await;
                drop(held);
            });
            releaser.await.unwrap();
            let got = waiter.await.unwrap();
            outcomes[usize::from(got)] += 1;
            assert_eq!(slots.counts(), (1, 0, 0), "round {round}");
        }
        println!("timed out {}, granted {}", outcomes[0], outcomes[1]);
    });
}

#[derive(Debug, Clone)]
enum Step {
    /// A request for a module (0..3).
    Acquire(u8),
    /// A request whose deadline has already passed.
    AcquireLate(u8),
    /// A waiting request's client goes away, granted or not.
    DropWaiter(usize),
    /// A running request finishes.
    Release(usize),
    /// Every waiting request is polled.
    Poll,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..3).prop_map(Step::Acquire),
        1 => (0u8..3).prop_map(Step::AcquireLate),
        2 => any::<usize>().prop_map(Step::DropWaiter),
        3 => any::<usize>().prop_map(Step::Release),
        3 => Just(Step::Poll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every step: free + running == total. After every poll: queued == the requests
    /// still waiting, the running count is what is held, no module is over its cap, and no
    /// slot idles while a waiter that may use it waits. At the end everything comes back.
    #[test]
    fn slots_are_never_lost(total in 1usize..5, steps in prop::collection::vec(step(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async {
            let slots = Slots::new(total, 6);
            let mut held: Vec<(u8, Slot)> = Vec::new();
            let mut waiting: Vec<(u8, Waiting)> = Vec::new();
            for step in steps {
                match step {
                    Step::Acquire(m) | Step::AcquireLate(m) => {
                        let deadline = match step {
                            Step::AcquireLate(_) => Instant::now(),
                            _ => soon(),
                        };
                        match start_acquire(&slots, m, deadline) {
                            Started::Held(slot) => held.push((m, slot)),
                            Started::Waiting(future) => waiting.push((m, future)),
                            Started::Refused => {}
                        }
                    }
                    Step::DropWaiter(i) if !waiting.is_empty() => {
                        drop(waiting.remove(i % waiting.len()));
                    }
                    Step::Release(i) if !held.is_empty() => {
                        held.remove(i % held.len());
                    }
                    Step::Poll => {
                        let mut still = Vec::new();
                        for (m, mut future) in waiting.drain(..) {
                            match poll_once(&mut future) {
                                Poll::Ready(Ok(slot)) => held.push((m, slot)),
                                Poll::Ready(Err(_)) => {}
                                Poll::Pending => still.push((m, future)),
                            }
                        }
                        waiting = still;
                        let (free, running, queued) = slots.counts();
                        prop_assert_eq!(queued, waiting.len());
                        prop_assert_eq!(running, held.len());
                        let state = slots.lock();
                        for (m, _) in &waiting {
                            let running_m = state.running.get(&module(*m)).copied().unwrap_or(0);
                            prop_assert!(running_m <= slots.per_module);
                            prop_assert!(
                                free == 0 || running_m == slots.per_module,
                                "a slot idles while module {} waits", m
                            );
                        }
                    }
                    _ => {}
                }
                let (free, running, _) = slots.counts();
                prop_assert_eq!(free + running, total);
            }
            drop(waiting);
            drop(held);
            prop_assert_eq!(slots.counts(), (total, 0, 0));
            Ok(())
        })?;
    }
}
