//! One lane of a fetch: a stream to one provider that takes the next piece, asks for it, and
//! checks every hash pair and chunk group against the blob's hash as it arrives.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bao_tree::io::BaoContentItem;
use bao_tree::io::fsm::{ResponseDecoder, ResponseDecoderNext};
use bytes::Bytes;
use iroh_io::{AsyncStreamReader, TokioStreamReader};
use tokio::sync::mpsc;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::wire::{BLOB_ALPN, BLOB_GROUP_SIZE, BlobHeader, BlobRequest};

use super::error::{FetchError, decode_error};
use super::pieces::{FetchProgress, Pieces};
use crate::blob_tree;
use crate::data::blobs::transfer_deadline;
use crate::data::endpoint::{Connections, PeerAddr};
use crate::data::framing::write_framed;
use crate::data::range_compression::{decompress, max_frame_len, worth_asking};
use crate::lock::lock;

/// Pieces asked of one provider at once, at most: [`NEAR_LANES`], and one more for every
/// [`RTT_PER_LANE`] of its round trip, so that a far provider has enough requests in flight to
/// cover the round trip a lane waits between two pieces.
pub const LANES_PER_PROVIDER: usize = 6;
/// Lanes of a provider on the same host or LAN: two keep data moving while the previous piece
/// is verified (three measured no better on loopback).
const NEAR_LANES: usize = 2;
/// Round trip that earns a provider one more lane.
const RTT_PER_LANE: std::time::Duration = std::time::Duration::from_millis(30);
/// Verified data a lane gathers before handing it to the writer thread in one batch: one
/// wake-up of the thread per batch rather than per chunk group.
const WRITE_BATCH: usize = 256 << 10;

/// Verified data on its way to the writer thread.
pub(super) enum Verified {
    Pair(bao_tree::TreeNode, (blake3::Hash, blake3::Hash)),
    Group { offset: u64, data: Bytes },
}

/// What every lane of one fetch shares.
pub(super) struct Target<'a> {
    pub(super) hash: ContentHash,
    pub(super) size: u64,
    pub(super) writes: mpsc::Sender<Vec<Verified>>,
    pub(super) progress: &'a Mutex<FetchProgress>,
    pub(super) pieces: &'a Pieces,
}

impl Target<'_> {
    /// Lane `lane` of `provider`: fetches pieces from it until none are left or it fails;
    /// returns the verified bytes it delivered, and its failure.
    pub(super) async fn run_lane(
        &self,
        connections: &Arc<Connections>,
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
