//! The request path on a node: where a request runs (here, or on the peer expected to answer
//! first, by `wasmesh_protocol::routing`), failover to the next candidate, hedging of slow
//! forwards, and serving requests that peers forward here.
//!
//! Everything a request holds is a guard released on drop, so a client that goes away at any
//! `.await` leaves nothing behind: its execution slot and queue place (the executor's), its
//! count in `in_flight` (`crate::counted::Counted`), and its count in a peer's `forwarding`
//! (`core::peers::ForwardGuard`).
//!
//! Routing reads the node's view (`crate::view`) and takes no lock. A failed forward marks its
//! peer down at once, in an atomic every view shares; what else a request learns (a peer's
//! execution time, peers worth measuring) goes to the control task through the node's handle
//! without waiting, and the next view carries it.
//! A hedged copy of a forward is an attempt like the first; the first good answer wins and
//! dropping the rest cancels them. A module with no known holder asks the blob's directory
//! nodes (`control::holders`) and waits up to [`FIND_WAIT`] for one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tracing::Instrument;
use wasmesh_protocol::receipt::{Receipt, SignedReceipt};
use wasmesh_protocol::routing::{self, Holder};
use wasmesh_protocol::wire::{FailureKind, InvokeRefusal, InvokeReply, InvokeRequest};
use wasmesh_protocol::{ContentHash, ModuleRef, PublicKey};

use crate::core::peers::ForwardAnswer;
use crate::core::peers::PeerFeedback;
use crate::core::registry::{ModuleEntry, ModuleState};
use crate::data::{ForwardError, PeerAddr};
use crate::executor::{GuestError, Output, Request};
use crate::node::NodeInner;
use crate::view::View;

/// How long a request for a module with no known holder waits for the blob's directory nodes
/// to name one (at most its own timeout).
pub const FIND_WAIT: Duration = Duration::from_secs(2);

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// No module matches the reference.
    #[error("unknown module {0}")]
    UnknownModule(String),
    /// The module is known but not ready anywhere reachable.
    #[error("{0} is not ready on any reachable node")]
    NoProvider(String),
    /// The guest failed here.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The guest failed on the peer that ran it.
    #[error("{kind}: {message}")]
    RemoteGuest {
        /// The failure kind.
        kind: FailureKind,
        /// The failure message.
        message: String,
        /// The peer that ran it.
        executed_by: PeerId,
    },
    /// Every candidate was too busy to start it before its deadline.
    #[error("every node that holds {module} is busy: {detail}")]
    Busy {
        /// The module reference.
        module: String,
        /// The last refusal.
        detail: String,
    },
    /// The deadline passed before any candidate answered.
    #[error("no answer within {timeout_ms} ms")]
    Deadline {
        /// The deadline.
        timeout_ms: u64,
    },
}

/// The answer of an invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The guest's output and costs.
    pub output: Output,
    /// Time spent on the network (round trips to the executing peer), if forwarded.
    pub network: Duration,
    /// Time spent waiting for an execution slot.
    pub queue: Duration,
    /// The node that executed it.
    pub executed_by: PeerId,
    /// Whether it ran here.
    pub local: bool,
    /// The executing peer's signed receipt, when forwarded (checked before the answer is taken).
    pub receipt: Option<SignedReceipt>,
}

impl NodeInner {
    /// Runs a request where it is expected to finish first: here, or on a peer holding the
    /// module (see `wasmesh_protocol::routing`), trying the next candidate when one fails and,
    /// when a forward is slow, sending a copy to the next candidate (first answer wins).
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        module_ref: &ModuleRef,
        input: Vec<u8>,
    ) -> Result<Invocation, InvokeError> {
        // One view for the whole decision; nothing is locked.
        let route = tracing::debug_span!("route", candidates = tracing::field::Empty);
        let (entry, mut targets) = route.in_scope(|| {
            let view = self.views.load();
            let entry = view
                .registry
                .resolve(module_ref)
                .cloned()
                .ok_or_else(|| InvokeError::UnknownModule(module_ref.to_string()))?;
            let targets = self.route_targets(&view, &entry);
            Ok::<_, InvokeError>((entry, targets))
        })?;
        let manifest = &entry.signed.manifest;
        let limits = manifest.limits;
        if targets.is_empty() {
            let wait = Duration::from_millis(u64::from(limits.timeout_ms)).min(FIND_WAIT);
            targets = self
                .find_holders(&entry, wait)
                .instrument(route.clone())
                .await;
        }
        route.record("candidates", targets.len());
        if input.len() > limits.max_input as usize {
            return Err(GuestError::InputTooLarge {
                size: input.len(),
                limit: limits.max_input,
            }
            .into());
        }
        let timeout_ms = u64::from(limits.timeout_ms);
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        // The trace's own id when the request is traced, so log lines name it too.
        let trace_id = match crate::telemetry::wire_context(&tracing::Span::current()) {
            Some(trace) => u64::from_be_bytes(trace.trace_id[8..].try_into().unwrap_or_default()),
            None => {
                self.status_seq.load(Ordering::Relaxed) ^ crate::clock::now_ms().rotate_left(20)
            }
        };
        let mut targets = targets.into_iter().peekable();
        if targets.peek().is_none() {
            self.metrics.count_invocation("no_provider", "none");
            return Err(InvokeError::NoProvider(module_ref.to_string()));
        }
        let input_hash = ContentHash::of(&input);
        // What the executing peer must have signed, given the outcome it reports.
        let receipt_of = |executor: PublicKey, outcome: ContentHash, signature| SignedReceipt {
            receipt: Receipt {
                executor,
                module: manifest.blob,
                input: input_hash,
                outcome,
                trace_id,
            },
            signature,
        };
        let forward_request = |left: Duration| InvokeRequest {
            hash: manifest.blob,
            input: input.clone(),
            deadline_ms: left.as_millis().min(u128::from(u32::MAX)) as u32,
            hops: 1,
            trace_id,
            // Set by `forward`, from its own span.
            trace: None,
        };
        // Why the last candidate that refused for load did so.
        let mut busy = None;
        let mut attempts = FuturesUnordered::new();
        // When to hedge the forward in flight (one hedge per request at most).
        let mut hedge_at: Option<tokio::time::Instant> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if attempts.is_empty() {
                match targets.next() {
                    None => break,
                    Some(RouteTarget::Local(module)) => {
                        let started = Instant::now();
                        match self
                            .run_local(module, input.clone(), limits, deadline)
                            .await
                        {
                            Err(GuestError::Busy { detail }) => busy = Some(detail),
                            result => {
                                let output = result?;
                                let queue = started.elapsed().saturating_sub(output.exec_time);
                                return Ok(Invocation {
                                    output,
                                    network: Duration::ZERO,
                                    queue,
                                    executed_by: self.peer_id,
                                    local: true,
                                    receipt: None,
                                });
                            }
                        }
                    }
                    Some(RouteTarget::Peer(peer)) => {
                        self.hedge_budget.earn();
                        hedge_at = self
                            .hedging
                            .then(|| tokio::time::Instant::now() + peer.hedge_after);
                        tracing::info!(trace_id, peer = %peer.peer_id, module = %manifest.name, "forwarding a request");
                        attempts.push(self.forward(peer, forward_request(left), left));
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
                Some(attempt) = attempts.next() => match attempt.reply {
                    Ok(InvokeReply::Ok { output, queue_us, exec_us, receipt }) => {
                        let receipt = receipt_of(attempt.executor, Receipt::output_outcome(&output), receipt);
                        if self.refuse_bad_receipt(&attempt.peer, &attempt.feedback, &receipt) {
                            continue;
                        }
                        let elapsed = attempt.sent.elapsed();
                        self.observe_forward(&attempt.peer, &manifest.blob, exec_us, elapsed);
                        self.metrics.count_invocation("ok", "forwarded");
                        let exec_time = Duration::from_micros(exec_us);
                        let network = elapsed
                            .saturating_sub(exec_time)
                            .saturating_sub(Duration::from_micros(queue_us));
                        return Ok(Invocation {
                            output: Output {
                                bytes: output,
                                stderr: Vec::new(),
                                fuel_used: 0,
                                exec_time,
                            },
                            network,
                            queue: Duration::from_micros(queue_us),
                            executed_by: attempt.peer,
                            local: false,
                            receipt: Some(receipt),
                        });
                    }
                    Ok(InvokeReply::GuestFailed { kind, message, receipt }) => {
                        let receipt = receipt_of(attempt.executor, Receipt::failure_outcome(kind), receipt);
                        if self.refuse_bad_receipt(&attempt.peer, &attempt.feedback, &receipt) {
                            continue;
                        }
                        self.metrics.count_invocation(kind.as_str(), "forwarded");
                        return Err(InvokeError::RemoteGuest {
                            kind,
                            message,
                            executed_by: attempt.peer,
                        });
                    }
                    Ok(InvokeReply::Refused { reason }) => {
                        tracing::info!(trace_id, peer = %attempt.peer, %reason, "peer refused; trying the next");
                        match reason {
                            InvokeRefusal::Busy(detail) => busy = Some(detail),
                            // It said so in a status that has not arrived yet: stop routing
                            // to it now.
                            InvokeRefusal::Stopping => self.mark_down(&attempt.feedback),
                            InvokeRefusal::NotReady | InvokeRefusal::TooManyHops => {}
                        }
                    }
                    Err(error) => {
                        tracing::info!(trace_id, peer = %attempt.peer, %error, "forward failed; marking the peer down");
                        self.mark_down(&attempt.feedback);
                    }
                },
                _ = hedge_due, if may_hedge => {
                    hedge_at = None;
                    if self.hedge_budget.try_spend()
                        && let Some(RouteTarget::Peer(peer)) = targets.next()
                    {
                        self.metrics.hedges.inc();
                        tracing::info!(trace_id, peer = %peer.peer_id, "the forward is slow; hedging to the next candidate");
                        attempts.push(self.forward(peer, forward_request(left), left));
                    }
                }
                else => break,
            }
        }
        if Instant::now() >= deadline {
            self.metrics.count_invocation("deadline", "none");
            return Err(InvokeError::Deadline { timeout_ms });
        }
        if let Some(detail) = busy {
            self.metrics.count_invocation("busy", "none");
            return Err(InvokeError::Busy {
                module: module_ref.to_string(),
                detail,
            });
        }
        self.metrics.count_invocation("no_provider", "none");
        Err(InvokeError::NoProvider(module_ref.to_string()))
    }

    /// One forward of a request to a peer, counted in the peer's `forwarding` while it lasts,
    /// in a span of its own that the peer's spans join.
    fn forward(
        &self,
        peer: PeerTarget,
        request: InvokeRequest,
        left: Duration,
    ) -> tracing::instrument::Instrumented<impl Future<Output = Attempt> + '_> {
        let span = tracing::debug_span!("forward", peer = %peer.peer_id);
        self.forward_in_span(peer, request, left).instrument(span)
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
        let reply = self
            .data_plane
            .invoke(peer.addr, &request, left, ack_deadline(peer.rtt_us))
            .await;
        if reply.is_ok() {
            let took = sent.elapsed().as_secs_f64();
            self.metrics.forward_round_trip.observe(took);
        } else {
            self.metrics.forward_failures.inc();
        }
        Attempt {
            peer: peer.peer_id,
            feedback: peer.feedback.clone(),
            executor: peer.addr.key,
            sent,
            reply,
        }
    }

    /// Runs a request here; an answer after `deadline` is a timeout.
    pub(crate) async fn run_local(
        &self,
        module: Arc<crate::executor::CompiledModule>,
        input: Vec<u8>,
        limits: wasmesh_protocol::Limits,
        deadline: Instant,
    ) -> Result<Output, GuestError> {
        let started = Instant::now();
        let in_flight = crate::counted::Counted::enter(&self.in_flight);
        let result = self
            .executor
            .run_until(module.clone(), Request { input, limits }, deadline)
            .await;
        drop(in_flight);
        let outcome = match &result {
            Ok(output) => {
                module
                    .exec_mean
                    .observe(output.exec_time.as_micros() as u64);
                let queued = started.elapsed().saturating_sub(output.exec_time);
                self.metrics.queue_wait.observe(queued.as_secs_f64());
                self.metrics
                    .execution_duration
                    .observe(output.exec_time.as_secs_f64());
                "ok"
            }
            Err(error) => error.kind().as_str(),
        };
        self.metrics.count_invocation(outcome, "local");
        result
    }

    /// Asks for holders of `entry`'s blob beyond the neighbours, and waits until the views
    /// show one, the search ends without one, or `wait` has passed; the route targets then
    /// (none if none showed).
    async fn find_holders(&self, entry: &ModuleEntry, wait: Duration) -> Vec<RouteTarget> {
        let until = tokio::time::Instant::now() + wait;
        let mut search_ended = false;
        let mut ended = self.control.search_holders(entry.signed.manifest.blob);
        loop {
            let changed = self.providers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let targets = self.route_targets(&self.views.load(), entry);
            if !targets.is_empty() || search_ended {
                return targets;
            }
            tokio::select! {
                _ = &mut changed => {}
                // The view this answer follows holds whatever the search found.
                _ = &mut ended => search_ended = true,
                _ = tokio::time::sleep_until(until) => return Vec::new(),
            }
        }
    }

    /// Where the module can run, best first (`wasmesh_protocol::routing::plan`), as `view`
    /// shows it; asks the control task to measure the peers the plan names.
    fn route_targets(&self, view: &View, entry: &ModuleEntry) -> Vec<RouteTarget> {
        let hash = entry.signed.manifest.blob;
        let now_ms = self.clock_ms(Instant::now());
        let own_coordinate = view.coordinate;
        let mut local_exec_us = None;
        let mut targets = Vec::new();
        // The spread of past forwards to each peer target, by target index.
        let mut spreads = Vec::new();
        let mut holders = Vec::new();
        if let ModuleState::Ready(module) = &entry.state {
            local_exec_us = module.exec_mean.get();
            holders.push(Holder {
                id: 0usize,
                local: true,
                measured_rtt_us: Some(0),
                coordinate: None,
                in_flight: self.in_flight.load(Ordering::Relaxed),
                capacity: self.executor.capacity() as u32,
                mean_exec_us: local_exec_us,
                down_until_ms: None,
                heard_ms: now_ms,
            });
            targets.push(RouteTarget::Local(module.clone()));
            spreads.push(None);
        }
        for peer in view.peers.values() {
            let (Some(key), Some(quic)) = (peer.key, peer.quic_addr) else {
                continue;
            };
            if !peer.ready.contains(&hash) || peer.leaving || peer.peer_id == self.peer_id {
                continue;
            }
            holders.push(Holder {
                id: targets.len(),
                local: false,
                measured_rtt_us: peer.rtt_us,
                coordinate: peer.coordinate,
                // Its last reported load, plus what this node sent it since.
                in_flight: peer.in_flight.saturating_add(peer.feedback.forwarding()),
                capacity: peer.capacity,
                mean_exec_us: peer.mean_exec_us.get(&hash).copied(),
                down_until_ms: peer.feedback.down_until_ms(),
                heard_ms: self.clock_ms(peer.last_seen),
            });
            targets.push(RouteTarget::Peer(PeerTarget {
                peer_id: peer.peer_id,
                addr: PeerAddr { key, addr: quic },
                feedback: peer.feedback.clone(),
                rtt_us: 0,
                hedge_after: Duration::ZERO,
            }));
            spreads.push(peer.forward_us.get(&hash).copied());
        }
        let plan = routing::plan(&holders, &own_coordinate, local_exec_us, now_ms);
        let default_exec_us = local_exec_us.unwrap_or(routing::DEFAULT_EXEC_US);
        for holder in &holders {
            let Some(RouteTarget::Peer(target)) = targets.get_mut(holder.id) else {
                continue;
            };
            let candidate = routing::candidate(holder, &own_coordinate, default_exec_us);
            let spread = spreads.get(holder.id).copied().flatten();
            target.rtt_us = candidate.rtt_us;
            target.hedge_after = Duration::from_micros(routing::hedge_after_us(
                spread.as_ref(),
                candidate.expected_us(),
            ));
        }
        for id in &plan.probe {
            if let Some(RouteTarget::Peer(target)) = targets.get(*id) {
                self.control.probe(target.peer_id);
            }
        }
        let mut slots: Vec<Option<RouteTarget>> = targets.into_iter().map(Some).collect();
        plan.order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect()
    }

    /// Milliseconds from this node's start to `at` (the clock routing decisions use).
    pub(crate) fn clock_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Reports one answered forward to the control task: the peer's execution time and how
    /// long the whole forward took feed routing and hedging.
    fn observe_forward(&self, peer: &PeerId, hash: &ContentHash, exec_us: u64, took: Duration) {
        self.control.forward_answered(ForwardAnswer {
            peer: *peer,
            hash: *hash,
            exec_us,
            took_us: took.as_micros() as u64,
        });
    }

    /// Checks the receipt of a peer's answer: one that does not verify is counted and logged,
    /// the peer is marked down, and the answer is not taken (the next candidate is tried).
    fn refuse_bad_receipt(
        &self,
        peer: &PeerId,
        feedback: &PeerFeedback,
        receipt: &SignedReceipt,
    ) -> bool {
        if receipt.verify().is_ok() {
            return false;
        }
        self.metrics.count_rejection("bad_receipt");
        tracing::warn!(%peer, trace_id = receipt.receipt.trace_id, "a peer's answer does not match its receipt; marking it down");
        self.mark_down(feedback);
        true
    }

    /// Stops routing to a peer for a while after a failed forward; the next request, on any
    /// task, sees it at once (`core::peers::PeerFeedback`).
    fn mark_down(&self, feedback: &PeerFeedback) {
        feedback.mark_down(self.clock_ms(Instant::now()));
    }
}

/// How long a peer's QUIC stack may take to acknowledge a forwarded request before it is taken
/// for dead: four round trips plus the peer's largest acknowledgement delay and some slack.
fn ack_deadline(rtt_us: u64) -> Duration {
    Duration::from_micros(rtt_us.saturating_mul(4)) + Duration::from_millis(150)
}

/// A place a request can run.
enum RouteTarget {
    Local(Arc<crate::executor::CompiledModule>),
    Peer(PeerTarget),
}

/// A peer a request can be forwarded to.
struct PeerTarget {
    peer_id: PeerId,
    addr: PeerAddr,
    /// Requests forwarded to it now, and whether it is down (shared with the node's views).
    feedback: PeerFeedback,
    rtt_us: u64,
    /// When a forward to it counts as slow enough to hedge.
    hedge_after: Duration,
}

/// How one forward ended.
struct Attempt {
    peer: PeerId,
    /// Where a failure marks it down.
    feedback: PeerFeedback,
    /// The peer's node key (its QUIC certificate's), which must have signed the receipt.
    executor: PublicKey,
    sent: Instant,
    reply: Result<InvokeReply, ForwardError>,
}
