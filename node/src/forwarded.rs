//! Requests that peers forward here: run here or refused, never forwarded again. One peer's
//! forwards hold at most its share of this node's slots and queue places; every answer carries
//! a receipt signed by this node (`wasmesh_protocol::receipt`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmesh_protocol::receipt::Receipt;
use wasmesh_protocol::wire::{InvokeRefusal, InvokeReply, InvokeRequest};
use wasmesh_protocol::{ContentHash, Keypair, PublicKey};

use crate::executor::GuestError;
use crate::forward_shares::{ForwardShare, ForwardShares, NoShare};
use crate::local_run::LocalRunner;
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::view::Views;

/// Serves the requests peers forward here (see the module docs).
pub(crate) struct ForwardServer {
    /// Signs the receipts.
    pub(crate) keys: Keypair,
    pub(crate) views: Arc<Views>,
    pub(crate) local: LocalRunner,
    /// Forwarded requests each peer has here now.
    pub(crate) shares: ForwardShares,
    pub(crate) metrics: Arc<Metrics>,
}

impl ForwardServer {
    /// A place among the forwarded requests for one of `from`'s: at most their share of this
    /// node's slots and queue places, and one peer at most its own, small while this node has
    /// no record with it (`crate::forward_shares`); the refusal otherwise.
    fn forward_share(&self, from: PublicKey) -> Result<ForwardShare, InvokeReply> {
        self.shares
            .try_take(from, self.is_stranger(&from))
            .map_err(|no_share| {
                let (reason, detail) = match no_share {
                    NoShare::Peer => (
                        Rejection::ForwardShare,
                        "this peer's share of the slots is in use",
                    ),
                    NoShare::Forwarded => (
                        Rejection::ForwardShareAll,
                        "the slots forwarded requests may hold are in use",
                    ),
                };
                self.metrics.count_rejection(reason);
                InvokeReply::Refused {
                    reason: InvokeRefusal::Busy(detail.into()),
                }
            })
    }

    /// Whether the peer with node key `key` is a stranger to this node (or unknown to it).
    fn is_stranger(&self, key: &PublicKey) -> bool {
        let Some(peer) = wasmesh_keys::identity::peer_id(key) else {
            return true;
        };
        self.views
            .load()
            .peers
            .get(&peer)
            .is_none_or(|info| info.is_stranger(Instant::now()))
    }

    /// Executes a request a peer forwarded (never forwarding it again).
    async fn handle_forwarded(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> InvokeReply {
        let refused = |reason| InvokeReply::Refused { reason };
        if self.local.load().is_stopping() {
            return refused(InvokeRefusal::Stopping);
        }
        if request.hops > 1 {
            return refused(InvokeRefusal::TooManyHops);
        }
        let Some((signed, module)) = self
            .views
            .load()
            .registry
            .ready_by_hash(&request.hash)
            .map(|(s, m)| (s.clone(), m))
        else {
            return refused(InvokeRefusal::NotReady);
        };
        let share = match self.forward_share(from) {
            Ok(share) => share,
            Err(refusal) => return refusal,
        };
        tracing::info!(trace_id = request.trace_id, from = %from.fingerprint(), module = %signed.manifest.name, "executing a forwarded request");
        let mut limits = signed.manifest.limits;
        limits.timeout_ms = limits.timeout_ms.min(request.deadline_ms.max(1));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(u64::from(limits.timeout_ms));
        let input = ContentHash::of(&request.input);
        // Binds the answer to this forward (its nonce) and the times reported with it.
        let receipt = |outcome, queue_us, exec_us| {
            Receipt {
                executor: self.keys.public(),
                module: request.hash,
                input,
                outcome,
                trace_id: request.trace_id,
                nonce: request.nonce,
                queue_us,
                exec_us,
            }
            .sign(&self.keys)
            .signature
        };
        let outcome = self
            .local
            .run(module, request.input, limits, deadline)
            .await;
        drop(share);
        match outcome {
            Ok(output) => {
                let exec_us = output.exec_time.as_micros() as u64;
                let queue_us = (started.elapsed().as_micros() as u64).saturating_sub(exec_us);
                InvokeReply::Ok {
                    receipt: receipt(Receipt::output_outcome(&output.bytes), queue_us, exec_us),
                    output: output.bytes,
                    queue_us,
                    exec_us,
                }
            }
            Err(GuestError::Busy { detail }) => refused(InvokeRefusal::Busy(detail)),
            Err(error) => {
                let message = error.to_string();
                let outcome = Receipt::failure_outcome(error.kind(), &message);
                InvokeReply::GuestFailed {
                    receipt: receipt(outcome, 0, 0),
                    kind: error.kind(),
                    message,
                }
            }
        }
    }
}

impl crate::data::InvokeHandler for ForwardServer {
    fn handle(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> futures::future::BoxFuture<'static, InvokeReply> {
        Box::pin(self.handle_forwarded(request, from))
    }
}
