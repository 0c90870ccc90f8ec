//! Holders prove possession before they are routed to: a peer whose status or holder record
//! says it holds a blob becomes a routing candidate for it only once it has served this node
//! a verified random chunk group of it (`data::DataPlane::prove_possession`), or delivered
//! verified data of it to one of this node's fetches. A proof holds for
//! [`PROVEN_FOR`](crate::core::peers::PROVEN_FOR); a failed one is not retried for a minute.
//!
//! Proofs run in the background, at most [`MAX_PROOFS`] at once; the request that found an
//! unproven holder goes on with the candidates it has, or waits for the proof like for any
//! new holder (`request::find_holders`), since the end of a proof wakes the waiters.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::BLOB_GROUP_SIZE;

use crate::clock::NodeClock;
use crate::core::peers::PeerFeedback;
use crate::data::{DataPlane, PeerAddr};
use crate::metrics::Metrics;
use crate::rejection::Rejection;

/// Proofs of possession under way at once.
pub(crate) const MAX_PROOFS: usize = 16;

/// Starts and records proofs of possession.
#[derive(Debug)]
pub(crate) struct PossessionChecks {
    data_plane: DataPlane,
    tasks: TaskTracker,
    /// Woken when a proof ends, as when a new provider is known.
    providers_changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    under_way: Arc<Semaphore>,
    /// The routing clock.
    clock: NodeClock,
}

impl PossessionChecks {
    pub(crate) fn new(
        data_plane: DataPlane,
        tasks: TaskTracker,
        providers_changed: Arc<Notify>,
        metrics: Arc<Metrics>,
        clock: NodeClock,
    ) -> Self {
        Self {
            data_plane,
            tasks,
            providers_changed,
            metrics,
            under_way: Arc::new(Semaphore::new(MAX_PROOFS)),
            clock,
        }
    }

    /// Starts a proof that the peer at `addr` (with `feedback`) holds `blob` of `size` bytes,
    /// unless one is under way, recent, or no place for one is free.
    pub(crate) fn check(
        &self,
        feedback: &PeerFeedback,
        addr: PeerAddr,
        blob: ContentHash,
        size: u64,
    ) {
        let clock = self.clock;
        let Ok(permit) = self.under_way.clone().try_acquire_owned() else {
            return;
        };
        if !feedback.start_proof(&blob, clock.now_ms()) {
            return;
        }
        let groups = size.div_ceil(BLOB_GROUP_SIZE).max(1);
        let group = getrandom::u64().unwrap_or_default() % groups;
        let (data_plane, feedback) = (self.data_plane.clone(), feedback.clone());
        let (notify, metrics) = (self.providers_changed.clone(), self.metrics.clone());
        self.tasks.spawn(async move {
            let _permit = permit;
            let proved = data_plane.prove_possession(addr, blob, size, group).await;
            let held = proved.is_ok();
            if let Err(error) = &proved {
                metrics.count_rejection(Rejection::PossessionUnproven);
                tracing::info!(peer = %addr.key.fingerprint(), addr = %addr.addr, blob = %blob.short(), %error, "a claimed holder did not prove it holds the blob");
            }
            feedback.proof_ended(&blob, held, clock.now_ms());
            notify.notify_waiters();
        });
    }

    /// The peer with `feedback` delivered verified data of `blob` to this node.
    pub(crate) fn served(&self, feedback: &PeerFeedback, blob: &ContentHash) {
        feedback.proof_ended(blob, true, self.clock.now_ms());
    }
}
