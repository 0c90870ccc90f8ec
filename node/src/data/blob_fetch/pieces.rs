//! What the lanes of one fetch share: the pieces still to fetch, and the progress log.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::Notify;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::MAX_BLOB_REQUEST_GROUPS;

use crate::blob_tree;
use crate::lock::lock;
use crate::partial_blob::PartialBlob;

/// The pieces still to fetch, shared by the lanes.
pub(super) struct Pieces {
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
    pub(super) fn missing_from(partial: &PartialBlob, providers: usize) -> Self {
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
    pub(super) async fn take(&self, provider: usize) -> Option<Range<u64>> {
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
    pub(super) fn done(&self) {
        lock(&self.state).in_flight -= 1;
        self.changed.notify_waiters();
    }

    /// A piece failed with `rest` of it missing; its provider is dropped if `dropping` names it.
    pub(super) fn give_back(&self, rest: Range<u64>, dropping: Option<usize>) {
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
pub(super) struct FetchProgress {
    hash: ContentHash,
    size: u64,
    received: u64,
    next_quarter: u64,
    started: std::time::Instant,
}

impl FetchProgress {
    /// Blobs smaller than this are fetched silently.
    const LARGE: u64 = 8 << 20;

    pub(super) fn new(hash: ContentHash, size: u64) -> Self {
        Self {
            hash,
            size,
            received: 0,
            next_quarter: 1,
            started: std::time::Instant::now(),
        }
    }

    pub(super) fn advance(&mut self, bytes: usize) {
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
