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
    fn peer_id_matches_the_libp2p_derivation() {
        let keys = Keypair::from_seed([5; 32]);
        let libp2p = libp2p_keypair(&keys);
        assert_eq!(peer_id(&keys.public()), Some(libp2p.public().to_peer_id()));
        assert_eq!(public_key_of(&libp2p.public()), Some(keys.public()));
    }
}
