//! One request on its way: tried at the route's candidates in turn until one answers or the
//! deadline passes, a slow forward hedged to the next candidate (first answer wins), and every
//! forwarded answer checked against its signed receipt before it is taken.
//!
//! Each forward carries a fresh nonce; the executor's receipt must name it, the outcome (the
//! output, or the failure kind and message) and the times it reports. Those times steer
//! routing only within what this node measured: a peer cannot make itself look faster than the
//! round trip this node saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tracing::Instrument;
use wasmesh_protocol::receipt::{Receipt, SignedReceipt};
use wasmesh_protocol::wire::{InvokeRefusal, InvokeReply, InvokeRequest};
use wasmesh_protocol::{ContentHash, PublicKey, SignedManifest};

use super::Router;
use super::{Invocation, InvokeError, PeerTarget, Purpose, RouteTarget};
use crate::core::peers::PeerFeedback;
use crate::data::ForwardError;
use crate::executor::{GuestError, Output};

/// What one request needs while it is tried: the module, its input and its deadline.
pub(super) struct Call<'a> {
    pub(super) node: &'a Arc<Router>,
    pub(super) signed: &'a SignedManifest,
    pub(super) module_ref: String,
    pub(super) input: Vec<u8>,
    pub(super) input_hash: ContentHash,
    pub(super) trace_id: u64,
    pub(super) deadline: Instant,
    pub(super) purpose: &'a Purpose,
}

/// How one forward ended.
pub(super) struct Attempt {
    sent: Sent,
    reply: Result<InvokeReply, ForwardError>,
}

/// Where and how a forward was sent.
struct Sent {
    peer: PeerId,
    /// Where a failure marks it down.
    feedback: PeerFeedback,
    /// The peer's node key (its QUIC certificate's), which must have signed the receipt.
    executor: PublicKey,
    /// Its data-plane address.
    addr: std::net::SocketAddr,
    /// The nonce this forward carried.
    nonce: u64,
    /// Its round trip as routing saw it.
    rtt_us: u64,
    at: Instant,
}

/// What an attempt's answer means for the request.
enum Taken {
    /// The request's answer.
    Answer(Box<Result<Invocation, InvokeError>>),
    /// The peer is too busy: the next candidate, remembering why.
    Busy(String),
    /// The next candidate.
    Next,
}

impl Call<'_> {
    /// Tries `targets` in order (see the module docs).
    pub(super) async fn run(&self, targets: Vec<RouteTarget>) -> Result<Invocation, InvokeError> {
        let node = self.node;
        let mut targets = targets.into_iter().peekable();
        // Why the last candidate that refused for load did so.
        let mut busy = None;
        let mut attempts = FuturesUnordered::new();
        // When to hedge the forward in flight (one hedge per request at most).
        let mut hedge_at: Option<tokio::time::Instant> = None;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if attempts.is_empty() {
                match targets.next() {
                    None => break,
                    Some(RouteTarget::Local(module)) => match self.run_here(module).await {
                        Taken::Answer(answer) => return *answer,
                        Taken::Busy(detail) => busy = Some(detail),
                        Taken::Next => {}
                    },
                    Some(RouteTarget::Peer(peer)) => {
                        node.hedge_budget.earn();
                        hedge_at = node
                            .hedging
                            .then(|| tokio::time::Instant::now() + peer.hedge_after);
                        tracing::info!(trace_id = self.trace_id, peer = %peer.peer_id, module = %self.signed.manifest.name, "forwarding a request");
                        attempts.push(self.forward(peer, left));
                    }
                }
                continue;
            }
            let may_hedge =
                hedge_at.is_some() && matches!(targets.peek(), Some(RouteTarget::Peer(_)));
            let hedge_due = async move {
                match hedge_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(attempt) = attempts.next() => match self.take(attempt) {
                    Taken::Answer(answer) => return *answer,
                    Taken::Busy(detail) => busy = Some(detail),
                    Taken::Next => {}
                },
                _ = hedge_due, if may_hedge => {
                    hedge_at = None;
                    if node.hedge_budget.try_spend()
                        && let Some(RouteTarget::Peer(peer)) = targets.next()
                    {
                        node.metrics.hedges.inc();
                        tracing::info!(trace_id = self.trace_id, peer = %peer.peer_id, "the forward is slow; hedging to the next candidate");
                        attempts.push(self.forward(peer, left));
                    }
                }
                else => break,
            }
        }
        Err(self.none_answered(busy))
    }

    /// Why no candidate answered.
    fn none_answered(&self, busy: Option<String>) -> InvokeError {
        let metrics = &self.node.metrics;
        if Instant::now() >= self.deadline {
            metrics.count_invocation("deadline", "none");
            return InvokeError::Deadline {
                timeout_ms: u64::from(self.signed.manifest.limits.timeout_ms),
            };
        }
        if let Some(detail) = busy {
            metrics.count_invocation("busy", "none");
            return InvokeError::Busy {
                module: self.module_ref.clone(),
                detail,
            };
        }
        metrics.count_invocation("no_provider", "none");
        InvokeError::NoProvider(self.module_ref.clone())
    }

    /// Runs the request here.
    async fn run_here(&self, module: Arc<crate::executor::CompiledModule>) -> Taken {
        let started = Instant::now();
        let limits = self.signed.manifest.limits;
        let ran = self
            .node
            .local
            .run(module, self.input.clone(), limits, self.deadline)
            .await;
        match ran {
            Err(GuestError::Busy { detail }) => Taken::Busy(detail),
            Err(error) => Taken::Answer(Box::new(Err(error.into()))),
            Ok(output) => {
                let queue = started.elapsed().saturating_sub(output.exec_time);
                Taken::Answer(Box::new(Ok(Invocation {
                    output,
                    network: Duration::ZERO,
                    queue,
                    executed_by: self.node.peer_id,
                    local: true,
                    receipt: None,
                })))
            }
        }
    }

    /// The request as forwarded now, with `left` of its time and a fresh nonce.
    fn forward_request(&self, left: Duration) -> InvokeRequest {
        InvokeRequest {
            hash: self.signed.manifest.blob,
            input: self.input.clone(),
            deadline_ms: left.as_millis().min(u128::from(u32::MAX)) as u32,
            hops: 1,
            trace_id: self.trace_id,
            // Set by `forward_in_span`, from its own span.
            trace: None,
            nonce: getrandom::u64().unwrap_or_else(|_| crate::clock::now_ms()),
        }
    }

    /// One forward of the request to a peer, counted in the peer's `forwarding` while it
    /// lasts, in a span of its own that the peer's spans join.
    fn forward(
        &self,
        peer: PeerTarget,
        left: Duration,
    ) -> tracing::instrument::Instrumented<impl Future<Output = Attempt> + '_> {
        let span = tracing::debug_span!("forward", peer = %peer.peer_id);
        self.forward_in_span(peer, self.forward_request(left), left)
            .instrument(span)
    }

    async fn forward_in_span(
        &self,
        peer: PeerTarget,
        mut request: InvokeRequest,
        left: Duration,
    ) -> Attempt {
        request.trace = crate::telemetry::wire_context(&tracing::Span::current());
        let _forwarding = peer.feedback.enter();
        let sent = Instant::now();
        let node = self.node;
        let reply = node
            .data_plane
            .invoke(peer.addr, &request, left, super::ack_deadline(peer.rtt_us))
            .await;
        if reply.is_ok() {
            let took = sent.elapsed().as_secs_f64();
            node.metrics.forward_round_trip.observe(took);
        } else {
            node.metrics.forward_failures.inc();
        }
        Attempt {
            sent: Sent {
                peer: peer.peer_id,
                feedback: peer.feedback.clone(),
                executor: peer.addr.key,
                addr: peer.addr.addr,
                nonce: request.nonce,
                rtt_us: peer.rtt_us,
                at: sent,
            },
            reply,
        }
    }

    /// What the executing peer must have signed, given what it answered.
    fn receipt_of(&self, attempt: &Sent, outcome: ContentHash, times: (u64, u64)) -> Receipt {
        Receipt {
            executor: attempt.executor,
            module: self.signed.manifest.blob,
            input: self.input_hash,
            outcome,
            trace_id: self.trace_id,
            nonce: attempt.nonce,
            queue_us: times.0,
            exec_us: times.1,
        }
    }

    /// Takes one attempt's answer: an answer whose receipt verifies, a refusal, or a failure.
    fn take(&self, attempt: Attempt) -> Taken {
        let node = self.node;
        let Attempt { sent, reply } = attempt;
        match reply {
            Ok(InvokeReply::Ok {
                output,
                queue_us,
                exec_us,
                receipt,
            }) => {
                let outcome = Receipt::output_outcome(&output);
                let receipt = SignedReceipt {
                    receipt: self.receipt_of(&sent, outcome, (queue_us, exec_us)),
                    signature: receipt,
                };
                if node.refuse_bad_receipt(&sent.peer, &sent.feedback, &receipt) {
                    return Taken::Next;
                }
                let answer = self.forwarded_answer(&sent, output, receipt);
                Taken::Answer(Box::new(Ok(answer)))
            }
            Ok(InvokeReply::GuestFailed {
                kind,
                message,
                receipt,
            }) => {
                let outcome = Receipt::failure_outcome(kind, &message);
                let receipt = SignedReceipt {
                    receipt: self.receipt_of(&sent, outcome, (0, 0)),
                    signature: receipt,
                };
                if node.refuse_bad_receipt(&sent.peer, &sent.feedback, &receipt) {
                    return Taken::Next;
                }
                node.metrics.count_invocation(kind.as_str(), "forwarded");
                self.maybe_spot_check(sent.peer, receipt, Err(kind));
                Taken::Answer(Box::new(Err(InvokeError::RemoteGuest {
                    kind,
                    message,
                    executed_by: sent.peer,
                    receipt: Box::new(receipt),
                })))
            }
            Ok(InvokeReply::Refused { reason }) => {
                tracing::info!(trace_id = self.trace_id, peer = %sent.peer, %reason, "peer refused; trying the next");
                match reason {
                    InvokeRefusal::Busy(detail) => return Taken::Busy(detail),
                    // It said so in a status that has not arrived yet: stop routing to it now.
                    InvokeRefusal::Stopping => node.mark_down(&sent.feedback),
                    InvokeRefusal::NotReady | InvokeRefusal::TooManyHops => {}
                }
                Taken::Next
            }
            Err(error) => {
                tracing::info!(trace_id = self.trace_id, peer = %sent.peer, addr = %sent.addr, %error, "forward failed; marking the peer down");
                node.mark_down(&sent.feedback);
                Taken::Next
            }
        }
    }

    /// A forwarded answer whose receipt verified, as the request's answer; what it took feeds
    /// routing within what this node measured.
    fn forwarded_answer(&self, sent: &Sent, output: Vec<u8>, receipt: SignedReceipt) -> Invocation {
        let node = self.node;
        let (queue_us, exec_us) = (receipt.receipt.queue_us, receipt.receipt.exec_us);
        let elapsed = sent.at.elapsed();
        // Beyond the round trip, what this node saw is queueing and execution: the peer's
        // word on its execution time counts only between half of that and all of it.
        let measured_us = (elapsed.as_micros() as u64).saturating_sub(sent.rtt_us);
        let exec_for_routing = exec_us.clamp(measured_us / 2, measured_us.max(1));
        node.observe_forward(
            &sent.peer,
            &self.signed.manifest.blob,
            exec_for_routing,
            elapsed,
        );
        node.metrics.count_invocation("ok", "forwarded");
        self.maybe_spot_check(sent.peer, receipt, Ok(output.as_slice()));
        let exec_time = Duration::from_micros(exec_us);
        let queue = Duration::from_micros(queue_us);
        Invocation {
            output: Output {
                bytes: output,
                stderr: Vec::new(),
                fuel_used: 0,
                exec_time,
            },
            network: elapsed.saturating_sub(exec_time).saturating_sub(queue),
            queue,
            executed_by: sent.peer,
            local: false,
            receipt: Some(receipt),
        }
    }

    /// Samples this forwarded answer for a spot check (see `verify`), unless the request is a
    /// check itself.
    fn maybe_spot_check(
        &self,
        peer: PeerId,
        receipt: SignedReceipt,
        outcome: Result<&[u8], wasmesh_protocol::wire::FailureKind>,
    ) {
        if self.purpose.checking {
            return;
        }
        self.node
            .spot_check_sampled(self.signed, &self.input, peer, receipt, outcome);
    }
}
