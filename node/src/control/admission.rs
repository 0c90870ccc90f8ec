//! Private meshes on the control plane: a peer stays blacklisted in gossipsub (no messages to or
//! from it) until the membership certificate it presents in the first sync exchange checks out;
//! one that fails, that does not prove membership within [`ADMISSION_TIMEOUT`], or whose
//! membership expires, is disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{PeerId, Swarm};

use super::behaviour::Behaviour;
use crate::node::NodeInner;

/// How long a peer of a private mesh has to prove membership (answer the sync request that
/// carries certificates) before it is disconnected.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Private meshes: peers admitted (until their certificate expires, ms since the Unix epoch),
/// and peers connected but not yet admitted (since when). Each peer that leaves or is refused
/// without being admitted is counted once as `not_admitted`.
#[derive(Debug, Default)]
pub(crate) struct AdmissionState {
    pub(crate) admitted: HashMap<PeerId, u64>,
    pub(crate) pending: HashMap<PeerId, Instant>,
}

/// Decides whether `peer` is admitted, given the membership certificate it presented; refuses
/// and disconnects it otherwise (private meshes only).
pub(crate) fn admit(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    admission: &mut AdmissionState,
    peer: PeerId,
    membership: &[u8],
) -> bool {
    if !node.admission.is_private() || admission.admitted.contains_key(&peer) {
        return true;
    }
    if let Some(expires_ms) = node.admits_until(&peer, membership) {
        admission.pending.remove(&peer);
        admission.admitted.insert(peer, expires_ms);
        swarm
            .behaviour_mut()
            .gossipsub
            .remove_blacklisted_peer(&peer);
        tracing::info!(%peer, "admitted to the private mesh");
        true
    } else {
        if admission.pending.remove(&peer).is_some() {
            node.metrics.count_rejection("not_admitted");
        }
        tracing::warn!(%peer, "peer has no valid membership certificate; disconnecting");
        let _ = swarm.disconnect_peer_id(peer);
        false
    }
}

/// Private meshes: disconnects peers whose membership has expired since they were admitted,
/// and peers that have not proved membership within [`ADMISSION_TIMEOUT`].
pub(crate) fn enforce_admission(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    admission: &mut AdmissionState,
) {
    let now_ms = crate::clock::now_ms();
    let expired: Vec<PeerId> = admission
        .admitted
        .iter()
        .filter(|(_, expires_ms)| **expires_ms <= now_ms)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in expired {
        admission.admitted.remove(&peer);
        node.metrics.count_rejection("membership_expired");
        tracing::info!(%peer, "membership expired; disconnecting");
        swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = swarm.disconnect_peer_id(peer);
    }
    let silent: Vec<PeerId> = admission
        .pending
        .iter()
        .filter(|(_, since)| since.elapsed() >= ADMISSION_TIMEOUT)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in silent {
        admission.pending.remove(&peer);
        node.metrics.count_rejection("admission_timeout");
        tracing::info!(%peer, "peer did not prove membership in time; disconnecting");
        let _ = swarm.disconnect_peer_id(peer);
    }
}
