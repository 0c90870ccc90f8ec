//! The request-response codecs of the control plane: one generic codec with size limits, and
//! the message pairs it carries (sync, status, holders). It counts what it sends and receives by kind,
//! and what it refuses: libp2p does not report a request that fails to decode to the behaviour.
//! A pair that must act on a malformed request (status: the sender is disconnected) gets it as
//! a request of its own ([`Messages::malformed_request`]).

use std::marker::PhantomData;
use std::sync::Arc;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use wasmesh_protocol::codec::DecodeError;
use wasmesh_protocol::holders::{
    HolderAnswer, HolderRequest, MAX_HOLDER_ANSWER_SIZE, MAX_HOLDER_REQUEST_SIZE,
};
use wasmesh_protocol::wire::{
    MAX_STATUS_ACK_SIZE, MAX_STATUS_SIZE, MAX_SYNC_REQUEST_SIZE, MAX_SYNC_RESPONSE_SIZE, StatusAck,
    StatusMessage, SyncRequest, SyncResponse,
};

use crate::metrics::{Direction, Metrics, TrafficKind};
use crate::rejection::Rejection;

/// A request-response pair on the wire: its messages, their limits, and how they are counted.
pub(crate) trait Messages: Send + Sync + 'static {
    type Request: Send + std::fmt::Debug;
    type Response: Send + std::fmt::Debug;
    /// The traffic kind the bytes are counted as.
    const KIND: TrafficKind;
    /// The rejection counted for a message that does not decode.
    const MALFORMED: Rejection;
    /// Largest request taken.
    const MAX_REQUEST: usize;
    /// Largest response taken.
    const MAX_RESPONSE: usize;
    fn encode_request(request: &Self::Request) -> Vec<u8>;
    fn decode_request(bytes: &[u8]) -> Result<Self::Request, DecodeError>;
    /// What a request that does not decode becomes, to reach the behaviour; `None`: it fails
    /// the stream, unseen by the behaviour.
    fn malformed_request(_error: &DecodeError) -> Option<Self::Request> {
        None
    }
    fn encode_response(response: &Self::Response) -> Vec<u8>;
    fn decode_response(bytes: &[u8]) -> Result<Self::Response, DecodeError>;
}

/// Manifest sync and peer exchange.
#[derive(Debug)]
pub(crate) struct SyncPair;

impl Messages for SyncPair {
    type Request = SyncRequest;
    type Response = SyncResponse;
    const KIND: TrafficKind = TrafficKind::Sync;
    const MALFORMED: Rejection = Rejection::SyncMalformed;
    const MAX_REQUEST: usize = MAX_SYNC_REQUEST_SIZE;
    const MAX_RESPONSE: usize = MAX_SYNC_RESPONSE_SIZE;
    fn encode_request(request: &SyncRequest) -> Vec<u8> {
        request.encode()
    }
    fn decode_request(bytes: &[u8]) -> Result<SyncRequest, DecodeError> {
        SyncRequest::decode(bytes)
    }
    fn encode_response(response: &SyncResponse) -> Vec<u8> {
        response.encode()
    }
    fn decode_response(bytes: &[u8]) -> Result<SyncResponse, DecodeError> {
        SyncResponse::decode(bytes)
    }
}

/// A status to a connected peer, and its answer.
#[derive(Debug)]
pub(crate) struct StatusPair;

impl Messages for StatusPair {
    /// A status, or why it did not decode.
    type Request = Result<StatusMessage, DecodeError>;
    type Response = StatusAck;
    const KIND: TrafficKind = TrafficKind::Status;
    const MALFORMED: Rejection = Rejection::StatusMalformed;
    const MAX_REQUEST: usize = MAX_STATUS_SIZE;
    const MAX_RESPONSE: usize = MAX_STATUS_ACK_SIZE;
    fn encode_request(request: &Self::Request) -> Vec<u8> {
        request
            .as_ref()
            .map(StatusMessage::encode)
            .unwrap_or_default()
    }
    fn decode_request(bytes: &[u8]) -> Result<Self::Request, DecodeError> {
        StatusMessage::decode(bytes).map(Ok)
    }
    fn malformed_request(error: &DecodeError) -> Option<Self::Request> {
        Some(Err(error.clone()))
    }
    fn encode_response(response: &StatusAck) -> Vec<u8> {
        response.encode()
    }
    fn decode_response(bytes: &[u8]) -> Result<StatusAck, DecodeError> {
        StatusAck::decode(bytes)
    }
}

/// Holder announcements and lookups, and their answers.
#[derive(Debug)]
pub(crate) struct HoldersPair;

impl Messages for HoldersPair {
    type Request = HolderRequest;
    type Response = HolderAnswer;
    const KIND: TrafficKind = TrafficKind::Holders;
    const MALFORMED: Rejection = Rejection::HoldersMalformed;
    const MAX_REQUEST: usize = MAX_HOLDER_REQUEST_SIZE;
    const MAX_RESPONSE: usize = MAX_HOLDER_ANSWER_SIZE;
    fn encode_request(request: &HolderRequest) -> Vec<u8> {
        request.encode()
    }
    fn decode_request(bytes: &[u8]) -> Result<HolderRequest, DecodeError> {
        HolderRequest::decode(bytes)
    }
    fn encode_response(response: &HolderAnswer) -> Vec<u8> {
        response.encode()
    }
    fn decode_response(bytes: &[u8]) -> Result<HolderAnswer, DecodeError> {
        HolderAnswer::decode(bytes)
    }
}

/// The codec of the pair `M`.
pub(crate) struct LimitedCodec<M> {
    metrics: Arc<Metrics>,
    messages: PhantomData<M>,
}

impl<M> LimitedCodec<M> {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            messages: PhantomData,
        }
    }
}

impl<M> Clone for LimitedCodec<M> {
    fn clone(&self) -> Self {
        Self::new(self.metrics.clone())
    }
}

impl<M: Messages> LimitedCodec<M> {
    async fn send<T: futures::AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        self.metrics
            .count_traffic(M::KIND, Direction::Sent, bytes.len());
        io.write_all(bytes).await?;
        io.close().await
    }

    /// Reads at most `limit` bytes and decodes them, counting what is refused.
    async fn receive<T, V>(
        &self,
        io: &mut T,
        limit: usize,
        decode: fn(&[u8]) -> Result<V, DecodeError>,
    ) -> Result<V, Refused>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(Refused::Io)?;
        self.metrics
            .count_traffic(M::KIND, Direction::Received, bytes.len());
        let decoded = match bytes.len() {
            len if len > limit => Err(DecodeError::TooLarge { len, max: limit }),
            _ => decode(&bytes),
        };
        decoded.map_err(|error| {
            self.metrics.count_rejection(M::MALFORMED);
            tracing::info!(%error, what = %M::MALFORMED, "refused a control message");
            Refused::Malformed(error)
        })
    }
}

/// Why a message was not read.
enum Refused {
    Io(std::io::Error),
    Malformed(DecodeError),
}

impl From<Refused> for std::io::Error {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Io(error) => error,
            Refused::Malformed(error) => invalid(error),
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl<M: Messages> request_response::Codec for LimitedCodec<M> {
    type Protocol = StreamProtocol;
    type Request = M::Request;
    type Response = M::Response;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<M::Request>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        match self.receive(io, M::MAX_REQUEST, M::decode_request).await {
            Err(Refused::Malformed(error)) => {
                M::malformed_request(&error).ok_or_else(|| Refused::Malformed(error).into())
            }
            read => read.map_err(Into::into),
        }
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<M::Response>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.receive(io, M::MAX_RESPONSE, M::decode_response)
            .await
            .map_err(Into::into)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: M::Request,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.send(io, &M::encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: M::Response,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.send(io, &M::encode_response(&response)).await
    }
}
