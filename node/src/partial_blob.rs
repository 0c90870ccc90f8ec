//! A blob being fetched, in ranges, from several providers at once and over several attempts.
//!
//! It owns the data file (full size from the start; each verified chunk group is written where
//! it belongs), the tree's hash pairs received so far (in memory, saved beside the file when an
//! attempt ends unfinished), and which groups are verified. It lives under `blobs/partial/`,
//! never at a blob's path: only [`PartialBlob::finish`], once every group is verified, moves the
//! file into the store, so nothing unverified is ever served. Opened again, it checks what is on
//! disk against the saved pairs and the blob's hash: only groups that still verify count as
//! had, whatever happened to the files in between.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::{OutboardMut, valid_ranges};
use bao_tree::{ChunkRanges, TreeNode};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{BLOB_GROUP_CHUNK_LOG, BLOB_GROUP_SIZE};

use crate::blob_tree;
use crate::fs_util::{sync_dir, write_atomic};

/// Where a partial blob and its store entry live.
#[derive(Debug, Clone)]
pub struct PartialPaths {
    /// The data being received.
    pub data: PathBuf,
    /// The hash pairs received so far, saved when an attempt ends unfinished.
    pub pairs: PathBuf,
    /// The blob's place in the store.
    pub blob: PathBuf,
    /// The blob's outboard in the store.
    pub outboard: PathBuf,
}

/// A blob being received; see the module docs.
#[derive(Debug)]
pub struct PartialBlob {
    hash: ContentHash,
    size: u64,
    paths: PartialPaths,
    data: File,
    pairs: PreOrderMemOutboard,
    verified: Vec<bool>,
    /// Bytes written since the kernel was last asked to start writing them back.
    unflushed: u64,
    finished: bool,
}

/// Every this many bytes written, the kernel is asked to start writing them back (without
/// waiting), so that the fsync at the end finds little left to do.
const WRITEBACK_STEP: u64 = 2 << 20;

impl PartialBlob {
    /// Opens (or starts) the partial blob `hash` of `size` bytes, and finds the groups that
    /// verify. Blocking: on a resumed blob this hashes what is on disk.
    pub fn open(paths: PartialPaths, hash: ContentHash, size: u64) -> io::Result<Self> {
        let tree = blob_tree::tree(size);
        let outboard_size = usize::try_from(tree.outboard_size())
            .map_err(|_| io::Error::other("the blob is too large"))?;
        let saved = match fs::read(&paths.pairs) {
            Ok(pairs) if pairs.len() == outboard_size => Some(pairs),
            _ => None,
        };
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&paths.data)?;
        if data.metadata()?.len() != size {
            data.set_len(size)?;
        }
        let resumed = saved.is_some();
        let pairs = PreOrderMemOutboard {
            root: blob_tree::root(&hash),
            tree,
            data: saved.unwrap_or_else(|| vec![0; outboard_size]),
        };
        let mut verified = vec![false; blob_tree::groups(size) as usize];
        if resumed {
            let all = ChunkRanges::from(bao_tree::ChunkNum(0)..tree.chunks());
            for range in valid_ranges(&pairs, &data, &all) {
                let range = range?;
                mark_groups(&mut verified, range.start.0, range.end.0, tree.chunks().0);
            }
        }
        Ok(Self {
            hash,
            size,
            paths,
            data,
            pairs,
            verified,
            unflushed: 0,
            finished: false,
        })
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether group `group` is verified and on disk.
    pub fn has_group(&self, group: u64) -> bool {
        self.verified.get(group as usize).copied().unwrap_or(false)
    }

    /// Bytes already verified (what a resumed fetch need not fetch again).
    pub fn verified_bytes(&self) -> u64 {
        (0..self.verified.len() as u64)
            .filter(|&g| self.has_group(g))
            .map(|g| blob_tree::bytes_of(&(g..g + 1), self.size))
            .sum()
    }

    /// Writes verified data at `offset` (a group boundary), and marks its groups verified.
    pub fn write_verified(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.data.write_all_at(bytes, offset)?;
        self.unflushed += bytes.len() as u64;
        if self.unflushed >= WRITEBACK_STEP {
            start_writeback(&self.data);
            self.unflushed = 0;
        }
        let first = offset / BLOB_GROUP_SIZE;
        let end = (offset + bytes.len() as u64).div_ceil(BLOB_GROUP_SIZE);
        for group in first..end {
            if let Some(slot) = self.verified.get_mut(group as usize) {
                *slot = true;
            }
        }
        Ok(())
    }

    /// Keeps a verified pair of child hashes of `node`.
    pub fn save_pair(&mut self, node: TreeNode, pair: &(blake3::Hash, blake3::Hash)) {
        // Saving into memory cannot fail.
        let _ = self.pairs.save(node, pair);
    }

    /// Whether every group is verified.
    pub fn is_complete(&self) -> bool {
        self.verified.iter().all(|&v| v)
    }

    /// Fsyncs the data, stores the outboard, and moves the blob into place. Refuses a blob
    /// with groups still missing. Blocking.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.is_complete() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} of {} bytes verified", self.verified_bytes(), self.size),
            ));
        }
        self.data.sync_all()?;
        write_atomic(&self.paths.outboard, &self.pairs.data)?;
        fs::rename(&self.paths.data, &self.paths.blob)?;
        if let Some(dir) = self.paths.blob.parent() {
            sync_dir(dir)?;
        }
        self.finished = true;
        let _ = fs::remove_file(&self.paths.pairs);
        Ok(())
    }

    /// Saves the pairs received so far beside the data, for the next attempt.
    fn suspend(&self) -> io::Result<()> {
        self.data.sync_data()?;
        write_atomic(&self.paths.pairs, &self.pairs.data)
    }
}

impl Drop for PartialBlob {
    fn drop(&mut self) {
        if !self.finished
            && let Err(error) = self.suspend()
        {
            tracing::debug!(hash = %self.hash.short(), %error, "could not save a partial blob");
        }
    }
}

/// Asks the kernel to start writing `file`'s dirty pages back, without waiting for it.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is open for the duration of the call, which only reads its arguments. A
    // failure only means the final fsync has more to do.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

/// Marks the groups wholly inside chunks `start..end` (the last group may be short).
fn mark_groups(verified: &mut [bool], start: u64, end: u64, total_chunks: u64) {
    let per_group = 1u64 << BLOB_GROUP_CHUNK_LOG;
    for (group, slot) in verified.iter_mut().enumerate() {
        let first = group as u64 * per_group;
        let last = (first + per_group).min(total_chunks);
        if first >= start && last <= end {
            *slot = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &std::path::Path) -> PartialPaths {
        PartialPaths {
            data: dir.join("partial"),
            pairs: dir.join("partial.obao"),
            blob: dir.join("blob"),
            outboard: dir.join("blob.obao"),
        }
    }

    fn blob() -> Vec<u8> {
        (0..5 * BLOB_GROUP_SIZE as u32 + 100)
            .map(|i| (i * 7 % 253) as u8)
            .collect()
    }

    /// Writes groups `groups` of `data` as a fetch would (pairs from the full outboard).
    fn receive(partial: &mut PartialBlob, data: &[u8], groups: std::ops::Range<u64>) {
        let outboard = blob_tree::outboard_of(data);
        let ranges = blob_tree::chunks_of(&groups);
        let mut encoded = Vec::new();
        bao_tree::io::sync::encode_ranges_validated(data, &outboard, &ranges, &mut encoded)
            .unwrap();
        let decoder = bao_tree::io::sync::DecodeResponseIter::new(
            outboard.root,
            outboard.tree,
            std::io::Cursor::new(encoded),
            &ranges,
        );
        for item in decoder {
            match item.unwrap() {
                bao_tree::io::BaoContentItem::Parent(parent) => {
                    partial.save_pair(parent.node, &parent.pair)
                }
                bao_tree::io::BaoContentItem::Leaf(leaf) => {
                    partial.write_verified(leaf.offset, &leaf.data).unwrap()
                }
            }
        }
    }

    #[test]
    fn a_reopened_blob_keeps_only_the_groups_that_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let data = blob();
        let hash = ContentHash::of(&data);
        let mut partial = PartialBlob::open(paths(dir.path()), hash, data.len() as u64).unwrap();
        receive(&mut partial, &data, 0..3);
        assert_eq!(partial.verified_bytes(), 3 * BLOB_GROUP_SIZE);
        drop(partial);

        // Nothing changed on disk: the three groups are still had.
        let partial = PartialBlob::open(paths(dir.path()), hash, data.len() as u64).unwrap();
        assert!((0..3).all(|g| partial.has_group(g)) && !partial.has_group(3));
        drop(partial);

        // A byte of group 1 changes on disk: only groups 0 and 2 are still had.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("partial"))
            .unwrap();
        file.write_all_at(b"x", BLOB_GROUP_SIZE + 5).unwrap();
        let mut partial = PartialBlob::open(paths(dir.path()), hash, data.len() as u64).unwrap();
        assert!(partial.has_group(0) && !partial.has_group(1) && partial.has_group(2));

        receive(&mut partial, &data, 1..2);
        receive(&mut partial, &data, 3..6);
        assert!(partial.is_complete());
        partial.finish().unwrap();
        assert_eq!(fs::read(dir.path().join("blob")).unwrap(), data);
        assert_eq!(
            fs::read(dir.path().join("blob.obao")).unwrap(),
            blob_tree::outboard_of(&data).data
        );
        assert!(!dir.path().join("partial").exists() && !dir.path().join("partial.obao").exists());
    }

    #[test]
    fn an_incomplete_blob_is_not_moved_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let data = blob();
        let hash = ContentHash::of(&data);
        let mut partial = PartialBlob::open(paths(dir.path()), hash, data.len() as u64).unwrap();
        receive(&mut partial, &data, 0..5);
        assert!(partial.finish().is_err());
        assert!(!dir.path().join("blob").exists());
    }
}
