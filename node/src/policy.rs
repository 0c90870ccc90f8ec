//! What this node accepts, built once from its configuration and never changed while it runs:
//! the publishers it trusts, who may join its mesh (and its own membership certificate), which
//! modules it replicates and the most a module may ask of it, its disk quota and reserve, which
//! peer addresses it dials, and how it checks answers.
//!
//! Every service that decides something about a peer, a manifest or a blob reads it from here:
//! one policy, not copies of its parts.

use libp2p::PeerId;
use wasmesh_keys::{SignedMembershipCert, TrustList, identity};
use wasmesh_protocol::wire::SyncRequest;
use wasmesh_protocol::{Limits, ModuleKey};

use crate::admission::Admission;
use crate::config::Replicate;
use crate::core::manifests::Filing;

/// This node's policy (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The publishers trusted, and their scopes.
    pub(crate) trust: TrustList,
    /// Who may join: everyone, or members of a private mesh.
    pub(crate) admission: Admission,
    /// This node's own membership certificate (private meshes).
    pub(crate) membership: Option<SignedMembershipCert>,
    /// Which modules are fetched and run here.
    pub(crate) replicate: Replicate,
    /// The most a module may ask of this node (the executor's caps).
    pub(crate) caps: Limits,
    /// Most bytes of blobs, artifacts and partial blobs stored.
    pub(crate) blob_quota: Option<u64>,
    /// Disk left free: no blob is fetched that would leave less.
    pub(crate) min_free_disk: u64,
    /// Whether peers' loopback, private and link-local addresses are dialed.
    pub(crate) allow_private_addrs: bool,
    /// Whether this node serves as a libp2p relay (`None`: while its address is public or
    /// announced; `control::relays`).
    pub(crate) relay: Option<bool>,
    /// Whether slow forwards get a copy sent to the next candidate.
    pub(crate) hedging: bool,
    /// The share of forwarded answers of raw-ABI modules checked again (`request::verify`).
    pub(crate) spot_check_rate: f64,
}

impl Policy {
    /// Whether peers must prove membership.
    pub(crate) fn is_private(&self) -> bool {
        self.admission.is_private()
    }

    /// What manifest intake checks against (`core::manifests::take`).
    pub(crate) fn filing(&self) -> Filing<'_> {
        Filing {
            trust: &self.trust,
            replicate: &self.replicate,
            caps: &self.caps,
        }
    }

    /// This node's membership certificate, encoded (empty in an open mesh).
    pub(crate) fn membership_bytes(&self) -> Vec<u8> {
        self.membership
            .as_ref()
            .map(|c| c.encode())
            .unwrap_or_default()
    }

    /// A request for the manifests a peer holds after `after` (from the first for None), with
    /// this node's membership certificate.
    pub(crate) fn sync_request(&self, after: Option<ModuleKey>) -> SyncRequest {
        SyncRequest {
            after,
            manifests: true,
            membership: self.membership_bytes(),
        }
    }

    /// A request for the peers a neighbour is connected to, without manifests.
    pub(crate) fn peer_exchange_request(&self) -> SyncRequest {
        SyncRequest {
            after: None,
            manifests: false,
            membership: self.membership_bytes(),
        }
    }

    /// Checks a private-mesh peer's membership certificate (encoded; empty for none): until
    /// when it admits the peer (ms since the Unix epoch), if it does.
    pub(crate) fn admits_until(&self, peer: &PeerId, membership: &[u8]) -> Option<u64> {
        let cert = SignedMembershipCert::decode(membership).ok()?;
        // The certificate must be for the key behind this peer id.
        if identity::peer_id(&cert.cert.node) != Some(*peer) {
            return None;
        }
        self.admission
            .check(&cert.cert.node, Some(&cert), crate::clock::now_ms())
            .ok()?;
        Some(cert.cert.expires_at_ms)
    }
}
