//! The holder directory this node keeps as a directory node (see `wasmesh_protocol::holders`):
//! the signed records of holders that announced blobs to it, and which blobs each holds. It
//! answers lookups with the holders nearest to the asker.
//!
//! Bounded: at most [`MAX_DIRECTORY_HOLDERS`] holders, [`MAX_DIRECTORY_BLOBS`] blobs,
//! [`MAX_HOLDERS_PER_BLOB`] holders per blob and [`MAX_DIRECTORY_ENTRIES`] (blob, holder) pairs
//! in all; what does not fit is refused (a holder that keeps its place refreshes it), as
//! libp2p-kad's provider store does. An entry lapses [`HOLDER_TTL`] after its last
//! announcement.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// Why (part of) an announcement was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryRefusal {
    /// The directory holds as many holders as it may.
    HoldersFull,
    /// Some blobs were left out: the directory or their lists are full.
    BlobsFull,
}

/// The holder directory (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Directory {
    records: HashMap<PublicKey, SignedHolder>,
    /// Per blob, its holders and when each last announced it.
    blobs: HashMap<ContentHash, HashMap<PublicKey, Instant>>,
    /// (blob, holder) pairs in `blobs`.
    entries: usize,
}

impl Directory {
    /// Takes an announcement of `blobs` by the holder of `record` (verified by the caller).
    pub fn announce(
        &mut self,
        record: SignedHolder,
        blobs: &[ContentHash],
        now: Instant,
    ) -> Result<(), DirectoryRefusal> {
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
        let mut left_out = false;
        for blob in blobs {
            if !self.blobs.contains_key(blob) && self.blobs.len() >= MAX_DIRECTORY_BLOBS {
                left_out = true;
                continue;
            }
            let holders = self.blobs.entry(*blob).or_default();
            let full =
                holders.len() >= MAX_HOLDERS_PER_BLOB || self.entries >= MAX_DIRECTORY_ENTRIES;
            if !holders.contains_key(&node) && full {
                left_out = true;
                continue;
            }
            if holders.insert(node, now).is_none() {
                self.entries += 1;
            }
        }
        match left_out {
            true => Err(DirectoryRefusal::BlobsFull),
            false => Ok(()),
        }
    }

    /// The holders of `blob` whose announcement stands at `now`, the `max` nearest to `near`
    /// first (at most [`MAX_FOUND_HOLDERS`]).
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
                .announce(record(seed, x, 1), &[blob], start)
                .unwrap();
        }
        let near = Coordinate::default();
        let found = directory.find(&blob, &near, 2, start);
        let xs: Vec<f64> = found.iter().map(|r| r.holder.coordinate.vec[0]).collect();
        assert_eq!(xs, [5.0, 20.0]);
        // Holder 2 announces again later; the others lapse.
        let later = start + HOLDER_TTL - Duration::from_secs(1);
        directory
            .announce(record(2, 5.0, 2), &[blob], later)
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
        directory.announce(record(1, 1.0, 5), &[blob], now).unwrap();
        directory.announce(record(1, 9.0, 4), &[blob], now).unwrap();
        let found = directory.find(&blob, &Coordinate::default(), 1, now);
        assert_eq!(found[0].holder.coordinate.vec[0], 1.0);
        for n in 2..=MAX_HOLDERS_PER_BLOB as u16 {
            directory
                .announce(record_of(n, 1.0, 1), &[blob], now)
                .unwrap();
        }
        assert_eq!(
            directory.announce(record_of(5000, 1.0, 1), &[blob], now),
            Err(DirectoryRefusal::BlobsFull)
        );
        // One already listed refreshes its place.
        assert_eq!(directory.announce(record(1, 1.0, 6), &[blob], now), Ok(()));
    }
}
