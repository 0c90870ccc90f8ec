//! Proofs of possession: asking a peer for one chunk group of a blob, chosen at random, and
//! checking it against the blob's hash (the verified form of `data::blobs`). A peer that claims
//! to hold a blob, in its status or in a directory's holder record, is a claim only; one that
//! served a random group that verifies has shown it holds the blob (a liar would have to hold
//! every group to answer every challenge).
//!
//! The group's bytes are checked and dropped; nothing is stored.

use std::sync::Arc;

use bao_tree::io::fsm::{ResponseDecoder, ResponseDecoderNext};
use iroh_io::TokioStreamReader;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{BLOB_ALPN, BlobRequest};

use super::blob_fetch::{FetchError, ask_for_range, decode_error};
use super::blobs::transfer_deadline;
use super::endpoint::{Connections, PeerAddr};
use crate::blob_tree;

/// Asks `peer` for chunk group `group` of the blob `hash` of `size` bytes and checks it.
pub(crate) async fn prove(
    connections: &Arc<Connections>,
    peer: PeerAddr,
    hash: ContentHash,
    size: u64,
    group: u64,
) -> Result<(), FetchError> {
    let piece = group..group + 1;
    let deadline = transfer_deadline(blob_tree::bytes_of(&piece, size));
    let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
    let asking = async {
        let connection = connections.connect(peer, BLOB_ALPN).await?;
        let request = BlobRequest {
            hash,
            first: group,
            groups: 1,
            zstd: false,
        };
        let (recv, compressed) = ask_for_range(&connection, &request, size).await?;
        if compressed {
            return Err(protocol(&"a compressed range was not asked for"));
        }
        let mut decoder = ResponseDecoder::new(
            blob_tree::root(&hash),
            blob_tree::chunks_of(&piece),
            blob_tree::tree(size),
            TokioStreamReader::new(recv),
        );
        loop {
            decoder = match decoder.next().await {
                ResponseDecoderNext::Done(_) => return Ok(()),
                ResponseDecoderNext::More((next, item)) => {
                    item.map_err(decode_error)?;
                    next
                }
            };
        }
    };
    tokio::time::timeout_at(deadline, asking)
        .await
        .unwrap_or(Err(FetchError::Stalled))
}
