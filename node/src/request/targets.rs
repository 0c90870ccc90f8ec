//! Where a request can run: the module's holders as the node's view shows them
//! (`core::routing::candidates`: this node, and peers whose claim to hold the blob was proved,
//! see `crate::possession`), ordered by `wasmesh_protocol::routing::plan`; and the wait for
//! holders beyond the neighbours.

use std::time::Duration;

use libp2p::PeerId;
use wasmesh_protocol::routing::{self, Holder};

use super::Router;
use super::{PeerTarget, RouteTarget};
use crate::core::peers::PeerInfo;
use crate::core::registry::{ModuleEntry, ModuleState};
use crate::core::routing::{self as routing_core, Candidates, LocalHolder, candidates};
use crate::data::PeerAddr;
use crate::view::View;

impl Router {
    /// Asks for holders of `entry`'s blob beyond the neighbours, and waits until the views
    /// show holders whose claims are proved (and no proof is under way), the search and the
    /// proofs end without one, or `wait` has passed; the route targets then (none if none
    /// showed).
    pub(super) async fn find_holders(
        &self,
        entry: &ModuleEntry,
        wait: Duration,
        exclude: &[PeerId],
    ) -> Vec<RouteTarget> {
        let until = tokio::time::Instant::now() + wait;
        let mut search_ended = false;
        let mut ended = self.control.search_holders(entry.signed.manifest.blob);
        loop {
            let changed = self.providers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let view = self.views.load();
            let targets = self.route_targets(&view, entry, exclude);
            // The holders' proofs run together: the request waits for all of them, so that a
            // burst of first requests does not all go to whichever was proved first.
            let proving = routing_core::proving(
                &view.peers,
                &entry.signed.manifest.blob,
                self.clock.now_ms(),
            );
            if (!targets.is_empty() || search_ended) && !proving {
                return targets;
            }
            tokio::select! {
                _ = &mut changed => {}
                // The view this answer follows holds whatever the search found.
                _ = &mut ended, if !search_ended => search_ended = true,
                _ = tokio::time::sleep_until(until) => return Vec::new(),
            }
        }
    }

    /// Where the module can run, best first (`core::routing::candidates`, ordered by
    /// `wasmesh_protocol::routing::plan`), as `view` shows it, leaving out the peers in
    /// `exclude`; asks the control task to measure the peers the plan names, and claimed
    /// holders to prove they hold the blob.
    pub(super) fn route_targets(
        &self,
        view: &View,
        entry: &ModuleEntry,
        exclude: &[PeerId],
    ) -> Vec<RouteTarget> {
        let manifest = &entry.signed.manifest;
        let hash = manifest.blob;
        let now_ms = self.clock.now_ms();
        let module = match &entry.state {
            ModuleState::Ready(module) => Some(module),
            _ => None,
        };
        let local = module.map(|module| LocalHolder {
            in_flight: self.local.load().in_flight(),
            capacity: self.local.load().capacity(),
            exec_us: module.exec_mean.get(),
        });
        let found = candidates(
            &view.peers,
            &self.peer_id,
            &hash,
            local,
            exclude,
            now_ms,
            |at| self.clock.ms(at),
        );
        for peer in &found.unproven {
            if let Some(addr) = peer_addr(peer) {
                self.possession
                    .check(&peer.feedback, addr, hash, manifest.size);
            }
        }
        let local_exec_us = local.and_then(|local| local.exec_us);
        let plan = routing::plan(&found.holders, &view.coordinate, local_exec_us, now_ms);
        for id in &plan.probe {
            if let Some(peer) = found.peer(*id) {
                self.control.probe(peer.peer_id);
            }
        }
        let default_exec_us = local_exec_us.unwrap_or(routing::DEFAULT_EXEC_US);
        let target = |holder: &Holder<usize>| {
            if holder.id == Candidates::LOCAL {
                return module.map(|module| RouteTarget::Local(module.clone()));
            }
            let peer = found.peer(holder.id)?;
            let candidate = routing::candidate(holder, &view.coordinate, default_exec_us);
            let hedge_after =
                routing::hedge_after_us(peer.forward_us.get(&hash), candidate.expected_us());
            Some(RouteTarget::Peer(PeerTarget {
                peer_id: peer.peer_id,
                addr: peer_addr(peer)?,
                feedback: peer.feedback.clone(),
                rtt_us: candidate.rtt_us,
                hedge_after: Duration::from_micros(hedge_after),
            }))
        };
        plan.order
            .iter()
            .filter_map(|id| found.holders.iter().find(|h| h.id == *id))
            .filter_map(target)
            .collect()
    }
}

/// Where a peer's data plane is, once its status named its key and address.
fn peer_addr(peer: &PeerInfo) -> Option<PeerAddr> {
    Some(PeerAddr {
        key: peer.key?,
        addr: peer.data_addr()?,
    })
}
