//! Membership certificates for private meshes.
//!
//! A mesh admin key signs (mesh id, node public key, validity window). A node configured with the
//! admin's public key accepts traffic only from peers presenting a certificate that verifies
//! against that key, names the peer's own key and the same mesh, and has not expired.

use bincode::{Decode, Encode};
use wasmesh_protocol::codec::{self, DecodeError};
use wasmesh_protocol::{Keypair, PublicKey, Signature};

/// The domain tag that precedes the encoded certificate in the signed bytes.
pub const MEMBERSHIP_DOMAIN: &[u8] = b"wasmesh/membership/v1\0";

/// The largest encoded certificate accepted.
pub const MAX_CERT_SIZE: usize = 1024;

/// Longest mesh id.
pub const MAX_MESH_ID_LEN: usize = 64;

/// What the mesh admin states about one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct MembershipCert {
    /// The mesh this certificate admits to.
    pub mesh: String,
    /// The admitted node's public key.
    pub node: PublicKey,
    /// The admin key that signs.
    pub admin: PublicKey,
    /// Start of validity (ms since the Unix epoch).
    pub not_before_ms: u64,
    /// End of validity (ms since the Unix epoch, exclusive).
    pub expires_at_ms: u64,
}

/// A certificate with the admin's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct SignedMembershipCert {
    /// The signed content.
    pub cert: MembershipCert,
    /// Signature by `cert.admin` over [`MEMBERSHIP_DOMAIN`] || encode(cert).
    pub signature: Signature,
}

/// Why a certificate does not admit a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Signed by a key other than this mesh's admin.
    #[error("certificate is signed by {found}, not by this mesh's admin {expected}")]
    WrongAdmin {
        /// The admin key this node trusts.
        expected: PublicKey,
        /// The key the certificate names.
        found: PublicKey,
    },
    /// The signature does not verify.
    #[error("certificate signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("certificate expired at {expires_at_ms} ms (now {now_ms} ms)")]
    Expired {
        /// Expiry.
        expires_at_ms: u64,
        /// The time of the check.
        now_ms: u64,
    },
    /// Before its start.
    #[error("certificate is not valid before {not_before_ms} ms (now {now_ms} ms)")]
    NotYetValid {
        /// Start of validity.
        not_before_ms: u64,
        /// The time of the check.
        now_ms: u64,
    },
    /// The mesh id is empty or too long.
    #[error("mesh id must be 1-{MAX_MESH_ID_LEN} bytes")]
    BadMeshId,
}

impl MembershipCert {
    /// Signs the certificate with the admin key (which must be `self.admin`).
    pub fn sign(self, admin: &Keypair) -> SignedMembershipCert {
        let signature = admin.sign_encoded(MEMBERSHIP_DOMAIN, &self);
        SignedMembershipCert {
            cert: self,
            signature,
        }
    }
}

impl SignedMembershipCert {
    /// Checks the certificate against the mesh admin key at time `now_ms`. The caller also checks
    /// that `cert.node` is the peer presenting it and `cert.mesh` is its own mesh.
    pub fn verify(&self, admin: &PublicKey, now_ms: u64) -> Result<&MembershipCert, CertError> {
        let cert = &self.cert;
        if cert.mesh.is_empty() || cert.mesh.len() > MAX_MESH_ID_LEN {
            return Err(CertError::BadMeshId);
        }
        if cert.admin != *admin {
            return Err(CertError::WrongAdmin {
                expected: *admin,
                found: cert.admin,
            });
        }
        admin
            .verify_encoded(MEMBERSHIP_DOMAIN, cert, &self.signature)
            .map_err(|_| CertError::BadSignature)?;
        if now_ms < cert.not_before_ms {
            return Err(CertError::NotYetValid {
                not_before_ms: cert.not_before_ms,
                now_ms,
            });
        }
        if now_ms >= cert.expires_at_ms {
            return Err(CertError::Expired {
                expires_at_ms: cert.expires_at_ms,
                now_ms,
            });
        }
        Ok(cert)
    }

    /// The wire (and file) encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a certificate of at most [`MAX_CERT_SIZE`] bytes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_CERT_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(admin: &Keypair, node: PublicKey) -> MembershipCert {
        MembershipCert {
            mesh: "edge-eu".into(),
            node,
            admin: admin.public(),
            not_before_ms: 1_000,
            expires_at_ms: 10_000,
        }
    }

    #[test]
    fn verifies_within_its_window() {
        let admin = Keypair::from_seed([1; 32]);
        let node = Keypair::from_seed([2; 32]).public();
        let signed = cert(&admin, node).sign(&admin);
        let decoded = SignedMembershipCert::decode(&signed.encode()).unwrap();
        assert_eq!(decoded.verify(&admin.public(), 5_000).unwrap().node, node);
        assert!(matches!(
            decoded.verify(&admin.public(), 10_000),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            decoded.verify(&admin.public(), 999),
            Err(CertError::NotYetValid { .. })
        ));
    }

    #[test]
    fn refuses_other_admins_and_forgeries() {
        let admin = Keypair::from_seed([1; 32]);
        let rogue = Keypair::from_seed([3; 32]);
        let node = Keypair::from_seed([2; 32]).public();
        let self_signed = cert(&rogue, node).sign(&rogue);
        assert!(matches!(
            self_signed.verify(&admin.public(), 5_000),
            Err(CertError::WrongAdmin { .. })
        ));
        let forged = cert(&admin, node).sign(&rogue);
        assert_eq!(
            forged.verify(&admin.public(), 5_000),
            Err(CertError::BadSignature)
        );
        let mut widened = cert(&admin, node).sign(&admin);
        widened.cert.expires_at_ms = u64::MAX;
        assert_eq!(
            widened.verify(&admin.public(), 5_000),
            Err(CertError::BadSignature)
        );
    }
}
