//! The request path on a node: where a request runs (here, or on the peer expected to answer
//! first, by `wasmesh_protocol::routing`), failover to the next candidate, hedging of slow
//! forwards, and checks that answers are honest.
//!
//! - [`targets`]: the candidates, from the node's view: this node and peers whose claim to
//!   hold the blob was proved (`crate::possession`);
//! - [`call`]: one request tried at its candidates in turn, hedged when slow, each forwarded
//!   answer checked against its signed receipt;
//! - [`verify`]: spot checks of forwarded answers (run again elsewhere, a peer contradicted by
//!   two others is never routed to again) and answers a client asks to be agreed on.
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
//! nodes (`control::holders`) and waits up to [`FIND_WAIT`] for one; one that must forward and
//! knows fewer holders than the plan probes asks them too, without waiting.

mod call;
mod targets;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::Instrument;
use wasmesh_protocol::receipt::SignedReceipt;
use wasmesh_protocol::routing;
use wasmesh_protocol::wire::FailureKind;
use wasmesh_protocol::{ContentHash, ModuleRef};

pub(crate) use self::verify::{AGREE_HEADER, MAX_AGREE, MAX_SPOT_CHECKS, SPOT_CHECK_RATE};
use crate::clock::NodeClock;
use crate::control::handle::NodeHandle;
use crate::core::peers::ForwardAnswer;
use crate::core::peers::PeerFeedback;
use crate::data::DataPlane;
use crate::data::PeerAddr;
use crate::executor::{GuestError, Output};
use crate::hedge_budget::HedgeBudget;
use crate::local_run::LocalRunner;
use crate::metrics::Metrics;
use crate::possession::PossessionChecks;
use crate::rejection::Rejection;
use crate::view::Views;

/// How long a request for a module with no known holder waits for the blob's directory nodes
/// to name one (at most its own timeout).
pub(crate) const FIND_WAIT: Duration = Duration::from_secs(2);

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum InvokeError {
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
        /// Its signed receipt of the failure.
        receipt: Box<SignedReceipt>,
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
    /// The client asked for answers that agree, and the holders tried did not.
    #[error("no {wanted} holders agreed on the answer: {detail}")]
    Disagreement {
        /// How many had to agree.
        wanted: usize,
        /// What the holders answered.
        detail: String,
    },
    /// The client asked for answers that agree on a module whose answers may differ by
    /// design (a WASI guest, which may read clocks and randomness).
    #[error("{0} is not deterministic (only raw-ABI modules are): its answers cannot be compared")]
    NotDeterministic(String),
}

/// The answer of an invocation.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
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

/// The request path (see the module docs): what routing reads and what it runs requests with.
pub(crate) struct Router {
    pub(crate) peer_id: PeerId,
    pub(crate) clock: NodeClock,
    pub(crate) views: Arc<Views>,
    /// Asks the event loop for holders and probes, and reports answered forwards.
    pub(crate) control: NodeHandle,
    /// Woken when a peer becomes a provider of something, or a proof of possession ends.
    pub(crate) providers_changed: Arc<tokio::sync::Notify>,
    pub(crate) local: LocalRunner,
    pub(crate) data_plane: DataPlane,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether slow forwards get a copy sent to the next candidate.
    pub(crate) hedging: bool,
    pub(crate) hedge_budget: HedgeBudget,
    pub(crate) possession: Arc<PossessionChecks>,
    /// The share of forwarded answers of raw-ABI modules checked again (`verify`).
    pub(crate) spot_check_rate: f64,
    /// Places of the spot checks under way.
    pub(crate) spot_checks: Arc<tokio::sync::Semaphore>,
    /// Where spot checks run; shutdown waits for them.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// When (node clock, ms) a request last asked the directory in the background.
    pub(crate) searched_at_ms: std::sync::atomic::AtomicU64,
}

/// Why a request is run: for a client, or to check another answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Purpose {
    /// Nodes not to run it on (those whose answers it checks).
    pub(crate) exclude: Vec<PeerId>,
    /// A check: its answer is not sampled for checks in turn.
    pub(crate) checking: bool,
}

impl Router {
    /// Runs a request where it is expected to finish first: here, or on a peer holding the
    /// module (see `wasmesh_protocol::routing`), trying the next candidate when one fails and,
    /// when a forward is slow, sending a copy to the next candidate (first answer wins).
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        module_ref: &ModuleRef,
        input: Vec<u8>,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_with(module_ref, input, &Purpose::default())
            .await
    }

    /// [`Router::invoke`], for `purpose`.
    pub(crate) async fn invoke_with(
        self: &Arc<Self>,
        module_ref: &ModuleRef,
        input: Vec<u8>,
        purpose: &Purpose,
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
            let targets = self.route_targets(&view, &entry, &purpose.exclude);
            Ok::<_, InvokeError>((entry, targets))
        })?;
        let limits = entry.signed.manifest.limits;
        // A check asks only holders already known: it must not set off searches of its own.
        if targets.is_empty() && !purpose.checking {
            let wait = Duration::from_millis(u64::from(limits.timeout_ms)).min(FIND_WAIT);
            targets = self
                .find_holders(&entry, wait, &purpose.exclude)
                .instrument(route.clone())
                .await;
        } else if wants_more_holders(&targets) && !purpose.checking {
            // Too few to choose the nearest from: the directory is asked in the background, and
            // later requests choose among what it names.
            self.search_in_background(entry.signed.manifest.blob);
        }
        route.record("candidates", targets.len());
        if input.len() > limits.max_input as usize {
            return Err(GuestError::InputTooLarge {
                size: input.len(),
                limit: limits.max_input,
            }
            .into());
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(limits.timeout_ms));
        let call = call::Call {
            node: self,
            signed: &entry.signed,
            module_ref: module_ref.to_string(),
            input_hash: ContentHash::of(&input),
            input,
            trace_id: self.trace_id(),
            deadline,
            purpose,
        };
        call.run(targets).await
    }

    /// Asks the control task for more holders of `blob` without waiting, at most once per
    /// [`BACKGROUND_SEARCH_EVERY`] for all blobs (the control task asks a blob's directory
    /// nodes at most every `FIND_AGAIN_AFTER`), so a stream of forwards does not wake it for
    /// each request.
    fn search_in_background(&self, blob: ContentHash) {
        use std::sync::atomic::Ordering;
        let now_ms = self.clock.now_ms();
        let last = self.searched_at_ms.load(Ordering::Relaxed);
        let every = BACKGROUND_SEARCH_EVERY.as_millis() as u64;
        if now_ms.saturating_sub(last) >= every
            && self
                .searched_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.control.find_holders(blob);
        }
    }

    /// The id that correlates a request's log lines on every node: its trace's, when it is
    /// traced. It is a label, not a secret (a forward's nonce is the unpredictable part), so it
    /// comes from a thread-local generator rather than a system call.
    fn trace_id(&self) -> u64 {
        match crate::telemetry::wire_context(&tracing::Span::current()) {
            Some(trace) => u64::from_be_bytes(trace.trace_id[8..].try_into().unwrap_or_default()),
            None => fastrand::u64(..),
        }
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
        self.metrics.count_rejection(Rejection::BadReceipt);
        tracing::warn!(%peer, trace_id = receipt.receipt.trace_id, "a peer's answer does not match its receipt; marking it down");
        self.mark_down(feedback);
        true
    }

    /// Stops routing to a peer for a while after a failed forward; the next request, on any
    /// task, sees it at once (`core::peers::PeerFeedback`).
    fn mark_down(&self, feedback: &PeerFeedback) {
        feedback.mark_down(self.clock.ms(Instant::now()));
    }
}

/// How long a peer's QUIC stack may take to acknowledge a forwarded request before it is taken
/// for dead: four round trips plus the peer's largest acknowledgement delay and some slack.
fn ack_deadline(rtt_us: u64) -> Duration {
    Duration::from_micros(rtt_us.saturating_mul(4)) + ACK_SLACK
}

/// What [`ack_deadline`] adds to four round trips: the peer's largest acknowledgement delay and
/// some slack.
const ACK_SLACK: Duration = Duration::from_millis(150);

/// A place a request can run.
enum RouteTarget {
    Local(Arc<crate::executor::CompiledModule>),
    Peer(PeerTarget),
}

/// How often requests that know too few holders may ask for more in the background.
const BACKGROUND_SEARCH_EVERY: Duration = Duration::from_millis(250);

/// Whether a request with these `targets` should look for more holders: it must forward, and
/// it knows fewer than the plan probes ([`routing::PROBE_BEST`]), so the nearest holder may be
/// one it does not know.
fn wants_more_holders(targets: &[RouteTarget]) -> bool {
    let forwards_only = targets
        .iter()
        .all(|target| matches!(target, RouteTarget::Peer(_)));
    forwards_only && targets.len() < routing::PROBE_BEST
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
