//! Blobs over QUIC, protocol `wasmesh/blob/3` (see `wasmesh_protocol::wire`): per stream, the
//! client writes a framed `BlobRequest` for a range of chunk groups and finishes its side; the
//! server answers with a 9-byte `BlobHeader` and, when found, the range in verified form
//! (`encode_range`), compressed when the client takes that and it pays (`range_compression`).
//! Fetching, from several providers at once, is `blob_fetch`'s; the deadlines here bound both
//! sides.
//!
//! Bounds: the node serves at most [`MAX_SERVING`] ranges at once (more get `Busy`), each at
//! most 1 MiB; a request must arrive within
//! [`REQUEST_TIMEOUT`]; a range that stalls for [`IDLE_TIMEOUT`] is abandoned, and so is one
//! moving, either way, slower than [`MIN_TRANSFER_RATE`] (see [`transfer_deadline`]): a peer
//! that trickles or never reads holds no fetch slot or serving permit for long.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmesh_protocol::wire::{
    BlobHeader, BlobRequest, MAX_BLOB_REQUEST_GROUPS, MAX_BLOB_REQUEST_SIZE,
};

use super::framing::{RequestError, read_request};
use super::range_compression::compress_if_worth;
use crate::blob_tree;
use crate::metrics::{Direction, Metrics, TrafficKind};
use crate::store::Store;

/// Blobs served at once by this node.
pub const MAX_SERVING: usize = 32;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A transfer that moves no byte for this long is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a blob transfer may be, in bytes per second, beyond its first [`IDLE_TIMEOUT`].
pub const MIN_TRANSFER_RATE: u64 = 256 << 10;

/// When a transfer of `size` bytes that starts now must be over.
pub fn transfer_deadline(size: u64) -> tokio::time::Instant {
    tokio::time::Instant::now()
        + IDLE_TIMEOUT
        + Duration::from_millis(size * 1000 / MIN_TRANSFER_RATE)
}

/// Why a peer's blob request was not served to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeBlobError {
    /// The request was not taken.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The peer went away.
    #[error("the peer went away")]
    PeerGone,
    /// The stored blob could not be read.
    #[error("cannot read the blob: {0}")]
    Read(std::io::Error),
    /// The task encoding the range failed.
    #[error("cannot encode the range: {0}")]
    Encode(String),
    /// The peer reads below the minimum rate.
    #[error("the peer reads below the minimum rate")]
    SlowReader,
}

/// The serving side of blobs: its permits.
pub(crate) struct Blobs {
    serving: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Blobs {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            serving: Arc::new(Semaphore::new(MAX_SERVING)),
            metrics,
        }
    }

    /// Answers one blob request on a stream a peer opened.
    pub(crate) async fn serve(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        store: &Store,
    ) -> Result<(), ServeBlobError> {
        let request = read_request(
            &mut recv,
            MAX_BLOB_REQUEST_SIZE,
            REQUEST_TIMEOUT,
            BlobRequest::decode,
        )
        .await?;
        let gone = |_| ServeBlobError::PeerGone;
        let Ok(_permit) = self.serving.clone().try_acquire_owned() else {
            send.write_all(&BlobHeader::Busy.encode())
                .await
                .map_err(gone)?;
            send.finish().map_err(|_| ServeBlobError::PeerGone)?;
            return Ok(());
        };
        let reading = store.clone();
        let encoded = tokio::task::spawn_blocking(move || encode_range(&reading, &request))
            .await
            .map_err(|e| ServeBlobError::Encode(e.to_string()))?;
        let (header, body) = match encoded {
            Ok(Some((size, EncodedRange::Compressed(body)))) => {
                (BlobHeader::FoundZstd { size }, body)
            }
            Ok(Some((size, EncodedRange::Plain(body)))) => (BlobHeader::Found { size }, body),
            Ok(None) => (BlobHeader::BadRange, Vec::new()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (BlobHeader::NotFound, Vec::new())
            }
            Err(error) => {
                let _ = send.write_all(&BlobHeader::NotFound.encode()).await;
                return Err(ServeBlobError::Read(error));
            }
        };
        send.write_all(&header.encode()).await.map_err(gone)?;
        if !body.is_empty() {
            let length = body.len();
            let deadline = transfer_deadline(length as u64);
            // Handed over whole, not copied into the stream's buffers.
            tokio::time::timeout_at(deadline, send.write_chunk(body.into()))
                .await
                .map_err(|_| ServeBlobError::SlowReader)?
                .map_err(gone)?;
            self.metrics.blobs_served.inc();
            self.metrics
                .count_traffic(TrafficKind::Blob, Direction::Sent, length);
        }
        send.finish().map_err(|_| ServeBlobError::PeerGone)?;
        // Wait until the peer has the data (or leaves) before dropping the stream.
        let _ = send.stopped().await;
        Ok(())
    }
}

/// A range ready to send.
enum EncodedRange {
    /// In verified form.
    Plain(Vec<u8>),
    /// In verified form, compressed into one zstd frame.
    Compressed(Vec<u8>),
}

/// Encodes the range `request` asks for, from the stored blob and its outboard: its size and
/// the range in verified form (compressed, if the client takes that and it shrinks), or `None`
/// for a range that is empty, too long or past the end. Blocking. The data is not hashed again
/// here: the receiver verifies every group.
fn encode_range(
    store: &Store,
    request: &BlobRequest,
) -> std::io::Result<Option<(u64, EncodedRange)>> {
    let (file, outboard) = store.open_blob_tree(&request.hash)?;
    let size = outboard.tree.size();
    let total = blob_tree::groups(size);
    if request.groups == 0 || request.groups > MAX_BLOB_REQUEST_GROUPS || request.first >= total {
        return Ok(None);
    }
    let groups = request.first..(request.first + u64::from(request.groups)).min(total);
    let mut body = Vec::with_capacity(blob_tree::encoded_len_bound(&groups, size) as usize);
    bao_tree::io::sync::encode_ranges(file, &outboard, &blob_tree::chunks_of(&groups), &mut body)
        .map_err(std::io::Error::other)?;
    let range = match request.zstd.then(|| compress_if_worth(&body)).flatten() {
        Some(frame) => EncodedRange::Compressed(frame),
        None => EncodedRange::Plain(body),
    };
    Ok(Some((size, range)))
}
