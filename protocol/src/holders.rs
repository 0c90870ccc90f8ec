//! Finding the holders of a blob that a node is not connected to (`/wasmesh/holders/1`).
//!
//! Each blob hash has a few **directory nodes**: the peers whose libp2p ids are closest to the
//! hash in Kademlia's XOR metric, found with libp2p-kad's closest-peer lookup (O(log N) hops).
//! A node that has blobs ready announces itself to each blob's directory nodes
//! ([`HolderRequest::Announce`]) with a [`SignedHolder`]: where its QUIC endpoint is, how to dial
//! it, and its network coordinate, signed by its node key. A node looking for holders asks a
//! directory node ([`HolderRequest::Find`]) and gets the holders nearest to its own coordinate
//! ([`HolderAnswer`]), so routing can pick a near one without contacting them all.
//!
//! Kademlia's own provider records carry only peer ids and addresses, and the node answering a
//! lookup cannot rank them for the asker; this is the same scheme with the coordinate in the
//! record and the ranking done by the directory node.

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::coordinates::Coordinate;
use crate::crypto::{Keypair, PublicKey, Signature, SignatureError};
use crate::hash::ContentHash;

/// libp2p protocol of holder announcements and lookups.
pub const HOLDERS_PROTOCOL: &str = "/wasmesh/holders/1";
/// Domain tag of holder signatures.
pub const HOLDER_DOMAIN: &[u8] = b"wasmesh/holder/v1\0";
/// Most blobs one announcement names.
pub const MAX_ANNOUNCED_BLOBS: usize = 256;
/// Most holders one answer lists.
pub const MAX_FOUND_HOLDERS: usize = 16;
/// Most addresses a holder lists, and the longest one.
pub const MAX_HOLDER_ADDRS: usize = 4;
const MAX_ADDR_LEN: usize = 128;
/// Largest encoded [`SignedHolder`].
pub const MAX_SIGNED_HOLDER_SIZE: usize =
    32 + (8 + MAX_ADDR_LEN) + 8 + MAX_HOLDER_ADDRS * (8 + MAX_ADDR_LEN) + 96 + 8 + 64;
/// Largest encoded request.
pub const MAX_HOLDER_REQUEST_SIZE: usize = MAX_SIGNED_HOLDER_SIZE + 16 + 32 * MAX_ANNOUNCED_BLOBS;
/// Largest encoded answer.
pub const MAX_HOLDER_ANSWER_SIZE: usize = 16 + MAX_FOUND_HOLDERS * MAX_SIGNED_HOLDER_SIZE;

/// What a holder says about itself.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Holder {
    /// Its node key (its libp2p identity and its QUIC certificate key).
    pub node: PublicKey,
    /// Its QUIC data-plane address (`ip:port`).
    pub quic_addr: String,
    /// libp2p addresses where it can be dialed.
    pub p2p_addrs: Vec<String>,
    /// Its network coordinate.
    pub coordinate: Coordinate,
    /// When it signed this (ms since the Unix epoch, its clock): a newer record replaces an
    /// older one.
    pub issued_ms: u64,
}

/// A [`Holder`] with its node key's signature.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct SignedHolder {
    /// The record.
    pub holder: Holder,
    /// The holder's signature over it.
    pub signature: Signature,
}

impl Holder {
    /// Signs it with the holder's keys.
    pub fn sign(self, keys: &Keypair) -> SignedHolder {
        SignedHolder {
            signature: keys.sign_encoded(HOLDER_DOMAIN, &self),
            holder: self,
        }
    }
}

impl SignedHolder {
    /// Checks the signature against the key the record names, and the record's bounds.
    pub fn verify(&self) -> Result<(), HolderError> {
        let holder = &self.holder;
        let addrs_ok = holder.p2p_addrs.len() <= MAX_HOLDER_ADDRS
            && holder.p2p_addrs.iter().all(|a| a.len() <= MAX_ADDR_LEN)
            && holder.quic_addr.len() <= MAX_ADDR_LEN;
        if !addrs_ok {
            return Err(HolderError::TooLarge);
        }
        if !holder.coordinate.is_valid() {
            return Err(HolderError::BadCoordinate);
        }
        holder
            .node
            .verify_encoded(HOLDER_DOMAIN, holder, &self.signature)
            .map_err(HolderError::Signature)
    }
}

/// Why a holder record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolderError {
    /// It lists too many or too long addresses.
    #[error("holder record lists too much")]
    TooLarge,
    /// Its coordinate is out of range.
    #[error("holder coordinate out of range")]
    BadCoordinate,
    /// Its signature does not verify.
    #[error("holder signature: {0}")]
    Signature(SignatureError),
}

/// The two Kademlia keys whose closest peers are a blob's directory nodes: the blob's hash,
/// and a salted hash of it. Peer ids ground to sit close to one key are far from the other
/// (with overwhelming likelihood), so a captured set of directory nodes can withhold holders
/// from lookups of one key but not of both.
pub fn directory_keys(blob: &ContentHash) -> [Vec<u8>; 2] {
    let mut salted = blake3::Hasher::new();
    salted.update(b"wasmesh/directory/salted\0");
    salted.update(&blob.0);
    [blob.0.to_vec(), salted.finalize().as_bytes().to_vec()]
}

/// The `max` of `holders` nearest to `near` by coordinate distance, nearest first: what a
/// directory node answers (and what the scale model assumes it answers).
pub fn nearest<'a, T>(
    near: &Coordinate,
    holders: impl IntoIterator<Item = (&'a Coordinate, T)>,
    max: usize,
) -> Vec<T> {
    let mut ranked: Vec<(f64, T)> = holders
        .into_iter()
        .map(|(coordinate, item)| (near.distance_ms(coordinate), item))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    ranked.into_iter().take(max).map(|(_, item)| item).collect()
}

/// A request to a directory node.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum HolderRequest {
    /// The sender holds these blobs ready (it must be the record's node).
    Announce {
        /// The sender's record.
        holder: SignedHolder,
        /// Blobs it holds ready, at most [`MAX_ANNOUNCED_BLOBS`].
        blobs: Vec<ContentHash>,
    },
    /// The holders of `blob` nearest to `near`, at most `max` (and [`MAX_FOUND_HOLDERS`]).
    Find {
        /// The blob.
        blob: ContentHash,
        /// The asker's coordinate.
        near: Coordinate,
        /// How many it wants.
        max: u8,
    },
}

/// A directory node's answer: the holders found (none for an announcement).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct HolderAnswer {
    /// Holders, nearest to the asker first.
    pub holders: Vec<SignedHolder>,
}

impl HolderRequest {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a request of at most [`MAX_HOLDER_REQUEST_SIZE`] bytes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let request: Self = codec::decode(bytes, MAX_HOLDER_REQUEST_SIZE)?;
        if let Self::Announce { blobs, .. } = &request
            && blobs.len() > MAX_ANNOUNCED_BLOBS
        {
            return Err(DecodeError::Malformed(
                "announcement names too many blobs".into(),
            ));
        }
        Ok(request)
    }
}

impl HolderAnswer {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes an answer of at most [`MAX_HOLDER_ANSWER_SIZE`] bytes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let answer: Self = codec::decode(bytes, MAX_HOLDER_ANSWER_SIZE)?;
        if answer.holders.len() > MAX_FOUND_HOLDERS {
            return Err(DecodeError::Malformed(
                "answer lists too many holders".into(),
            ));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(keys: &Keypair) -> SignedHolder {
        Holder {
            node: keys.public(),
            quic_addr: "127.0.0.1:4433".into(),
            p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into(); MAX_HOLDER_ADDRS],
            coordinate: Coordinate::default(),
            issued_ms: 1,
        }
        .sign(keys)
    }

    #[test]
    fn a_record_verifies_and_a_changed_one_does_not() {
        let keys = Keypair::from_seed([3; 32]);
        let signed = record(&keys);
        assert_eq!(signed.verify(), Ok(()));
        let mut moved = signed.clone();
        moved.holder.quic_addr = "127.0.0.1:9".into();
        assert!(matches!(moved.verify(), Err(HolderError::Signature(_))));
    }

    #[test]
    fn the_largest_messages_fit_their_limits() {
        let keys = Keypair::from_seed([3; 32]);
        let mut signed = record(&keys);
        signed.holder.quic_addr = "x".repeat(MAX_ADDR_LEN);
        signed.holder.p2p_addrs = vec!["y".repeat(MAX_ADDR_LEN); MAX_HOLDER_ADDRS];
        assert!(signed.encode_len() <= MAX_SIGNED_HOLDER_SIZE);
        let announce = HolderRequest::Announce {
            holder: signed.clone(),
            blobs: vec![ContentHash([9; 32]); MAX_ANNOUNCED_BLOBS],
        };
        assert_eq!(HolderRequest::decode(&announce.encode()), Ok(announce));
        let answer = HolderAnswer {
            holders: vec![signed; MAX_FOUND_HOLDERS],
        };
        assert_eq!(HolderAnswer::decode(&answer.encode()), Ok(answer));
    }

    impl SignedHolder {
        fn encode_len(&self) -> usize {
            codec::encode(self).len()
        }
    }
}
