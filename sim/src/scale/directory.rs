//! Holder directories at scale, kept by the core's own `Directory` and driven by its own
//! `HolderSearch`. A blob's directory nodes, for each of its two keys, are the nodes whose
//! Kademlia key is closest to it (what a converged closest-peer lookup finds: the lookup is
//! libp2p's, so the model takes its result, and counts its cost with [`crate::kademlia`]).
//!
//! - Holders announce a ready blob when their `HolderSearch` says it is due, with a holder
//!   record signed by their key, to the first `DIRECTORY_REPLICAS` directory nodes of each
//!   key; each takes it with `Directory::take_announcement`, which keeps it only if the node is
//!   a directory node of the blob (`is_directory_node`, on the mesh's true order).
//! - An entry that knows no holder asks the first `DIRECTORIES_ASKED` directory nodes of each
//!   key when its `HolderSearch` says a lookup is due; their `Directory::find` answers go into
//!   its peer table through `NodeState::take_holders`.

use std::collections::BTreeMap;

use libp2p::PeerId;
use libp2p::kad::KBucketKey;
use wasmesh_node::core::directory::{Directory, is_directory_node};
use wasmesh_node::core::holder_search::{DIRECTORIES_ASKED, DIRECTORY_REPLICAS, HOLDERS_WANTED};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::holders::{Holder, HolderAnswer, HolderRequest, directory_keys};

use super::mesh::{Mesh, NodeId};

/// The wall clock of the records the model's holders sign, ms.
const WALL_MS: u64 = 1_800_000_000_000;

/// How far down each key's order the model looks for directory nodes.
const RANKED: usize = 32;

/// The directories the mesh's nodes keep, for one blob.
pub(crate) struct Directories {
    blob: ContentHash,
    /// For each of the blob's keys, the nodes nearest to it, nearest first.
    nearest: Vec<Vec<NodeId>>,
    books: BTreeMap<NodeId, Directory>,
    /// Holders that announced, and whose announcements some directory node kept.
    pub(crate) announced: usize,
    /// Announcements (or parts) a directory node refused, by reason.
    pub(crate) refused: BTreeMap<&'static str, u64>,
    /// Messages and bytes of announcements, questions and answers.
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

impl Directories {
    /// The directory nodes of `blob` in `mesh`, with empty directories.
    pub(crate) fn new(mesh: &Mesh, blob: ContentHash) -> Self {
        let nearest = directory_keys(&blob)
            .into_iter()
            .map(|key| nearest_to(mesh, key))
            .collect();
        Self {
            blob,
            nearest,
            books: BTreeMap::new(),
            announced: 0,
            refused: BTreeMap::new(),
            messages: 0,
            bytes: 0,
        }
    }

    /// Whether `node` is a directory node of the blob, for either key, on the true order.
    fn keeps(&self, node: NodeId) -> bool {
        self.nearest.iter().any(|ranked| {
            ranked
                .iter()
                .position(|n| *n == node)
                .is_some_and(is_directory_node)
        })
    }

    /// `holder` announces the blob, if its `HolderSearch` says it is due.
    pub(crate) fn announce(&mut self, mesh: &mut Mesh, holder: NodeId) {
        let now = mesh.instant(mesh.now_us);
        let node = &mut mesh.nodes[holder as usize];
        let ready = node.ready.clone();
        let due = node.search.announcements_due(&ready, now);
        if !due.contains(&self.blob) {
            return;
        }
        node.search.lookup_done();
        let record = Holder {
            node: node.keys.public(),
            quic_addr: node.quic_addr.clone(),
            p2p_addrs: vec![node.addr.to_string()],
            coordinate: node.coordinate(),
            issued_ms: WALL_MS + mesh.now_us / 1000,
        }
        .sign(&node.keys);
        let from = node.peer_id;
        let mut kept = false;
        let directories: Vec<NodeId> = self
            .nearest
            .iter()
            .flat_map(|ranked| ranked.iter().take(DIRECTORY_REPLICAS).copied())
            .collect();
        for directory in directories {
            let request = HolderRequest::Announce {
                holder: record.clone(),
                blobs: vec![self.blob],
            };
            self.count(request.encode().len());
            let keeps = self.keeps(directory);
            let refusals = self.books.entry(directory).or_default().take_announcement(
                &from,
                record.clone(),
                &[self.blob],
                |_| keeps,
                now,
                WALL_MS + mesh.now_us / 1000,
            );
            kept |= refusals.is_empty();
            for refusal in refusals {
                *self.refused.entry(refusal.reason().as_str()).or_default() += 1;
            }
        }
        self.announced += usize::from(kept);
    }

    /// `entry` wants holders of the blob: if its `HolderSearch` starts a lookup, the blob's
    /// directory nodes answer and the entry's core takes the holders they name. How many it
    /// did not know.
    pub(crate) fn find(&mut self, mesh: &mut Mesh, entry: NodeId) -> u64 {
        let now = mesh.instant(mesh.now_us);
        let node = &mut mesh.nodes[entry as usize];
        if !node.search.want(self.blob, now) {
            return 0;
        }
        node.search.lookup_done();
        let near = node.coordinate();
        let asked: Vec<NodeId> = self
            .nearest
            .iter()
            .flat_map(|ranked| ranked.iter().take(DIRECTORIES_ASKED).copied())
            .collect();
        let mut found = 0;
        for directory in asked {
            let request = HolderRequest::Find {
                blob: self.blob,
                near,
                max: HOLDERS_WANTED,
            };
            self.count(request.encode().len());
            let holders = self.books.get(&directory).map_or_else(Vec::new, |book| {
                book.find(&self.blob, &near, usize::from(HOLDERS_WANTED), now)
            });
            let answer = HolderAnswer { holders };
            self.count(answer.encode().len());
            let verified: Vec<_> = answer
                .holders
                .into_iter()
                .filter(|record| record.verify().is_ok())
                .collect();
            found += mesh.nodes[entry as usize]
                .state
                .take_holders(self.blob, &verified, now);
        }
        found
    }

    fn count(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }
}

/// The first [`RANKED`] nodes of `mesh` by Kademlia distance of their peer id to `key`.
fn nearest_to(mesh: &Mesh, key: Vec<u8>) -> Vec<NodeId> {
    let key = KBucketKey::new(key);
    let mut ranked: Vec<(libp2p::kad::KBucketDistance, NodeId)> = mesh
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let id: KBucketKey<PeerId> = KBucketKey::from(node.peer_id);
            (id.distance(&key), i as NodeId)
        })
        .collect();
    ranked.sort();
    ranked.into_iter().take(RANKED).map(|(_, n)| n).collect()
}
