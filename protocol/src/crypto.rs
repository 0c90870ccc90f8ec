//! Ed25519 keys and signatures, and signing of wire values under a domain tag.
//!
//! Every signature in wasmesh covers `domain tag || encode(value)`, where the tag names what is
//! signed (`wasmesh/manifest/v1\0`, ...). A signature made for one kind of value can therefore
//! never be replayed as another. Verification is strict (ed25519 `verify_strict`): malleable
//! signatures and weak public keys are refused.

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::codec;
use crate::hex_bytes::hex_newtype;

/// An ed25519 public key (32 bytes), written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct PublicKey(pub [u8; 32]);

hex_newtype!(PublicKey, 32);

impl PublicKey {
    /// A short, stable form for logs: the first 10 hex characters.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.0[..5])
    }

    /// Checks `signature` over `domain || encode(value)`.
    pub fn verify_encoded<T: Encode>(
        &self,
        domain: &[u8],
        value: &T,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::InvalidKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&signed_bytes(domain, value), &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Signature(pub [u8; 64]);

hex_newtype!(Signature, 64);

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key bytes are not a valid ed25519 point.
    #[error("the public key is not a valid ed25519 key")]
    InvalidKey,
    /// The signature does not match the key and the signed bytes.
    #[error("the signature does not match the signed content")]
    Mismatch,
}

/// An ed25519 key pair. Holds secret material: it is zeroed on drop and never printed.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair(public: {})", self.public())
    }
}

impl Keypair {
    /// The key pair for a 32-byte secret seed. The seed must come from a secure random source.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The 32-byte secret seed (for writing key files).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `domain || encode(value)`.
    pub fn sign_encoded<T: Encode>(&self, domain: &[u8], value: &T) -> Signature {
        Signature(self.0.sign(&signed_bytes(domain, value)).to_bytes())
    }
}

fn signed_bytes<T: Encode>(domain: &[u8], value: &T) -> Vec<u8> {
    let mut bytes = domain.to_vec();
    bytes.extend_from_slice(&codec::encode(value));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_separates_signatures() {
        let keys = Keypair::from_seed([7; 32]);
        let signature = keys.sign_encoded(b"a\0", &42u64);
        assert_eq!(
            keys.public().verify_encoded(b"a\0", &42u64, &signature),
            Ok(())
        );
        assert_eq!(
            keys.public().verify_encoded(b"b\0", &42u64, &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            keys.public().verify_encoded(b"a\0", &43u64, &signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let keys = Keypair::from_seed([9; 32]);
        let shown = format!("{keys:?}");
        assert!(!shown.contains(&hex::encode([9u8; 32])));
        assert!(shown.contains(&keys.public().to_string()));
    }
}
