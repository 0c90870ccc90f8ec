//! Who may talk to this node: everyone (an open mesh) or members of a private mesh.
//!
//! In a private mesh every node holds a membership certificate signed by the mesh admin key
//! (`wasmesh keys certify`). A peer is admitted when its certificate verifies against the admin
//! key, names the peer's own key and this node's mesh, and has not expired. The same check guards
//! gossip, sync, blob and invoke traffic.

use wasmesh_keys::{CertError, SignedMembershipCert};
use wasmesh_protocol::PublicKey;

/// The admission policy of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Anyone may connect.
    Open,
    /// Only holders of a valid membership certificate for `mesh`.
    Private {
        /// The mesh admin's public key.
        admin: PublicKey,
        /// The mesh id (from this node's own certificate).
        mesh: String,
    },
}

/// Why a peer is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// No certificate was presented.
    #[error("no membership certificate")]
    NoCertificate,
    /// The certificate does not verify.
    #[error("membership certificate refused: {0}")]
    Invalid(#[from] CertError),
    /// The certificate admits another key.
    #[error("the membership certificate is for node {certified}, not {presented}")]
    OtherNode {
        /// The key in the certificate.
        certified: PublicKey,
        /// The key the peer presented.
        presented: PublicKey,
    },
    /// The certificate is for another mesh.
    #[error("the membership certificate is for mesh {found:?}, not {expected:?}")]
    OtherMesh {
        /// This node's mesh.
        expected: String,
        /// The certificate's mesh.
        found: String,
    },
}

impl Admission {
    /// Whether the peer with key `peer`, presenting `certificate`, is admitted at `now_ms`.
    pub fn check(
        &self,
        peer: &PublicKey,
        certificate: Option<&SignedMembershipCert>,
        now_ms: u64,
    ) -> Result<(), AdmissionError> {
        let Admission::Private { admin, mesh } = self else {
            return Ok(());
        };
        let cert = certificate
            .ok_or(AdmissionError::NoCertificate)?
            .verify(admin, now_ms)?;
        if cert.node != *peer {
            return Err(AdmissionError::OtherNode {
                certified: cert.node,
                presented: *peer,
            });
        }
        if cert.mesh != *mesh {
            return Err(AdmissionError::OtherMesh {
                expected: mesh.clone(),
                found: cert.mesh.clone(),
            });
        }
        Ok(())
    }

    /// Whether this is a private mesh.
    pub fn is_private(&self) -> bool {
        matches!(self, Admission::Private { .. })
    }
}
