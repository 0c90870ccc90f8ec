//! The libp2p identity of a node, derived from its wasmesh key.

use libp2p_identity::{Keypair as Libp2pKeypair, PeerId};
use wasmesh_protocol::{Keypair, PublicKey};

/// The libp2p key pair with the same ed25519 secret as `keys`.
pub fn libp2p_keypair(keys: &Keypair) -> Libp2pKeypair {
    let mut seed = keys.seed();
    // `ed25519_from_bytes` only fails on a wrong length; the seed is always 32 bytes.
    Libp2pKeypair::ed25519_from_bytes(&mut seed).expect("a 32-byte seed is a valid ed25519 key")
}

/// The libp2p peer id of the node whose public key is `key`, if `key` is a valid ed25519 point.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let public = libp2p_identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(PeerId::from_public_key(&public.into()))
}

/// Whether `id` is the peer id of the node whose public key is `key`: the id's bytes are the
/// key's own (libp2p embeds a key this short in its id, protobuf-encoded under the identity
/// multihash), so this compares bytes and decodes no curve point, unlike [`peer_id`]. An id
/// libp2p authenticated is thereby proof that `key` is valid.
pub fn is_peer_id_of(id: &PeerId, key: &PublicKey) -> bool {
    let bytes = id.to_bytes();
    bytes.len() == ED25519_PEER_ID_PREFIX.len() + key.0.len()
        && bytes[..ED25519_PEER_ID_PREFIX.len()] == ED25519_PEER_ID_PREFIX
        && bytes[ED25519_PEER_ID_PREFIX.len()..] == key.0
}

/// Identity multihash (code 0, 36 bytes) of a protobuf `PublicKey { type: Ed25519, data }`
/// whose 32 data bytes follow: how libp2p spells an ed25519 key's peer id.
const ED25519_PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// The peer id `key` would have, without checking that `key` is a valid ed25519 point (which
/// costs a curve-point decompression, ~20 µs): enough to look a peer up; check with
/// [`peer_id`] before trusting a key nobody authenticated.
pub fn unchecked_peer_id(key: &PublicKey) -> Option<PeerId> {
    let mut bytes = ED25519_PEER_ID_PREFIX.to_vec();
    bytes.extend_from_slice(&key.0);
    PeerId::from_bytes(&bytes).ok()
}

/// The wasmesh public key behind a libp2p public key, when it is ed25519.
pub fn public_key_of(key: &libp2p_identity::PublicKey) -> Option<PublicKey> {
    key.clone()
        .try_into_ed25519()
        .ok()
        .map(|k| PublicKey(k.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_id_is_recognised_as_its_keys_and_no_other() {
        let keys = Keypair::from_seed([5; 32]);
        let id = peer_id(&keys.public()).unwrap();
        assert!(is_peer_id_of(&id, &keys.public()));
        assert_eq!(unchecked_peer_id(&keys.public()), Some(id));
        assert!(!is_peer_id_of(&id, &Keypair::from_seed([6; 32]).public()));
        let rsa_like =
            PeerId::from_bytes(&[0x12, 0x20].into_iter().chain([7; 32]).collect::<Vec<u8>>())
                .unwrap();
        assert!(!is_peer_id_of(&rsa_like, &keys.public()));
    }

    #[test]
    fn peer_id_matches_the_libp2p_derivation() {
        let keys = Keypair::from_seed([5; 32]);
        let libp2p = libp2p_keypair(&keys);
        assert_eq!(peer_id(&keys.public()), Some(libp2p.public().to_peer_id()));
        assert_eq!(public_key_of(&libp2p.public()), Some(keys.public()));
    }
}
