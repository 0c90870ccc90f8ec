//! Forwarded requests over QUIC, protocol `wasmesh/invoke/2`: per stream, the forwarding node
//! writes a framed `InvokeRequest` and finishes its side; the executing node answers with a
//! framed `InvokeReply` (output or failure, with its signed receipt, or a refusal).
//!
//! A peer that died without closing its connection would hold a forward until its deadline: the
//! peer's QUIC stack must acknowledge the whole request within a few round trips, or the forward
//! fails as [`ForwardError::Unresponsive`] and the caller tries elsewhere while time is left.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmesh_protocol::PublicKey;
use wasmesh_protocol::wire::{INVOKE_ALPN, InvokeReply, InvokeRequest, MAX_INVOKE_MESSAGE_SIZE};

use super::endpoint::{ConnectError, Connections, PeerAddr};
use super::framing::{RequestError, read_framed, read_request, write_framed};
use crate::metrics::{Direction, Metrics, TrafficKind};

/// Time a peer has to send a forwarded request's body.
pub const INVOKE_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs requests forwarded by peers (implemented by the node).
pub trait InvokeHandler: Send + Sync + 'static {
    /// Executes (or refuses) one forwarded request from the peer with key `from`.
    fn handle(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> futures::future::BoxFuture<'static, InvokeReply>;
}

/// Why a forward to one peer got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No connection could be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The peer broke the protocol (closed early, an undecodable reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer did not acknowledge the request within a few round trips (it is likely down).
    #[error("the peer did not acknowledge the request")]
    Unresponsive,
    /// No reply before the request's deadline.
    #[error("no reply before the deadline")]
    Deadline,
}

/// Why a forwarded request from a peer was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeInvokeError {
    /// The request was not taken.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The peer went away before the reply was sent.
    #[error("the peer went away")]
    PeerGone,
}

/// Answers one forwarded request on a stream the peer with key `from` opened.
pub(crate) async fn serve(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    handler: Arc<dyn InvokeHandler>,
    from: PublicKey,
    metrics: &Metrics,
) -> Result<(), ServeInvokeError> {
    let request = read_request(
        &mut recv,
        MAX_INVOKE_MESSAGE_SIZE,
        INVOKE_READ_TIMEOUT,
        InvokeRequest::decode,
    )
    .await?;
    metrics.count_traffic(
        TrafficKind::Invoke,
        Direction::Received,
        request.input.len(),
    );
    let span = tracing::debug_span!("remote", from = %from.fingerprint());
    if let Some(trace) = &request.trace {
        crate::telemetry::continue_from_wire(&span, trace);
    }
    let reply = handler
        .handle(request, from)
        .instrument(span.clone())
        .await
        .encode();
    metrics.count_traffic(TrafficKind::Invoke, Direction::Sent, reply.len());
    let replying = async {
        write_framed(&mut send, &reply)
            .await
            .map_err(|_| ServeInvokeError::PeerGone)?;
        send.finish().map_err(|_| ServeInvokeError::PeerGone)?;
        let _ = send.stopped().await;
        Ok(())
    };
    replying
        .instrument(tracing::debug_span!(parent: &span, "reply", bytes = reply.len()))
        .await
}

/// Waits until the peer has acknowledged the request, for as long as it shows signs of life:
/// each `ack_within` that passes without the acknowledgement must have brought packets from it
/// on this connection. A peer that is busy but alive gets the request's whole time (a slow
/// forward is hedged by the request path); one that went silent is unresponsive.
async fn acknowledged(
    connection: &quinn::Connection,
    send: &quinn::SendStream,
    ack_within: Duration,
) -> Result<(), ForwardError> {
    let mut heard = connection.stats().udp_rx.datagrams;
    loop {
        if tokio::time::timeout(ack_within, send.stopped())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let now = connection.stats().udp_rx.datagrams;
        if now == heard {
            return Err(ForwardError::Unresponsive);
        }
        heard = now;
    }
}

/// Sends a request to `peer` and waits for its reply, for at most `timeout`; the peer must
/// acknowledge the request within `ack_within`.
pub(crate) async fn forward(
    connections: &Arc<Connections>,
    peer: PeerAddr,
    request: &InvokeRequest,
    timeout: Duration,
    ack_within: Duration,
    metrics: &Metrics,
) -> Result<InvokeReply, ForwardError> {
    let exchange = async {
        let protocol = |e: &dyn std::fmt::Display| ForwardError::Protocol(e.to_string());
        // Handing the request to QUIC must not wait on a dead peer either: a stale connection
        // can have no stream credit left.
        let hand_over = async {
            let connection = connections.connect(peer, INVOKE_ALPN).await?;
            let (mut send, recv) = connection.open_bi().await.map_err(|e| protocol(&e))?;
            metrics.count_traffic(TrafficKind::Invoke, Direction::Sent, request.input.len());
            write_framed(&mut send, &request.encode())
                .await
                .map_err(|e| protocol(&e))?;
            send.finish().map_err(|e| protocol(&e))?;
            Ok::<_, ForwardError>((connection, send, recv))
        };
        let (connection, send, mut recv) = tokio::time::timeout(ack_within, hand_over)
            .await
            .map_err(|_| ForwardError::Unresponsive)??;
        let reply = read_framed(&mut recv, MAX_INVOKE_MESSAGE_SIZE);
        tokio::pin!(reply);
        let acknowledged = acknowledged(&connection, &send, ack_within);
        let bytes = tokio::select! {
            bytes = &mut reply => bytes,
            acked = acknowledged => match acked {
                Ok(()) => reply.await,
                Err(error) => return Err(error),
            },
        }
        .map_err(|e| protocol(&e))?;
        metrics.count_traffic(TrafficKind::Invoke, Direction::Received, bytes.len());
        InvokeReply::decode(&bytes).map_err(|e| protocol(&e))
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ForwardError::Deadline)
        .and_then(|r| r);
    if matches!(
        result,
        Err(ForwardError::Unresponsive | ForwardError::Deadline)
    ) {
        // The connection is likely dead (the peer crashed or restarted).
        connections.forget(peer, INVOKE_ALPN);
    }
    result
}
