//! The BLAKE3 tree of a blob, as every node cuts it: chunk groups of
//! [`BLOB_GROUP_SIZE`](wasmesh_protocol::wire::BLOB_GROUP_SIZE) bytes, whose root is the blob's
//! content hash. Owns the tree's geometry, ranges of groups, and outboards (the tree's inner
//! hash pairs, 64 bytes per group, stored next to each blob) that let a node serve any range in
//! verified form.

use std::ops::Range;

use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{BLOB_GROUP_CHUNK_LOG, BLOB_GROUP_SIZE};

/// The tree of a blob of `size` bytes.
pub(crate) fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BlockSize::from_chunk_log(BLOB_GROUP_CHUNK_LOG))
}

/// The root hash in bao-tree's type.
pub(crate) fn root(hash: &ContentHash) -> blake3::Hash {
    blake3::Hash::from_bytes(hash.0)
}

/// Chunk groups of a blob of `size` bytes (at least one: an empty blob has one empty group).
pub(crate) fn groups(size: u64) -> u64 {
    size.div_ceil(BLOB_GROUP_SIZE).max(1)
}

/// Bytes of the groups `groups` of a blob of `size` bytes.
pub(crate) fn bytes_of(groups: &Range<u64>, size: u64) -> u64 {
    let end = (groups.end * BLOB_GROUP_SIZE).min(size);
    end.saturating_sub(groups.start * BLOB_GROUP_SIZE)
}

/// The most bytes the verified form of the groups `groups` takes: their data, a pair of 32-byte
/// hashes for each parent among them (one fewer than the groups), and one for each level of the
/// tree above them (64 at most).
pub(crate) fn encoded_len_bound(groups: &Range<u64>, size: u64) -> u64 {
    const PAIR: u64 = 64;
    bytes_of(groups, size) + PAIR * (groups.end.saturating_sub(groups.start) + 64)
}

/// The chunk ranges that cover the groups `groups`.
pub(crate) fn chunks_of(groups: &Range<u64>) -> ChunkRanges {
    let per_group = 1u64 << BLOB_GROUP_CHUNK_LOG;
    ChunkRanges::from(ChunkNum(groups.start * per_group)..ChunkNum(groups.end * per_group))
}

/// The tree's inner hashes for `data`, in pre-order (the `.obao` file's content).
pub(crate) fn outboard_of(data: &[u8]) -> PreOrderMemOutboard {
    PreOrderMemOutboard::create(data, BlockSize::from_chunk_log(BLOB_GROUP_CHUNK_LOG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_content_hash() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let outboard = outboard_of(&data);
        assert_eq!(outboard.root, root(&ContentHash::of(&data)));
        assert_eq!(outboard.tree, tree(data.len() as u64));
    }

    #[test]
    fn group_arithmetic() {
        assert_eq!(groups(0), 1);
        assert_eq!(groups(BLOB_GROUP_SIZE), 1);
        assert_eq!(groups(BLOB_GROUP_SIZE + 1), 2);
        assert_eq!(bytes_of(&(1..5), BLOB_GROUP_SIZE + 10), 10);
        assert_eq!(bytes_of(&(0..2), 3 * BLOB_GROUP_SIZE), 2 * BLOB_GROUP_SIZE);
    }
}
