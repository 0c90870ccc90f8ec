//! Fetching one blob from several providers at once, verified as it arrives.
//!
//! The groups the node does not have yet (a resumed fetch starts from what
//! [`PartialBlob`] still verifies) are cut into pieces of at most
//! [`MAX_BLOB_REQUEST_GROUPS`]. Each provider (the first [`MAX_PROVIDERS`], in the order given)
//! gets two lanes, and more the farther it is (up to [`LANES_PER_PROVIDER`], see [`lanes_for`]);
//! a lane takes the next piece, asks its provider for it on a
//! stream of their shared connection, and checks every hash pair and chunk group against the
//! blob's hash as it arrives. A provider whose data does not verify, or that fails otherwise, is
//! dropped at once: the rest of its piece goes back for the others. What is verified goes to one
//! blocking writer thread, which writes it in place while the next groups arrive; the blob moves
//! into the store only once every group is verified. A node fetches at most [`MAX_FETCHING`]
//! blobs at once, and one blob at most once at a time.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bao_tree::io::BaoContentItem;
use bao_tree::io::fsm::{ResponseDecoder, ResponseDecoderNext};
use bytes::Bytes;
use iroh_io::{AsyncStreamReader, TokioStreamReader};
use tokio::sync::{Notify, Semaphore, mpsc};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{
    BLOB_ALPN, BLOB_GROUP_CHUNK_LOG, BLOB_GROUP_SIZE, BlobHeader, BlobRequest,
    MAX_BLOB_REQUEST_GROUPS,
};

use super::blobs::transfer_deadline;
use super::endpoint::{ConnectError, Connections, PeerAddr};
use super::framing::write_framed;
use super::range_compression::{decompress, max_frame_len, worth_asking};
use crate::blob_tree;
use crate::lock::lock;
use crate::metrics::{Direction, Metrics, TrafficKind};
use crate::partial_blob::PartialBlob;
use crate::store::{Store, StoreError};

/// Blobs fetched at once by this node.
pub const MAX_FETCHING: usize = 8;
/// Providers fetched from at once.
pub const MAX_PROVIDERS: usize = 4;
/// Pieces asked of one provider at once, at most: [`NEAR_LANES`], and one more for every
/// [`RTT_PER_LANE`] of its round trip, so that a far provider has enough requests in flight to
/// cover the round trip a lane waits between two pieces.
pub const LANES_PER_PROVIDER: usize = 6;
/// Lanes of a provider on the same host or LAN: two keep data moving while the previous piece
/// is verified (three measured no better on loopback).
const NEAR_LANES: usize = 2;
/// Round trip that earns a provider one more lane.
const RTT_PER_LANE: std::time::Duration = std::time::Duration::from_millis(30);
/// Batches of verified items waiting for the writer thread, at most (about 4 MiB of groups).
const WRITE_QUEUE: usize = 16;
/// Verified data a lane gathers before handing it to the writer thread in one batch: one
/// wake-up of the thread per batch rather than per chunk group.
const WRITE_BATCH: usize = 256 << 10;

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
    /// The provider sent a hash pair or chunk group that does not verify against the blob's
    /// hash (at chunk group `group`, when the lie was in the data).
    #[error("the provider sent data that does not match the blob's hash{}", group.map(|g| format!(" (chunk group {g})")).unwrap_or_default())]
    Lied {
        /// The chunk group that failed to verify.
        group: Option<u64>,
    },
    /// No progress within the idle timeout, or slower than the minimum rate.
    #[error("the transfer stalled")]
    Stalled,
    /// What arrived does not verify, or cannot be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fetching side of blobs: its slots, and the blobs being fetched.
pub(crate) struct BlobFetcher {
    fetching: Semaphore,
    /// Blobs being fetched now: a second fetch of one waits for the next attempt.
    in_progress: Arc<Mutex<HashSet<ContentHash>>>,
    metrics: Arc<Metrics>,
}

/// Marks a blob as being fetched until dropped.
struct FetchingGuard {
    hash: ContentHash,
    in_progress: Arc<Mutex<HashSet<ContentHash>>>,
}

impl Drop for FetchingGuard {
    fn drop(&mut self) {
        lock(&self.in_progress).remove(&self.hash);
    }
}

impl BlobFetcher {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            fetching: Semaphore::new(MAX_FETCHING),
            in_progress: Arc::default(),
            metrics,
        }
    }

    /// Fetches the blob `hash` of `size` bytes from `providers` into `store`, from several at
    /// once, verifying it as it arrives (see the module docs). A fetch of a blob already being
    /// fetched fails at once, with no failures: the one under way will store it.
    pub(crate) async fn fetch(
        &self,
        connections: &Connections,
        providers: &[PeerAddr],
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<FetchReport, Vec<(PeerAddr, FetchError)>> {
        let _slot = self.fetching.acquire().await.map_err(|_| Vec::new())?;
        if !lock(&self.in_progress).insert(hash) {
            tracing::debug!(hash = %hash.short(), "the blob is already being fetched");
            return Err(Vec::new());
        }
        let _guard = FetchingGuard {
            hash,
            in_progress: self.in_progress.clone(),
        };
        let started = std::time::Instant::now();
        let outcome = fetch(connections, providers, hash, size, store).await;
        let failures = match &outcome {
            Ok(report) => &report.failures,
            Err(failures) => failures,
        };
        for (provider, error) in failures {
            if matches!(error, FetchError::Lied { .. }) {
                self.metrics.count_rejection("blob_hash_mismatch");
            }
            tracing::warn!(
                hash = %hash.short(),
                provider = %provider.key.fingerprint(),
                %error,
                "blob provider dropped"
            );
        }
        if let Ok(report) = &outcome {
            self.metrics.blobs_fetched.inc();
            self.metrics
                .blob_fetch_duration
                .observe(started.elapsed().as_secs_f64());
            self.metrics.blob_fetch_size.observe(size as f64);
            self.metrics.count_traffic(
                TrafficKind::Blob,
                Direction::Received,
                report.received as usize,
            );
        }
        outcome
    }
}

/// What a finished fetch did.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Bytes received and verified in this fetch.
    pub received: u64,
    /// Bytes a previous attempt had left verified on disk, not fetched again.
    pub resumed: u64,
    /// The providers dropped along the way, with why.
    pub failures: Vec<(PeerAddr, FetchError)>,
    /// The providers that delivered data that verified (they showed they hold the blob).
    pub served: Vec<PeerAddr>,
}

/// Verified data on its way to the writer thread.
enum Verified {
    Pair(bao_tree::TreeNode, (blake3::Hash, blake3::Hash)),
    Group { offset: u64, data: Bytes },
}

/// Fetches the blob `hash` of `size` bytes from `providers` into `store`; see the module docs.
/// Fails, with each provider's failure, if the providers left some of it missing; what was
/// verified stays for the next attempt.
async fn fetch(
    connections: &Connections,
    providers: &[PeerAddr],
    hash: ContentHash,
    size: u64,
    store: &Store,
) -> Result<FetchReport, Vec<(PeerAddr, FetchError)>> {
    let io_failure = |error: std::io::Error| {
        let provider = providers.first().copied();
        provider
            .map(|p| vec![(p, FetchError::Store(StoreError::Io(error)))])
            .unwrap_or_default()
    };
    let opening = store.clone();
    let partial = tokio::task::spawn_blocking(move || opening.partial_blob(hash, size))
        .await
        .map_err(|e| io_failure(std::io::Error::other(e)))?
        .map_err(io_failure)?;
    let resumed = partial.verified_bytes();
    let pieces = Pieces::missing_from(&partial, providers.len().min(MAX_PROVIDERS));
    let (writes, mut verified) = mpsc::channel::<Vec<Verified>>(WRITE_QUEUE);
    // The writer hands the partial blob back, with the write error that stopped it if any.
    let writer = tokio::task::spawn_blocking(move || {
        let mut partial = partial;
        while let Some(batch) = verified.blocking_recv() {
            for item in batch {
                match item {
                    Verified::Pair(node, pair) => partial.save_pair(node, &pair),
                    Verified::Group { offset, data } => {
                        if let Err(error) = partial.write_verified(offset, &data) {
                            return (partial, Some(error));
                        }
                    }
                }
            }
        }
        (partial, None)
    });

    let progress = Mutex::new(FetchProgress::new(hash, size));
    let target = Target {
        hash,
        size,
        writes,
        progress: &progress,
        pieces: &pieces,
    };
    let lanes = providers
        .iter()
        .take(MAX_PROVIDERS)
        .enumerate()
        .flat_map(|provider| (0..LANES_PER_PROVIDER).map(move |lane| (provider, lane)))
        .map(|((index, provider), lane)| target.run_lane(connections, index, lane, *provider));
    let outcomes = futures::future::join_all(lanes).await;
    drop(target);

    let mut report = FetchReport {
        resumed,
        ..FetchReport::default()
    };
    let lane_providers = providers.iter().flat_map(|p| [p; LANES_PER_PROVIDER]);
    for (provider, (delivered, outcome)) in lane_providers.zip(outcomes) {
        report.received += delivered;
        if delivered > 0 && !report.served.contains(provider) {
            report.served.push(*provider);
        }
        if let Err(error) = outcome
            && !report.failures.iter().any(|(p, _)| p == provider)
        {
            report.failures.push((*provider, error));
        }
    }
    let partial = match writer.await {
        Ok((partial, None)) => partial,
        Ok((partial, Some(error))) => {
            drop_blocking(partial).await;
            report.failures.extend(io_failure(error));
            return Err(report.failures);
        }
        Err(error) => {
            report
                .failures
                .extend(io_failure(std::io::Error::other(error)));
            return Err(report.failures);
        }
    };
    if !partial.is_complete() {
        drop_blocking(partial).await;
        return Err(report.failures);
    }
    match tokio::task::spawn_blocking(move || partial.finish()).await {
        Ok(Ok(())) => Ok(report),
        Ok(Err(error)) => {
            report.failures.extend(io_failure(error));
            Err(report.failures)
        }
        Err(error) => {
            report
                .failures
                .extend(io_failure(std::io::Error::other(error)));
            Err(report.failures)
        }
    }
}

/// Drops an unfinished partial blob where saving its pairs may block.
async fn drop_blocking(partial: PartialBlob) {
    let _ = tokio::task::spawn_blocking(move || drop(partial)).await;
}

/// What every lane of one fetch shares.
struct Target<'a> {
    hash: ContentHash,
    size: u64,
    writes: mpsc::Sender<Vec<Verified>>,
    progress: &'a Mutex<FetchProgress>,
    pieces: &'a Pieces,
}

impl Target<'_> {
    /// Lane `lane` of `provider`: fetches pieces from it until none are left or it fails;
    /// returns the verified bytes it delivered, and its failure.
    async fn run_lane(
        &self,
        connections: &Connections,
        provider_index: usize,
        lane: usize,
        provider: PeerAddr,
    ) -> (u64, Result<(), FetchError>) {
        let mut delivered = 0;
        let mut connection = None;
        if lane >= NEAR_LANES {
            // A lane beyond the near ones runs only for a provider far enough: it connects
            // first to know (the first lanes report a failure to connect).
            match connections.connect(provider, BLOB_ALPN).await {
                Ok(connected) if lane < lanes_for(connected.rtt()) => connection = Some(connected),
                _ => return (0, Ok(())),
            }
        }
        while let Some(mut piece) = self.pieces.take(provider_index).await {
            let outcome = async {
                let connection = match &connection {
                    Some(connection) => connection,
                    None => connection.insert(connections.connect(provider, BLOB_ALPN).await?),
                };
                self.fetch_piece(connection, &mut piece, &mut delivered)
                    .await
            }
            .await;
            if let Err(error) = outcome {
                if matches!(error, FetchError::Busy) && lane >= NEAR_LANES {
                    // The provider is at its serving limit: this extra lane yields its piece to
                    // the others, and the provider stays.
                    self.pieces.give_back(piece, None);
                    return (delivered, Ok(()));
                }
                self.pieces.give_back(piece, Some(provider_index));
                return (delivered, Err(error));
            }
            self.pieces.done();
        }
        (delivered, Ok(()))
    }

    /// Asks for the groups `piece` and passes on what verifies, counting it in `delivered`;
    /// `piece` shrinks to the groups still missing as they arrive. What verified reaches the
    /// writer however the piece ends (done, failed, or past its deadline).
    async fn fetch_piece(
        &self,
        connection: &quinn::Connection,
        piece: &mut Range<u64>,
        delivered: &mut u64,
    ) -> Result<(), FetchError> {
        let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
        let deadline = transfer_deadline(blob_tree::bytes_of(piece, self.size));
        let mut batch = Batch::default();
        let receiving = async {
            let request = BlobRequest {
                hash: self.hash,
                first: piece.start,
                groups: (piece.end - piece.start) as u32,
                zstd: worth_asking(connection.rtt()),
            };
            let (mut recv, compressed) = ask_for_range(connection, &request, self.size).await?;
            if !compressed {
                return self
                    .verify(TokioStreamReader::new(recv), piece, delivered, &mut batch)
                    .await;
            }
            // One frame, read whole and inflated to at most the range's size: its groups are
            // then checked as if they had come plain.
            let bound = blob_tree::encoded_len_bound(piece, self.size) as usize;
            let frame = recv
                .read_to_end(max_frame_len(bound))
                .await
                .map_err(|e| protocol(&e))?;
            let encoded = decompress(&frame, bound)
                .map_err(|e| protocol(&format!("the compressed range: {e}")))?;
            self.verify(
                TokioStreamReader::new(&encoded[..]),
                piece,
                delivered,
                &mut batch,
            )
            .await
        };
        let received = tokio::time::timeout_at(deadline, receiving)
            .await
            .unwrap_or(Err(FetchError::Stalled));
        let handed = self.hand_over(&mut batch).await;
        received.and(handed)
    }

    /// Checks the verified form of `piece` read from `reader` against the blob's hash, passing
    /// on what verifies (through `batch`) and shrinking `piece` to the groups still missing.
    async fn verify<R: AsyncStreamReader>(
        &self,
        reader: R,
        piece: &mut Range<u64>,
        delivered: &mut u64,
        batch: &mut Batch,
    ) -> Result<(), FetchError> {
        let mut decoder = ResponseDecoder::new(
            blob_tree::root(&self.hash),
            blob_tree::chunks_of(piece),
            blob_tree::tree(self.size),
            reader,
        );
        loop {
            let item = match decoder.next().await {
                ResponseDecoderNext::Done(_) => return Ok(()),
                ResponseDecoderNext::More((next, item)) => {
                    decoder = next;
                    item.map_err(decode_error)?
                }
            };
            let verified = match item {
                BaoContentItem::Parent(parent) => Verified::Pair(parent.node, parent.pair),
                BaoContentItem::Leaf(leaf) => {
                    piece.start = leaf.offset / BLOB_GROUP_SIZE + 1;
                    *delivered += leaf.data.len() as u64;
                    lock(self.progress).advance(leaf.data.len());
                    Verified::Group {
                        offset: leaf.offset,
                        data: leaf.data,
                    }
                }
            };
            if batch.add(verified) {
                self.hand_over(batch).await?;
            }
        }
    }

    /// Hands the batch to the writer thread, leaving it empty.
    async fn hand_over(&self, batch: &mut Batch) -> Result<(), FetchError> {
        if batch.items.is_empty() {
            return Ok(());
        }
        self.writes
            .send(std::mem::take(batch).items)
            .await
            // The writer failed; its error is reported by the fetch.
            .map_err(|_| FetchError::Protocol("the blob cannot be written".into()))
    }
}

/// Sends `request` on a new stream of `connection` and reads the answer's header: the stream
/// to read the range from, and whether it comes compressed; an error for any other answer, or
/// one that offers a blob of another size than `size`.
pub(crate) async fn ask_for_range(
    connection: &quinn::Connection,
    request: &BlobRequest,
    size: u64,
) -> Result<(quinn::RecvStream, bool), FetchError> {
    let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| protocol(&e))?;
    write_framed(&mut send, &request.encode())
        .await
        .map_err(|e| protocol(&e))?;
    send.finish().map_err(|e| protocol(&e))?;
    let mut header = [0u8; BlobHeader::SIZE];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| protocol(&e))?;
    let compressed = match BlobHeader::decode(&header).map_err(|e| protocol(&e))? {
        BlobHeader::Found { size: offered } if offered == size => false,
        BlobHeader::FoundZstd { size: offered } if offered == size => true,
        BlobHeader::Found { size: offered } | BlobHeader::FoundZstd { size: offered } => {
            return Err(protocol(&format!(
                "offered {offered} bytes, expected {size}"
            )));
        }
        BlobHeader::NotFound => return Err(FetchError::NotFound),
        BlobHeader::Busy => return Err(FetchError::Busy),
        BlobHeader::BadRange => return Err(protocol(&"the range was refused")),
    };
    Ok((recv, compressed))
}

/// Lanes for a provider `rtt` away.
fn lanes_for(rtt: std::time::Duration) -> usize {
    let extra = (rtt.as_micros() / RTT_PER_LANE.as_micros()) as usize;
    (NEAR_LANES + extra).min(LANES_PER_PROVIDER)
}

/// Verified items a lane has not handed to the writer yet.
#[derive(Default)]
struct Batch {
    items: Vec<Verified>,
    bytes: usize,
}

impl Batch {
    /// Adds `item`; true once the batch holds [`WRITE_BATCH`] bytes of groups.
    fn add(&mut self, item: Verified) -> bool {
        if let Verified::Group { data, .. } = &item {
            self.bytes += data.len();
        }
        self.items.push(item);
        self.bytes >= WRITE_BATCH
    }
}

pub(crate) fn decode_error(error: bao_tree::io::DecodeError) -> FetchError {
    use bao_tree::io::DecodeError;
    match error {
        DecodeError::LeafHashMismatch(chunk) => FetchError::Lied {
            group: Some(chunk.0 >> BLOB_GROUP_CHUNK_LOG),
        },
        DecodeError::ParentHashMismatch(_) => FetchError::Lied { group: None },
        DecodeError::LeafNotFound(_) | DecodeError::ParentNotFound(_) => {
            FetchError::Protocol("the provider ended the range early".into())
        }
        DecodeError::Io(error) => FetchError::Protocol(error.to_string()),
    }
}

/// The pieces still to fetch, shared by the lanes.
struct Pieces {
    state: Mutex<PieceState>,
    changed: Notify,
}

struct PieceState {
    waiting: VecDeque<Range<u64>>,
    in_flight: usize,
    /// Providers (by index) that failed in this fetch.
    dropped: Vec<bool>,
}

impl Pieces {
    /// The runs of groups `partial` lacks, cut into pieces of at most one request.
    fn missing_from(partial: &PartialBlob, providers: usize) -> Self {
        let groups = blob_tree::groups(partial.size());
        let mut waiting = VecDeque::new();
        let mut group = 0;
        while group < groups {
            if partial.has_group(group) {
                group += 1;
                continue;
            }
            let start = group;
            while group < groups
                && !partial.has_group(group)
                && group - start < u64::from(MAX_BLOB_REQUEST_GROUPS)
            {
                group += 1;
            }
            waiting.push_back(start..group);
        }
        Self {
            state: Mutex::new(PieceState {
                waiting,
                in_flight: 0,
                dropped: vec![false; providers],
            }),
            changed: Notify::new(),
        }
    }

    /// The next piece for a lane of provider `provider`, once one is free; `None` when none is
    /// left (or the provider was dropped).
    async fn take(&self, provider: usize) -> Option<Range<u64>> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if state.dropped[provider] {
                    return None;
                }
                if let Some(piece) = state.waiting.pop_front() {
                    state.in_flight += 1;
                    return Some(piece);
                }
                if state.in_flight == 0 {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// A piece arrived whole.
    fn done(&self) {
        lock(&self.state).in_flight -= 1;
        self.changed.notify_waiters();
    }

    /// A piece failed with `rest` of it missing; its provider is dropped if `dropping` names it.
    fn give_back(&self, rest: Range<u64>, dropping: Option<usize>) {
        let mut state = lock(&self.state);
        state.in_flight -= 1;
        if let Some(provider) = dropping {
            state.dropped[provider] = true;
        }
        if !rest.is_empty() {
            state.waiting.push_front(rest);
        }
        drop(state);
        self.changed.notify_waiters();
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn far_providers_get_more_lanes_up_to_the_cap() {
        assert_eq!(lanes_for(Duration::ZERO), NEAR_LANES);
        assert_eq!(lanes_for(Duration::from_millis(29)), NEAR_LANES);
        assert_eq!(lanes_for(Duration::from_millis(40)), NEAR_LANES + 1);
        assert_eq!(lanes_for(Duration::from_millis(158)), LANES_PER_PROVIDER);
        assert_eq!(lanes_for(Duration::from_secs(10)), LANES_PER_PROVIDER);
    }
}
