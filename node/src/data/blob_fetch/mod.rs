//! Fetching one blob from several providers at once, verified as it arrives.
//!
//! The groups the node does not have yet (a resumed fetch starts from what
//! [`PartialBlob`] still verifies) are cut into pieces of at most
//! [`MAX_BLOB_REQUEST_GROUPS`]. Each provider (the first [`MAX_PROVIDERS`], in the order given)
//! gets two lanes, and more the farther it is (up to [`LANES_PER_PROVIDER`], see `lane::lanes_for`);
//! a lane takes the next piece, asks its provider for it on a
//! stream of their shared connection, and checks every hash pair and chunk group against the
//! blob's hash as it arrives. A provider whose data does not verify, or that fails otherwise, is
//! dropped at once: the rest of its piece goes back for the others. What is verified goes to one
//! blocking writer thread, which writes it in place while the next groups arrive; the blob moves
//! into the store only once every group is verified. A node fetches at most [`MAX_FETCHING`]
//! blobs at once, and one blob at most once at a time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::rejection::Rejection;
use tokio::sync::{Semaphore, mpsc};
use wasmesh_protocol::ContentHash;

mod error;
mod lane;
mod pieces;

pub use self::error::FetchError;
pub(crate) use self::error::decode_error;
pub use self::lane::LANES_PER_PROVIDER;
pub(crate) use self::lane::ask_for_range;
use self::lane::{Target, Verified};
use self::pieces::{FetchProgress, Pieces};
use super::endpoint::{Connections, PeerAddr};
use crate::lock::lock;
use crate::metrics::{Direction, Metrics, TrafficKind};
use crate::partial_blob::PartialBlob;
use crate::store::{Store, StoreError};

/// Blobs fetched at once by this node.
pub const MAX_FETCHING: usize = 8;
/// Providers fetched from at once.
pub const MAX_PROVIDERS: usize = 4;
/// Batches of verified items waiting for the writer thread, at most (about 4 MiB of groups).
const WRITE_QUEUE: usize = 16;
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
        connections: &Arc<Connections>,
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
                self.metrics.count_rejection(Rejection::BlobHashMismatch);
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

/// Fetches the blob `hash` of `size` bytes from `providers` into `store`; see the module docs.
/// Fails, with each provider's failure, if the providers left some of it missing; what was
/// verified stays for the next attempt.
async fn fetch(
    connections: &Arc<Connections>,
    providers: &[PeerAddr],
    hash: ContentHash,
    size: u64,
    store: &Store,
) -> Result<FetchReport, Vec<(PeerAddr, FetchError)>> {
    let io_failure = |error: std::io::Error| store_failure(providers, error);
    let opening = store.clone();
    let partial = tokio::task::spawn_blocking(move || opening.partial_blob(hash, size))
        .await
        .map_err(|e| io_failure(std::io::Error::other(e)))?
        .map_err(io_failure)?;
    let resumed = partial.verified_bytes();
    let pieces = Pieces::missing_from(&partial, providers.len().min(MAX_PROVIDERS));
    let (writes, verified) = mpsc::channel::<Vec<Verified>>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_verified(partial, verified));
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
    let mut report = report_of(providers, resumed, outcomes);
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
    let finished = tokio::task::spawn_blocking(move || partial.finish())
        .await
        .unwrap_or_else(|error| Err(std::io::Error::other(error)));
    match finished {
        Ok(()) => Ok(report),
        Err(error) => {
            report.failures.extend(io_failure(error));
            Err(report.failures)
        }
    }
}

/// A failure of this node's store, reported against the first provider.
fn store_failure(providers: &[PeerAddr], error: std::io::Error) -> Vec<(PeerAddr, FetchError)> {
    providers
        .first()
        .map(|p| vec![(*p, FetchError::Store(StoreError::Io(error)))])
        .unwrap_or_default()
}

/// The writer thread: writes what the lanes verified into `partial` in place, and hands it
/// back with the write error that stopped it, if any.
fn write_verified(
    mut partial: PartialBlob,
    mut verified: mpsc::Receiver<Vec<Verified>>,
) -> (PartialBlob, Option<std::io::Error>) {
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
}

/// What the lanes delivered, by provider: the bytes, who served verified data, and each
/// provider's first failure.
fn report_of(
    providers: &[PeerAddr],
    resumed: u64,
    outcomes: Vec<(u64, Result<(), FetchError>)>,
) -> FetchReport {
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
    report
}

/// Drops an unfinished partial blob where saving its pairs may block.
async fn drop_blocking(partial: PartialBlob) {
    let _ = tokio::task::spawn_blocking(move || drop(partial)).await;
}
