//! What the control task keeps for finding holders (`super::holders`): the directory this node
//! keeps as a directory node, what it looks up and announces, and the lookups and questions
//! under way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::kad::QueryId;
use libp2p::request_response::OutboundRequestId;
use tokio::sync::oneshot;
use wasmesh_protocol::ContentHash;

use crate::core::directory::Directory;
use crate::core::holder_search::HolderSearch;

/// How often lapsed directory entries are dropped.
pub(super) const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// The holder work of the control task: the directory this node keeps, what it looks up and
/// announces, and the Kademlia lookups under way.
#[derive(Debug)]
pub(crate) struct HolderWork {
    pub(super) directory: Directory,
    pub(super) search: HolderSearch,
    pub(super) lookups: HashMap<QueryId, Lookup>,
    /// Questions to directory nodes awaiting their answers, and the blob each is about.
    pub(super) asked: HashMap<OutboundRequestId, ContentHash>,
    /// Who waits for the search for a blob's holders to end (its lookup and the questions to
    /// its directory nodes all answered or failed).
    waiting: HashMap<ContentHash, Vec<oneshot::Sender<()>>>,
    pub(super) expired_at: Instant,
}

impl Default for HolderWork {
    fn default() -> Self {
        Self {
            directory: Directory::default(),
            search: HolderSearch::default(),
            lookups: HashMap::new(),
            asked: HashMap::new(),
            waiting: HashMap::new(),
            expired_at: Instant::now(),
        }
    }
}

impl HolderWork {
    /// Whether holders of `blob` are being searched for now (a lookup or a question under way).
    fn searching(&self, blob: &ContentHash) -> bool {
        self.lookups
            .values()
            .any(|l| l.purpose == Purpose::Find && l.blob == *blob)
            || self.asked.values().any(|b| b == blob)
    }

    /// Keeps `done` until the search for `blob` ends; gives it back if none is under way.
    pub(super) fn wait_for_search(
        &mut self,
        blob: ContentHash,
        done: oneshot::Sender<()>,
    ) -> Option<oneshot::Sender<()>> {
        if self.searching(&blob) {
            self.waiting.entry(blob).or_default().push(done);
            None
        } else {
            Some(done)
        }
    }

    /// Part of the search for `blob` ended: its waiters, if nothing is left of it.
    pub(super) fn search_step_done(&mut self, blob: &ContentHash) -> Vec<oneshot::Sender<()>> {
        if self.searching(blob) {
            Vec::new()
        } else {
            self.waiting.remove(blob).unwrap_or_default()
        }
    }
}

/// A Kademlia lookup of a blob's directory nodes: why, and of which of its two keys
/// (`wasmesh_protocol::holders::directory_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lookup {
    pub(super) purpose: Purpose,
    pub(super) blob: ContentHash,
    /// The index of the key looked up.
    pub(super) key: usize,
}

/// Why a lookup was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// To announce this node as a holder of the blob.
    Announce,
    /// To find holders of the blob.
    Find,
}
