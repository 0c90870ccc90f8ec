//! The threads guest code runs on when it does not run inline: one per slot, of their own, at a
//! lower scheduling priority than the rest of the node.
//!
//! A guest that holds a slot for its whole deadline must not take a thread the node needs: the
//! gateway, the QUIC server and the control task run on the async runtime's workers, and the
//! runtime's blocking pool also does the node's file work. So guests get threads of their own,
//! as many as there are slots (a job always holds a slot, so a job never waits for a thread),
//! each with a nice value [`GUEST_NICE`] above the node's: when every slot is held by a guest
//! that spins until its deadline, the kernel still runs the node's own threads first, and the
//! node keeps answering.
//!
//! The queue is unbounded only in form: every job in it holds one of the executor's slots.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_channel::{Receiver, Sender};

/// How much lower than the node's the guest threads' priority is (nice 0 to 19; 10 gives a
/// thread about a tenth of the CPU time of a nice-0 thread that competes with it).
pub(crate) const GUEST_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The guest threads; dropping this lets them end once the queue is empty.
#[derive(Debug)]
pub(crate) struct GuestThreads {
    jobs: Sender<Job>,
}

impl GuestThreads {
    /// Starts `count` threads.
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for index in 0..count.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("wasmesh-guest-{index}"))
                .spawn(move || serve(&queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a guest thread.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        // The threads end only when this sender is dropped, so the send cannot fail.
        let _ = self.jobs.send(Box::new(job));
    }
}

fn serve(queue: &Receiver<Job>) {
    lower_priority();
    for job in queue {
        // A panic ends the job (its reply is dropped, so its request fails), not the thread.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a guest job panicked");
        }
    }
}

/// Raises this thread's nice value by [`GUEST_NICE`], to at most 19 (Linux: the nice value is
/// per thread, and a thread starts with its creator's).
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread.
    let done = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (current + GUEST_NICE).min(19))
    };
    if done != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of a guest thread; guests compete with the node on equal terms"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_threads_of_lower_priority_and_a_panic_spares_the_thread() {
        // SAFETY (here and in the job): reads the calling thread's nice value.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as u32) };
        let threads = GuestThreads::start(1).unwrap();
        threads.run(|| panic!("a guest job that panics"));
        let (reply, answer) = std::sync::mpsc::channel();
        threads.run(move || {
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as u32) };
            let name = std::thread::current().name().map(str::to_owned);
            reply.send((nice, name)).unwrap();
        });
        let (nice, name) = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(nice, (own + GUEST_NICE).min(19));
        assert_eq!(name.as_deref(), Some("wasmesh-guest-0"));
    }
}
