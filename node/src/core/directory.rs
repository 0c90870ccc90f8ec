//! The holder directory this node keeps as a directory node (see `wasmesh_protocol::holders`):
//! the signed records of holders that announced blobs to it, and which blobs each holds. It
//! answers lookups with the holders nearest to the asker.
//!
//! Bounded: at most [`MAX_DIRECTORY_HOLDERS`] holders, [`MAX_DIRECTORY_BLOBS`] blobs,
//! [`MAX_HOLDERS_PER_BLOB`] holders per blob, [`MAX_BLOBS_PER_HOLDER`] blobs per holder and
//! [`MAX_DIRECTORY_ENTRIES`] (blob, holder) pairs in all; what does not fit is refused (a holder
//! that keeps its place refreshes it), as libp2p-kad's provider store does. An entry lapses
//! [`HOLDER_TTL`] after its last announcement.
//!
//! Not captured: one key cannot fill the directory (its quota); a record older than
//! [`MAX_RECORD_AGE`] (or dated in the future) is refused, so a captured announcement cannot be
//! replayed; announcements are kept only for blobs this node is a directory node of
//! ([`Directory::take_announcement`], [`is_directory_node`]), of either of the blob's two keys
//! (`wasmesh_protocol::holders::directory_keys`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::rejection::Rejection;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::holders::{self, MAX_FOUND_HOLDERS, SignedHolder};
use wasmesh_protocol::{ContentHash, PublicKey};

/// Most holders whose records a directory keeps.
pub const MAX_DIRECTORY_HOLDERS: usize = 4096;
/// Most blobs a directory keeps holders of.
pub const MAX_DIRECTORY_BLOBS: usize = 4096;
/// Most holders kept per blob: a lookup ranks them all by distance to the asker.
pub const MAX_HOLDERS_PER_BLOB: usize = 1024;
/// Most (blob, holder) pairs kept in all.
pub const MAX_DIRECTORY_ENTRIES: usize = 65_536;
/// How long an announcement stands (three announcement periods).
pub const HOLDER_TTL: Duration = Duration::from_secs(90 * 60);
/// Most blobs one holder may be listed for here.
pub const MAX_BLOBS_PER_HOLDER: usize = 256;
/// Oldest record an announcement may carry (ms): holders sign a fresh one per announcement.
pub const MAX_RECORD_AGE_MS: u64 = 10 * 60 * 1000;
/// How far in the future a record may be dated (clock skew between nodes), ms.
pub const MAX_RECORD_SKEW_MS: u64 = 60 * 1000;
/// Peers closer to a key than this node that it may still be a directory node with: its
/// table's view and the announcer's differ.
pub const DIRECTORY_SLACK: usize = 2 * crate::core::holder_search::DIRECTORY_REPLICAS;

/// Why (part of) an announcement was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryRefusal {
    /// The directory holds as many holders as it may.
    HoldersFull,
    /// Some blobs were left out: the directory or their lists are full.
    BlobsFull,
    /// Some blobs were left out: the holder is listed for its quota of blobs.
    HolderQuota,
    /// The record is too old, or dated in the future.
    Stale,
    /// The record's signature does not verify.
    BadRecord,
    /// The record is another node's: a node announces only itself.
    NotOwnRecord,
    /// Some blobs were left out: this node is no directory node of them.
    NotResponsible,
}

impl DirectoryRefusal {
    /// The rejection it is counted as.
    pub fn reason(&self) -> Rejection {
        match self {
            Self::HoldersFull => Rejection::DirectoryHoldersFull,
            Self::BlobsFull => Rejection::DirectoryBlobsFull,
            Self::HolderQuota => Rejection::DirectoryHolderQuota,
            Self::Stale => Rejection::DirectoryStaleRecord,
            Self::BadRecord => Rejection::HolderBadRecord,
            Self::NotOwnRecord => Rejection::HolderNotOwnRecord,
            Self::NotResponsible => Rejection::DirectoryNotResponsible,
        }
    }
}

/// Whether this node is a directory node of a key that `closer` known peers are closer to
/// than it is.
pub fn is_directory_node(closer: usize) -> bool {
    closer < DIRECTORY_SLACK
}

/// The holder directory (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Directory {
    records: HashMap<PublicKey, SignedHolder>,
    /// Per blob, its holders and when each last announced it.
    blobs: HashMap<ContentHash, HashMap<PublicKey, Instant>>,
    /// (blob, holder) pairs in `blobs`.
    entries: usize,
    /// Per holder, the blobs it is listed for.
    per_holder: HashMap<PublicKey, usize>,
}

impl Directory {
    /// Takes an announcement of `blobs` by the holder of `record` (verified by the caller) at
    /// `now`, `wall_ms` on the wall clock (ms since the Unix epoch).
    pub fn announce(
        &mut self,
        record: SignedHolder,
        blobs: &[ContentHash],
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), DirectoryRefusal> {
        let issued = record.holder.issued_ms;
        if issued.saturating_add(MAX_RECORD_AGE_MS) < wall_ms
            || issued > wall_ms.saturating_add(MAX_RECORD_SKEW_MS)
        {
            return Err(DirectoryRefusal::Stale);
        }
        let node = record.holder.node;
        match self.records.get(&node) {
            Some(held) if held.holder.issued_ms > record.holder.issued_ms => {}
            Some(_) => {
                self.records.insert(node, record);
            }
            None if self.records.len() >= MAX_DIRECTORY_HOLDERS => {
                return Err(DirectoryRefusal::HoldersFull);
            }
            None => {
                self.records.insert(node, record);
            }
        }
        let mut left_out = None;
        for blob in blobs {
            let listed = self.blobs.get(blob).is_some_and(|h| h.contains_key(&node));
            if listed {
                self.blobs.entry(*blob).or_default().insert(node, now);
                continue;
            }
            if self.per_holder.get(&node).copied().unwrap_or(0) >= MAX_BLOBS_PER_HOLDER {
                left_out = Some(DirectoryRefusal::HolderQuota);
                continue;
            }
            if !self.blobs.contains_key(blob) && self.blobs.len() >= MAX_DIRECTORY_BLOBS {
                left_out.get_or_insert(DirectoryRefusal::BlobsFull);
                continue;
            }
            let holders = self.blobs.entry(*blob).or_default();
            if holders.len() >= MAX_HOLDERS_PER_BLOB || self.entries >= MAX_DIRECTORY_ENTRIES {
                left_out.get_or_insert(DirectoryRefusal::BlobsFull);
                continue;
            }
            holders.insert(node, now);
            self.entries += 1;
            *self.per_holder.entry(node).or_default() += 1;
        }
        match left_out {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// The holders of `blob` whose announcement stands at `now`, the `max` nearest to `near`
    /// first (at most [`MAX_FOUND_HOLDERS`]).
    /// Takes an announcement that `from` sent: its record must verify and be its own; of its
    /// blobs, only those this node `keeps` (is a directory node of) are kept, within the
    /// quotas. Each reason some of it was not kept, to count.
    pub fn take_announcement(
        &mut self,
        from: &libp2p::PeerId,
        record: SignedHolder,
        blobs: &[ContentHash],
        mut keeps: impl FnMut(&ContentHash) -> bool,
        now: Instant,
        wall_ms: u64,
    ) -> Vec<DirectoryRefusal> {
        if record.verify().is_err() {
            return vec![DirectoryRefusal::BadRecord];
        }
        if wasmesh_keys::identity::peer_id(&record.holder.node) != Some(*from) {
            return vec![DirectoryRefusal::NotOwnRecord];
        }
        // A lookup would never come here for the others.
        let ours: Vec<ContentHash> = blobs.iter().copied().filter(|b| keeps(b)).collect();
        let mut refused = Vec::new();
        if ours.len() < blobs.len() {
            refused.push(DirectoryRefusal::NotResponsible);
        }
        if let Err(refusal) = self.announce(record, &ours, now, wall_ms) {
            refused.push(refusal);
        }
        refused
    }

    pub fn find(
        &self,
        blob: &ContentHash,
        near: &Coordinate,
        max: usize,
        now: Instant,
    ) -> Vec<SignedHolder> {
        let Some(holders) = self.blobs.get(blob) else {
            return Vec::new();
        };
        let standing = holders
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) < HOLDER_TTL)
            .filter_map(|(node, _)| self.records.get(node))
            .map(|record| (&record.holder.coordinate, record));
        holders::nearest(near, standing, max.min(MAX_FOUND_HOLDERS))
            .into_iter()
            .cloned()
            .collect()
    }

    /// Drops the announcements that lapsed by `now`, and the records no blob names any more.
    pub fn expire(&mut self, now: Instant) {
        for holders in self.blobs.values_mut() {
            holders.retain(|_, at| now.saturating_duration_since(*at) < HOLDER_TTL);
        }
        self.blobs.retain(|_, holders| !holders.is_empty());
        self.entries = self.blobs.values().map(HashMap::len).sum();
        self.per_holder.clear();
        for holder in self.blobs.values().flat_map(HashMap::keys) {
            *self.per_holder.entry(*holder).or_default() += 1;
        }
        let named: std::collections::HashSet<PublicKey> = self
            .blobs
            .values()
            .flat_map(|holders| holders.keys().copied())
            .collect();
        self.records.retain(|node, _| named.contains(node));
    }

    /// Holders whose records are kept.
    pub fn holders(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use wasmesh_protocol::Keypair;
    use wasmesh_protocol::holders::Holder;

    use super::*;

    /// The wall clock of the tests (ms since the Unix epoch).
    const WALL: u64 = 1_800_000_000_000;

    fn record(seed: u8, x: f64, issued_ms: u64) -> SignedHolder {
        record_of(u16::from(seed), x, issued_ms)
    }

    fn record_of(n: u16, x: f64, issued_ms: u64) -> SignedHolder {
        let mut seed = [0; 32];
        seed[..2].copy_from_slice(&n.to_le_bytes());
        let keys = Keypair::from_seed(seed);
        let mut coordinate = Coordinate::default();
        coordinate.vec[0] = x;
        Holder {
            node: keys.public(),
            quic_addr: "127.0.0.1:4433".into(),
            p2p_addrs: Vec::new(),
            coordinate,
            issued_ms,
        }
        .sign(&keys)
    }

    #[test]
    fn a_lookup_gets_the_standing_holders_nearest_to_the_asker() {
        let blob = ContentHash::of(b"blob");
        let mut directory = Directory::default();
        let start = Instant::now();
        for (seed, x) in [(1, 50.0), (2, 5.0), (3, 20.0)] {
            directory
                .announce(record(seed, x, WALL), &[blob], start, WALL)
                .unwrap();
        }
        let near = Coordinate::default();
        let found = directory.find(&blob, &near, 2, start);
        let xs: Vec<f64> = found.iter().map(|r| r.holder.coordinate.vec[0]).collect();
        assert_eq!(xs, [5.0, 20.0]);
        // Holder 2 announces again later; the others lapse.
        let later = start + HOLDER_TTL - Duration::from_secs(1);
        directory
            .announce(record(2, 5.0, WALL + 1), &[blob], later, WALL)
            .unwrap();
        let found = directory.find(&blob, &near, 8, start + HOLDER_TTL);
        assert_eq!(found.len(), 1);
        directory.expire(start + HOLDER_TTL);
        assert_eq!(directory.holders(), 1);
    }

    #[test]
    fn an_older_record_does_not_replace_a_newer_one_and_full_lists_refuse_newcomers() {
        let blob = ContentHash::of(b"blob");
        let mut directory = Directory::default();
        let now = Instant::now();
        directory
            .announce(record(1, 1.0, WALL + 5), &[blob], now, WALL)
            .unwrap();
        directory
            .announce(record(1, 9.0, WALL + 4), &[blob], now, WALL)
            .unwrap();
        let found = directory.find(&blob, &Coordinate::default(), 1, now);
        assert_eq!(found[0].holder.coordinate.vec[0], 1.0);
        for n in 2..=MAX_HOLDERS_PER_BLOB as u16 {
            directory
                .announce(record_of(n, 1.0, WALL), &[blob], now, WALL)
                .unwrap();
        }
        assert_eq!(
            directory.announce(record_of(5000, 1.0, WALL), &[blob], now, WALL),
            Err(DirectoryRefusal::BlobsFull)
        );
        // One already listed refreshes its place.
        assert_eq!(
            directory.announce(record(1, 1.0, WALL + 6), &[blob], now, WALL),
            Ok(())
        );
    }

    /// One key gets at most its quota of blobs, whatever it announces, and an honest holder
    /// still finds room; old or future-dated records are refused (no replays).
    #[test]
    fn one_key_cannot_fill_the_directory_nor_replay_old_records() {
        let mut directory = Directory::default();
        let now = Instant::now();
        let flood = record(9, 1.0, WALL);
        for batch in 0..16u32 {
            let blobs: Vec<ContentHash> = (0..256u32)
                .map(|i| ContentHash::of(&(batch * 256 + i).to_le_bytes()))
                .collect();
            let taken = directory.announce(flood.clone(), &blobs, now, WALL);
            if batch > 0 {
                assert_eq!(taken, Err(DirectoryRefusal::HolderQuota));
            }
        }
        assert_eq!(
            directory.per_holder[&flood.holder.node],
            MAX_BLOBS_PER_HOLDER
        );
        let real = ContentHash::of(b"a real module");
        directory
            .announce(record(2, 1.0, WALL), &[real], now, WALL)
            .unwrap();
        assert_eq!(
            directory.find(&real, &Coordinate::default(), 8, now).len(),
            1
        );
        let old = record(3, 1.0, WALL - MAX_RECORD_AGE_MS - 1);
        assert_eq!(
            directory.announce(old, &[real], now, WALL),
            Err(DirectoryRefusal::Stale)
        );
        let future = record(3, 1.0, WALL + MAX_RECORD_SKEW_MS + 1);
        assert_eq!(
            directory.announce(future, &[real], now, WALL),
            Err(DirectoryRefusal::Stale)
        );
        assert!(is_directory_node(DIRECTORY_SLACK - 1));
        assert!(!is_directory_node(DIRECTORY_SLACK));
    }
}
