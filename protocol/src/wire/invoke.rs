//! Forwarded requests between nodes (QUIC, ALPN [`INVOKE_ALPN`](super::INVOKE_ALPN)): the
//! request, the executor's reply with its signed receipt, and the kinds of failure and refusal.

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::crypto::Signature;
use crate::hash::ContentHash;

/// Largest encoded invoke request or reply (the largest body plus framing).
pub const MAX_INVOKE_MESSAGE_SIZE: usize = crate::limits::Limits::MAX_BODY as usize + 4096;

/// A request forwarded to a peer over `wasmesh/invoke/2` (one bidirectional stream each: a
/// 4-byte little-endian length and this message; the reply comes back the same way).
/// A forwarded request is executed by the receiver or refused, never forwarded again.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct InvokeRequest {
    /// The blob to run (the manifest the sender resolved the reference to).
    pub hash: ContentHash,
    /// The request body.
    pub input: Vec<u8>,
    /// Time left for the answer, in milliseconds, when the request was sent.
    pub deadline_ms: u32,
    /// How many times the request was forwarded (at most 1).
    pub hops: u8,
    /// Correlates the log lines of both nodes.
    pub trace_id: u64,
    /// The forwarding node's span (W3C trace context), when it traces the request: the
    /// executing node's spans join the same trace.
    pub trace: Option<TraceContext>,
    /// Chosen by the forwarding node for this forward; the answer's receipt must name it.
    pub nonce: u64,
}

/// A span of a distributed trace, as W3C `traceparent` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct TraceContext {
    /// The trace (16 bytes, not all zero).
    pub trace_id: [u8; 16],
    /// The span the receiver's spans are children of (8 bytes, not all zero).
    pub span_id: [u8; 8],
    /// Whether the trace is recorded (the `sampled` flag).
    pub sampled: bool,
}

/// The answer to an [`InvokeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum InvokeReply {
    /// The guest's output.
    Ok {
        /// The response body.
        output: Vec<u8>,
        /// Time spent queueing for a slot, in microseconds.
        queue_us: u64,
        /// Time spent executing, in microseconds.
        exec_us: u64,
        /// The executor's signature of the [`Receipt`](crate::receipt::Receipt) of this answer.
        receipt: Signature,
    },
    /// The guest failed (a typed failure: its kind and message).
    GuestFailed {
        /// The failure kind.
        kind: FailureKind,
        /// The failure message.
        message: String,
        /// The executor's signature of the [`Receipt`](crate::receipt::Receipt) of this failure.
        receipt: Signature,
    },
    /// The peer does not run it: try another.
    Refused {
        /// Why.
        reason: InvokeRefusal,
    },
}

/// Why a guest request failed: the fixed set every node, the CLI, HTTP error bodies and metrics
/// labels share. On the wire it is an index, so a peer cannot send a kind outside the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum FailureKind {
    /// The guest used all its fuel.
    FuelExhausted,
    /// The guest tried to grow memory (or a table) past its cap.
    MemoryLimit,
    /// The guest ran past its deadline.
    Timeout,
    /// The guest trapped.
    Trap,
    /// A WASI guest exited with a non-zero status.
    Exit,
    /// The guest's output broke the ABI or the output limit.
    BadOutput,
    /// The input is over the module's limit.
    InputTooLarge,
    /// The module is not valid, or not runnable here.
    InvalidModule,
    /// The module imports what its ABI does not provide.
    UnsupportedImport,
    /// No slot could be had in time.
    Busy,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 10] = [
        FailureKind::FuelExhausted,
        FailureKind::MemoryLimit,
        FailureKind::Timeout,
        FailureKind::Trap,
        FailureKind::Exit,
        FailureKind::BadOutput,
        FailureKind::InputTooLarge,
        FailureKind::InvalidModule,
        FailureKind::UnsupportedImport,
        FailureKind::Busy,
    ];

    /// Its stable name (`fuel_exhausted`, `trap`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::FuelExhausted => "fuel_exhausted",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Timeout => "timeout",
            FailureKind::Trap => "trap",
            FailureKind::Exit => "exit",
            FailureKind::BadOutput => "bad_output",
            FailureKind::InputTooLarge => "input_too_large",
            FailureKind::InvalidModule => "invalid_module",
            FailureKind::UnsupportedImport => "unsupported_import",
            FailureKind::Busy => "busy",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a peer did not run a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum InvokeRefusal {
    /// The module is not ready there.
    NotReady,
    /// The request was forwarded already (requests are forwarded at most once).
    TooManyHops,
    /// The peer is at its limit (its slots, or the sender's share of them), with details.
    Busy(String),
    /// The peer is stopping (it finishes what it holds and takes nothing new).
    Stopping,
}

impl std::fmt::Display for InvokeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeRefusal::NotReady => f.write_str("not ready here"),
            InvokeRefusal::TooManyHops => f.write_str("too many hops"),
            InvokeRefusal::Busy(detail) => write!(f, "busy: {detail}"),
            InvokeRefusal::Stopping => f.write_str("stopping"),
        }
    }
}

impl InvokeRequest {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a request of at most [`MAX_INVOKE_MESSAGE_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_INVOKE_MESSAGE_SIZE)
    }
}

impl InvokeReply {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a reply of at most [`MAX_INVOKE_MESSAGE_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_INVOKE_MESSAGE_SIZE)
    }
}
