//! Blobs over QUIC, protocol `wasmesh/blob/1` (see `wasmesh_protocol::wire`): per stream, the
//! client writes a framed `BlobRequest` and finishes its side; the server answers with a 9-byte
//! `BlobHeader` and, when found, exactly `size` bytes of the blob.
//!
//! Bounds: the node serves at most [`MAX_SERVING`] blobs at once (more get `Busy`) and fetches
//! at most [`MAX_FETCHING`]; a request must arrive within [`REQUEST_TIMEOUT`]; a fetch that
//! stalls for [`IDLE_TIMEOUT`] is abandoned, and so is a transfer, either way, slower than
//! [`MIN_TRANSFER_RATE`] (see [`transfer_deadline`]): a peer that trickles or never reads holds
//! no fetch slot or serving permit for long. What arrives is hashed while written and renamed
//! into place only once it verifies (`Store::blob_writer`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{BLOB_ALPN, BlobHeader, BlobRequest, MAX_BLOB_REQUEST_SIZE};

use super::endpoint::{ConnectError, Connections, PeerAddr};
use super::framing::{RequestError, read_request, write_framed};
use crate::metrics::{Direction, Metrics, TrafficKind};
use crate::store::{Store, StoreError};

/// Blobs served at once by this node.
pub const MAX_SERVING: usize = 32;
/// Blobs fetched at once by this node.
pub const MAX_FETCHING: usize = 8;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A transfer that moves no byte for this long is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a blob transfer may be, in bytes per second, beyond its first [`IDLE_TIMEOUT`].
pub const MIN_TRANSFER_RATE: u64 = 256 << 10;
/// Bytes received at once.
const CHUNK: usize = 256 * 1024;
/// Bytes read from disk at once when serving (at most `MAX_SERVING` of these buffers exist).
const SERVE_READ: usize = 4 << 20;

/// When a transfer of `size` bytes that starts now must be over.
pub fn transfer_deadline(size: u64) -> tokio::time::Instant {
    tokio::time::Instant::now()
        + IDLE_TIMEOUT
        + Duration::from_millis(size * 1000 / MIN_TRANSFER_RATE)
}

/// Why a blob could not be fetched from one provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No connection could be made (unreachable, wrong key, refused).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The provider does not hold the blob.
    #[error("the provider does not hold the blob")]
    NotFound,
    /// The provider is at its transfer limit.
    #[error("the provider is busy")]
    Busy,
    /// The provider broke the protocol (bad header, wrong size, closed early).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No progress within the idle timeout, or slower than the minimum rate.
    #[error("the transfer stalled")]
    Stalled,
    /// What arrived does not verify, or cannot be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// The peer reads below the minimum rate.
    #[error("the peer reads below the minimum rate")]
    SlowReader,
}

/// The blob side of the data plane: its fetch slots and serving permits.
pub(crate) struct Blobs {
    fetching: Semaphore,
    serving: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Blobs {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            fetching: Semaphore::new(MAX_FETCHING),
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
        let (header, file) = match self.serving.clone().try_acquire_owned() {
            Err(_) => (BlobHeader::Busy, None),
            Ok(permit) => match store.open_blob(&request.hash) {
                Ok((file, size)) => (BlobHeader::Found { size }, Some((file, permit))),
                Err(_) => (BlobHeader::NotFound, None),
            },
        };
        let gone = |_| ServeBlobError::PeerGone;
        send.write_all(&header.encode()).await.map_err(gone)?;
        if let (Some((file, _permit)), BlobHeader::Found { size }) = (file, header) {
            let mut file = tokio::fs::File::from_std(file);
            // Large reads: each one is a round trip through the blocking pool.
            file.set_max_buf_size(SERVE_READ);
            let mut buffer = vec![0u8; SERVE_READ];
            let sending = async {
                loop {
                    let n = file.read(&mut buffer).await.map_err(ServeBlobError::Read)?;
                    if n == 0 {
                        return Ok::<(), ServeBlobError>(());
                    }
                    send.write_all(&buffer[..n]).await.map_err(gone)?;
                }
            };
            tokio::time::timeout_at(transfer_deadline(size), sending)
                .await
                .map_err(|_| ServeBlobError::SlowReader)??;
            self.metrics.blobs_served.inc();
            self.metrics
                .count_traffic(TrafficKind::Blob, Direction::Sent, size as usize);
        }
        send.finish().map_err(|_| ServeBlobError::PeerGone)?;
        // Wait until the peer has the data (or leaves) before dropping the stream.
        let _ = send.stopped().await;
        Ok(())
    }

    /// Fetches the blob `hash` of `size` bytes from `provider` into `store`, verifying it.
    pub(crate) async fn fetch(
        &self,
        connections: &Connections,
        provider: PeerAddr,
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<(), FetchError> {
        let _slot = self
            .fetching
            .acquire()
            .await
            .map_err(|_| FetchError::Protocol("shutting down".into()))?;
        let started = std::time::Instant::now();
        let connection = connections.connect(provider, BLOB_ALPN).await?;
        let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| protocol(&e))?;
        write_framed(&mut send, &BlobRequest { hash }.encode())
            .await
            .map_err(|e| protocol(&e))?;
        send.finish().map_err(|e| protocol(&e))?;

        let mut header = [0u8; BlobHeader::SIZE];
        tokio::time::timeout(IDLE_TIMEOUT, recv.read_exact(&mut header))
            .await
            .map_err(|_| FetchError::Stalled)?
            .map_err(|e| protocol(&e))?;
        match BlobHeader::decode(&header).map_err(|e| protocol(&e))? {
            BlobHeader::Found { size: offered } if offered == size => {}
            BlobHeader::Found { size: offered } => {
                return Err(protocol(&format!(
                    "offered {offered} bytes, expected {size}"
                )));
            }
            BlobHeader::NotFound => return Err(FetchError::NotFound),
            BlobHeader::Busy => return Err(FetchError::Busy),
        }
        receive_into_store(recv, hash, size, store).await?;
        self.metrics.blobs_fetched.inc();
        self.metrics
            .blob_fetch_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.blob_fetch_size.observe(size as f64);
        self.metrics
            .count_traffic(TrafficKind::Blob, Direction::Received, size as usize);
        Ok(())
    }

    /// Fetches from the first provider that delivers a verified blob, trying them in order.
    /// Returns the failures of the providers tried before.
    pub(crate) async fn fetch_from_any(
        &self,
        connections: &Connections,
        providers: &[PeerAddr],
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<Vec<(PeerAddr, FetchError)>, Vec<(PeerAddr, FetchError)>> {
        let mut failures = Vec::new();
        for provider in providers {
            match self.fetch(connections, *provider, hash, size, store).await {
                Ok(()) => return Ok(failures),
                Err(error) => {
                    if matches!(error, FetchError::Store(StoreError::HashMismatch { .. })) {
                        self.metrics.count_rejection("blob_hash_mismatch");
                    }
                    tracing::warn!(
                        hash = %hash.short(),
                        provider = %provider.key.fingerprint(),
                        %error,
                        "blob fetch failed; trying the next provider"
                    );
                    failures.push((*provider, error));
                }
            }
        }
        Err(failures)
    }
}

/// Receives the blob's bytes into the store. Receiving and verifying overlap: a blocking thread
/// hashes and writes each chunk while the next one arrives (at most 16 chunks, 4 MiB, in
/// between); the file is renamed into place only once all of it verifies.
async fn receive_into_store(
    mut recv: quinn::RecvStream,
    hash: ContentHash,
    size: u64,
    store: &Store,
) -> Result<(), FetchError> {
    let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
    let writer = store.blob_writer(hash, size).map_err(StoreError::Io)?;
    let (chunks, incoming) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
    let verify = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        for chunk in incoming {
            writer.write(&chunk)?;
        }
        Ok::<_, StoreError>(writer)
    });
    let deadline = transfer_deadline(size);
    let received: Result<(), FetchError> = async {
        let mut progress = FetchProgress::new(hash, size);
        loop {
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(hash = %hash.short(), "the provider sends below the minimum rate");
                return Err(FetchError::Stalled);
            }
            let idle_until = deadline.min(tokio::time::Instant::now() + IDLE_TIMEOUT);
            let chunk = tokio::time::timeout_at(idle_until, recv.read_chunk(CHUNK, true))
                .await
                .map_err(|_| FetchError::Stalled)?
                .map_err(|e| protocol(&e))?;
            let Some(chunk) = chunk else { return Ok(()) };
            progress.advance(chunk.bytes.len());
            if chunks.send(chunk.bytes).is_err() {
                // The writer stopped early (too many bytes); its error is reported below.
                return Ok(());
            }
        }
    }
    .await;
    drop(chunks);
    let writer = verify.await.map_err(|e| protocol(&e))??;
    received?;
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| protocol(&e))??;
    Ok(())
}

/// Logs the progress of large fetches, every quarter.
struct FetchProgress {
    hash: ContentHash,
    size: u64,
    received: u64,
    next_quarter: u64,
    started: std::time::Instant,
}

impl FetchProgress {
    /// Blobs smaller than this are fetched silently.
    const LARGE: u64 = 8 << 20;

    fn new(hash: ContentHash, size: u64) -> Self {
        Self {
            hash,
            size,
            received: 0,
            next_quarter: 1,
            started: std::time::Instant::now(),
        }
    }

    fn advance(&mut self, bytes: usize) {
        self.received += bytes as u64;
        if self.size < Self::LARGE {
            return;
        }
        while self.next_quarter <= 4 && self.received * 4 >= self.size * self.next_quarter {
            let mib_s = self.received as f64
                / (1 << 20) as f64
                / self.started.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(
                hash = %self.hash.short(),
                done = format!("{}%", self.next_quarter * 25),
                mib_s = format!("{mib_s:.0}"),
                "fetching blob"
            );
            self.next_quarter += 1;
        }
    }
}
