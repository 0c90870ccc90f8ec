//! Messages between nodes, other than manifests themselves.
//!
//! ## Flows
//! - **Status** (`/wasmesh/status/2`, request-response over libp2p): every node sends its
//!   [`StatusMessage`] to each peer it is connected to, and to no one else: where its QUIC
//!   endpoint is, the key its certificate carries, its load, its coordinate, and which blobs it
//!   has ready. The ready list travels only when it changed since the last one the peer got; the
//!   rest of the time a [`ready_version`] stands for it, and a peer that lacks the list says so
//!   in its [`StatusAck`]. A status is the sender's own word on a connection authenticated by its
//!   key: it is never relayed.
//! - **Manifest gossip** (`wasmesh/manifests/2`, gossipsub): signed manifests, flooded (publishes
//!   are rare).
//! - **Holder lookup** (`/wasmesh/kad/1`, libp2p Kademlia): a node that has a blob ready announces
//!   itself as a provider of the blob's hash; a node that needs holders it is not connected to
//!   asks for the providers, then connects to a few and gets their statuses.
//! - **Sync** (`/wasmesh/sync/2`, request-response over libp2p): a node that joins late, or comes
//!   back after a partition, sends a [`SyncRequest`] and gets the manifests the peer holds, a page
//!   of at most [`SYNC_PAGE`] at a time in module-key order, asking for the next page after the
//!   last key it got while the peer says there are more.
//! - **Blob fetch** (QUIC, ALPN [`BLOB_ALPN`]): the client opens a bidirectional stream and writes
//!   a length-prefixed [`BlobRequest`] naming a blob and a range of its chunk groups; the server
//!   answers with a [`BlobHeader`] (fixed 9 bytes: status, size of the whole blob) followed by
//!   the range in BLAKE3 verified-streaming form (the bao encoding, as `bao-tree` writes it for
//!   groups of [`BLOB_GROUP_SIZE`] bytes: in pre-order, the pair of child hashes of each parent
//!   on the path to the range and within it, and the range's groups), and finishes the stream. The client checks
//!   every pair and group against the blob's hash as it arrives, so a provider that lies is
//!   caught at the first group it falsifies, and a blob can come in ranges from several
//!   providers at once. A client that sets [`BlobRequest::zstd`] may get the range as one zstd
//!   frame instead ([`BlobHeader::FoundZstd`]), when the server finds that it compresses.
//!
//! - **Reach** (QUIC, ALPN [`REACH_ALPN`]): a node behind a NAT keeps a connection to a few
//!   public nodes, which reach it through it and introduce it to other NATed nodes for hole
//!   punching (see the `reach` module).
//!
//! Every message has a stated maximum size; decoders refuse anything larger.

mod invoke;
mod reach;

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::coordinates::Coordinate;
use crate::crypto::PublicKey;
use crate::hash::ContentHash;
use crate::manifest::{MAX_SIGNED_MANIFEST_SIZE, ModuleKey, SignedManifest};

pub use self::invoke::*;
pub use self::reach::*;

/// The protocol version a node announces (libp2p identify). A peer announcing another one is
/// refused: statuses, topics and lookups changed between versions.
pub const PROTOCOL_VERSION: &str = "/wasmesh/2";
/// Gossipsub topic of signed manifests.
pub const MANIFEST_TOPIC: &str = "wasmesh/manifests/2";
/// libp2p protocol of status, sent to connected peers only.
pub const STATUS_PROTOCOL: &str = "/wasmesh/status/2";
/// libp2p Kademlia protocol, for closest-peer lookups only: which nodes are a blob's directory
/// nodes (holder records go over `/wasmesh/holders/1`, never as Kademlia records).
pub const KAD_PROTOCOL: &str = "/wasmesh/kad/1";
/// libp2p protocol of manifest sync (version 2: paged).
pub const SYNC_PROTOCOL: &str = "/wasmesh/sync/2";
/// ALPN of the blob protocol on the QUIC data plane.
/// (version 3: ranges may come compressed).
pub const BLOB_ALPN: &[u8] = b"wasmesh/blob/3";
/// ALPN of the invoke protocol on the QUIC data plane (version 3: the forwarding node's nonce,
/// receipts that bind the failure message and the reported times).
pub const INVOKE_ALPN: &[u8] = b"wasmesh/invoke/3";

/// Most blobs a status message lists.
pub const MAX_STATUS_BLOBS: usize = 4096;
/// Largest encoded status message.
pub const MAX_STATUS_SIZE: usize = 64 + 32 * MAX_STATUS_BLOBS + 1024 + 64;
/// Most manifests in one sync response a node accepts.
pub const MAX_SYNC_MANIFESTS: usize = 4096;
/// Manifests a node puts in one sync response (a page); more come on request.
pub const SYNC_PAGE: usize = 1024;
/// Most peers a sync response introduces.
pub const MAX_SYNC_PEERS: usize = 16;
/// Most addresses per introduced peer.
pub const MAX_PEER_ADDRS: usize = 4;
/// Largest encoded sync request.
pub const MAX_SYNC_REQUEST_SIZE: usize = 128 + crate::manifest::MAX_NAME_LEN + MAX_MEMBERSHIP_SIZE;
/// Largest encoded sync response.
pub const MAX_SYNC_RESPONSE_SIZE: usize = 64
    + MAX_MEMBERSHIP_SIZE
    + MAX_SYNC_MANIFESTS * MAX_SIGNED_MANIFEST_SIZE
    + MAX_SYNC_PEERS * (48 + MAX_PEER_ADDRS * 136);
/// Largest encoded blob request (without its 4-byte length prefix).
pub const MAX_BLOB_REQUEST_SIZE: usize = 64;
/// Blobs are verified in groups of 2^4 BLAKE3 chunks of 1 KiB (bao-tree's block size 4).
pub const BLOB_GROUP_CHUNK_LOG: u8 = 4;
/// Bytes of one chunk group: the unit of a range and of verification.
pub const BLOB_GROUP_SIZE: u64 = 1024 << BLOB_GROUP_CHUNK_LOG;
/// The most chunk groups one request may ask for (1 MiB).
pub const MAX_BLOB_REQUEST_GROUPS: u32 = 64;

/// What a node tells the peers it is connected to about itself.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct StatusMessage {
    /// The node's public key (its libp2p identity and its QUIC certificate key).
    pub node: PublicKey,
    /// Where its QUIC data-plane endpoint is reachable (`ip:port`).
    pub quic_addr: String,
    /// Stands for its ready set ([`ready_version`]): equal sets, equal versions.
    pub ready_version: u64,
    /// Blobs it has verified and compiled: sent when the set changed since the receiver last got
    /// it, `None` otherwise.
    pub ready: Option<Vec<ContentHash>>,
    /// Requests it is executing or queueing now.
    pub in_flight: u32,
    /// Requests it can execute at once.
    pub capacity: u32,
    /// Increases with every status the node sends; older ones are ignored.
    pub seq: u64,
    /// libp2p addresses where the node can be dialed (peer exchange), at most 8.
    pub p2p_addrs: Vec<String>,
    /// Digest of the manifests it holds ([`manifest_digest`]): a peer whose own digest differs
    /// asks it for a sync, so manifests missed during a partition arrive without reconnecting.
    pub manifests: ContentHash,
    /// Its network coordinate: peers that never pinged it estimate their round trip from it.
    pub coordinate: Coordinate,
    /// It is stopping: it takes no new requests and reports nothing ready, so peers route
    /// elsewhere at once (it still finishes what it holds).
    pub leaving: bool,
}

/// The digest of a set of signed manifests (each given by the hash of its encoding): the XOR of
/// the hashes, so it does not depend on order and equal sets give equal digests.
pub fn manifest_digest(hashes: impl IntoIterator<Item = ContentHash>) -> ContentHash {
    let mut digest = [0u8; 32];
    for hash in hashes {
        for (d, h) in digest.iter_mut().zip(hash.0) {
            *d ^= h;
        }
    }
    ContentHash(digest)
}

impl StatusMessage {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a status message of at most [`MAX_STATUS_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let status: Self = codec::decode(bytes, MAX_STATUS_SIZE)?;
        let addrs_too_long =
            status.p2p_addrs.len() > 8 || status.p2p_addrs.iter().any(|a| a.len() > 256);
        let ready_too_long = status
            .ready
            .as_ref()
            .is_some_and(|ready| ready.len() > MAX_STATUS_BLOBS);
        if ready_too_long || status.quic_addr.len() > 256 || addrs_too_long {
            return Err(DecodeError::Malformed("status lists too much".into()));
        }
        if !status.coordinate.is_valid() {
            return Err(DecodeError::Malformed(
                "status coordinate out of range".into(),
            ));
        }
        Ok(status)
    }
}

/// The version of a ready set: the first 8 bytes of its digest ([`manifest_digest`] of the
/// hashes), so equal sets give equal versions whatever their order.
pub fn ready_version(ready: &[ContentHash]) -> u64 {
    let digest = manifest_digest(ready.iter().copied());
    let mut version = [0u8; 8];
    version.copy_from_slice(&digest.0[..8]);
    u64::from_le_bytes(version)
}

/// The answer to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct StatusAck {
    /// The receiver does not have the ready set of the status's version: the next status must
    /// carry it.
    pub want_ready: bool,
}

/// Largest encoded status answer.
pub const MAX_STATUS_ACK_SIZE: usize = 8;

impl StatusAck {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes an answer of at most [`MAX_STATUS_ACK_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_STATUS_ACK_SIZE)
    }
}

/// Largest encoded membership certificate carried in sync messages.
pub const MAX_MEMBERSHIP_SIZE: usize = 1024;

/// Asks a peer for the manifests it holds. Sent by both sides when a connection opens; in a
/// private mesh it also presents the sender's membership certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct SyncRequest {
    /// Where the page starts: after this module (None: from the first).
    pub after: Option<ModuleKey>,
    /// Whether manifests are wanted; without, the answer only introduces peers (peer exchange).
    pub manifests: bool,
    /// The sender's encoded membership certificate (empty in an open mesh).
    pub membership: Vec<u8>,
}

/// The manifests a peer holds (the newest version of each module).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct SyncResponse {
    /// Signed manifests; each is verified by the receiver like a gossiped one. Empty when the
    /// requester was not admitted.
    pub manifests: Vec<SignedManifest>,
    /// The responder's encoded membership certificate (empty in an open mesh).
    pub membership: Vec<u8>,
    /// Whether more manifests follow the last one of this page (ask again, after its key).
    pub more: bool,
    /// Peers the responder is connected to, with where they can be dialed (first page only):
    /// how nodes find each other beyond their bootstrap peers. Statuses relayed by gossip never
    /// introduce a peer.
    pub peers: Vec<PeerRecord>,
}

/// A peer one node introduces to another.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PeerRecord {
    /// Its node key (its libp2p identity).
    pub node: PublicKey,
    /// libp2p addresses where it can be dialed, at most [`MAX_PEER_ADDRS`] of at most 128 bytes.
    pub addrs: Vec<String>,
}

impl SyncRequest {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a sync request of at most [`MAX_SYNC_REQUEST_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request: Self = codec::decode(bytes, MAX_SYNC_REQUEST_SIZE)?;
        if request.membership.len() > MAX_MEMBERSHIP_SIZE {
            return Err(DecodeError::Malformed(
                "membership certificate too large".into(),
            ));
        }
        Ok(request)
    }
}

impl SyncResponse {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a sync response of at most [`MAX_SYNC_RESPONSE_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let response: Self = codec::decode(bytes, MAX_SYNC_RESPONSE_SIZE)?;
        if response.manifests.len() > MAX_SYNC_MANIFESTS
            || response.membership.len() > MAX_MEMBERSHIP_SIZE
        {
            return Err(DecodeError::Malformed("too many manifests".into()));
        }
        let oversized = |p: &PeerRecord| {
            p.addrs.len() > MAX_PEER_ADDRS || p.addrs.iter().any(|a| a.len() > 128)
        };
        if response.peers.len() > MAX_SYNC_PEERS || response.peers.iter().any(oversized) {
            return Err(DecodeError::Malformed("too many peers or addresses".into()));
        }
        Ok(response)
    }
}

/// Asks for a range of one blob: `groups` chunk groups from group `first`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BlobRequest {
    /// The blob's BLAKE3 hash.
    pub hash: ContentHash,
    /// The first chunk group (of [`BLOB_GROUP_SIZE`] bytes) asked for.
    pub first: u64,
    /// How many groups, 1 to [`MAX_BLOB_REQUEST_GROUPS`]; a range past the end is cut at it.
    pub groups: u32,
    /// Whether the client takes the range compressed with zstd ([`BlobHeader::FoundZstd`]).
    pub zstd: bool,
}

impl BlobRequest {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a blob request of at most [`MAX_BLOB_REQUEST_SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_BLOB_REQUEST_SIZE)
    }
}

/// The answer to a blob request, before the blob's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobHeader {
    /// The blob follows: exactly this many bytes.
    Found {
        /// Size in bytes.
        size: u64,
    },
    /// This node does not hold the blob.
    NotFound,
    /// This node is at its transfer limit; ask another provider.
    Busy,
    /// The range asked for is empty, too long, or starts past the blob's end.
    BadRange,
    /// The blob is this many bytes; the range follows as one zstd frame, which decompresses to
    /// the range's verified form. Only sent to a client that asked for it.
    FoundZstd {
        /// Size in bytes.
        size: u64,
    },
}

impl BlobHeader {
    /// Encoded size: one status byte and a little-endian u64.
    pub const SIZE: usize = 9;

    /// The fixed 9-byte encoding.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let (status, size) = match *self {
            BlobHeader::Found { size } => (0u8, size),
            BlobHeader::NotFound => (1, 0),
            BlobHeader::Busy => (2, 0),
            BlobHeader::BadRange => (3, 0),
            BlobHeader::FoundZstd { size } => (4, size),
        };
        let mut bytes = [0u8; Self::SIZE];
        bytes[0] = status;
        bytes[1..].copy_from_slice(&size.to_le_bytes());
        bytes
    }

    /// Decodes the fixed 9-byte encoding (one per header: the size of an answer without a
    /// blob must be zero).
    pub fn decode(bytes: &[u8; Self::SIZE]) -> Result<Self, DecodeError> {
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[1..]);
        let size = u64::from_le_bytes(size);
        match (bytes[0], size) {
            (0, size) => Ok(BlobHeader::Found { size }),
            (1, 0) => Ok(BlobHeader::NotFound),
            (2, 0) => Ok(BlobHeader::Busy),
            (3, 0) => Ok(BlobHeader::BadRange),
            (4, size) => Ok(BlobHeader::FoundZstd { size }),
            (1..=3, _) => Err(DecodeError::Malformed(
                "a size in an answer without a blob".into(),
            )),
            (other, _) => Err(DecodeError::Malformed(format!("blob status {other}"))),
        }
    }
}

#[cfg(test)]
mod tests;
