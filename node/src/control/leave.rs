//! Leaving the mesh: the status that says so goes to every neighbour, and the node that stops
//! waits until each has answered it (or failed to), so no neighbour keeps routing to it.

use std::collections::HashSet;

use libp2p::request_response::OutboundRequestId;
use tokio::sync::oneshot;

/// The leaving statuses not yet answered, and who waits for them.
#[derive(Debug)]
pub(crate) struct LeaveAcks {
    waiting: HashSet<OutboundRequestId>,
    done: Option<oneshot::Sender<()>>,
}

impl LeaveAcks {
    /// Waits for answers to `waiting`; `done` is answered when none is left (at once if none).
    pub(crate) fn new(waiting: HashSet<OutboundRequestId>, done: oneshot::Sender<()>) -> Self {
        let mut acks = Self {
            waiting,
            done: Some(done),
        };
        acks.answer_when_complete();
        acks
    }

    /// The status sent as `request` was answered or failed.
    pub(crate) fn answered(&mut self, request: &OutboundRequestId) {
        if self.waiting.remove(request) {
            self.answer_when_complete();
        }
    }

    fn answer_when_complete(&mut self) {
        if self.waiting.is_empty()
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}
