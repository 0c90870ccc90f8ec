//! Requests that peers forward here: run here or refused, never forwarded again. One peer's
//! forwards hold at most its share of this node's slots and queue places; every answer carries
//! a receipt signed by this node (`wasmesh_protocol::receipt`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmesh_protocol::receipt::Receipt;
use wasmesh_protocol::wire::{InvokeRefusal, InvokeReply, InvokeRequest};
use wasmesh_protocol::{ContentHash, PublicKey};

use crate::executor::GuestError;
use crate::node::NodeInner;

impl NodeInner {
    /// Executes a request a peer forwarded (never forwarding it again).
    async fn handle_forwarded(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> InvokeReply {
        let refused = |reason| InvokeReply::Refused { reason };
        if self.stopping.load(Ordering::Relaxed) {
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
        // One peer's forwards hold at most half of this node's slots and queue places: a router
        // aggregating many clients still queues deep, and the other half stays for local
        // requests and other peers.
        let Some(share) = self.forward_shares.try_take(from) else {
            self.metrics.count_rejection("forward_share");
            return refused(InvokeRefusal::Busy(
                "this peer's share of the slots is in use".into(),
            ));
        };
        tracing::info!(trace_id = request.trace_id, from = %from.fingerprint(), module = %signed.manifest.name, "executing a forwarded request");
        let mut limits = signed.manifest.limits;
        limits.timeout_ms = limits.timeout_ms.min(request.deadline_ms.max(1));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(u64::from(limits.timeout_ms));
        let input = ContentHash::of(&request.input);
        let receipt = |outcome| {
            Receipt {
                executor: self.keys.public(),
                module: request.hash,
                input,
                outcome,
                trace_id: request.trace_id,
            }
            .sign(&self.keys)
            .signature
        };
        let outcome = self
            .run_local(module, request.input, limits, deadline)
            .await;
        drop(share);
        match outcome {
            Ok(output) => {
                let exec_us = output.exec_time.as_micros() as u64;
                let queue_us = (started.elapsed().as_micros() as u64).saturating_sub(exec_us);
                InvokeReply::Ok {
                    receipt: receipt(Receipt::output_outcome(&output.bytes)),
                    output: output.bytes,
                    queue_us,
                    exec_us,
                }
            }
            Err(GuestError::Busy { detail }) => refused(InvokeRefusal::Busy(detail)),
            Err(error) => InvokeReply::GuestFailed {
                receipt: receipt(Receipt::failure_outcome(error.kind())),
                kind: error.kind(),
                message: error.to_string(),
            },
        }
    }
}

impl crate::data::InvokeHandler for NodeInner {
    fn handle(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> futures::future::BoxFuture<'static, InvokeReply> {
        Box::pin(self.handle_forwarded(request, from))
    }
}
