//! Where a request can run: the module's holders as the node's view shows them (this node, and
//! peers whose claim to hold the blob was proved: see `crate::possession`), ordered by
//! `wasmesh_protocol::routing::plan`; and the wait for holders beyond the neighbours.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use wasmesh_protocol::routing::{self, Holder};

use super::{PeerTarget, RouteTarget};
use crate::core::peers::PeerInfo;
use crate::core::registry::{ModuleEntry, ModuleState};
use crate::data::PeerAddr;
use crate::node::NodeInner;
use crate::view::View;

impl NodeInner {
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
            if (!targets.is_empty() || search_ended) && !self.proving(&view, entry) {
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

    /// Where the module can run, best first (`wasmesh_protocol::routing::plan`), as `view`
    /// shows it, leaving out the peers in `exclude`; asks the control task to measure the
    /// peers the plan names, and claimed holders to prove they hold the blob.
    pub(super) fn route_targets(
        &self,
        view: &View,
        entry: &ModuleEntry,
        exclude: &[PeerId],
    ) -> Vec<RouteTarget> {
        let hash = entry.signed.manifest.blob;
        let now_ms = self.clock_ms(Instant::now());
        let own_coordinate = view.coordinate;
        let mut local_exec_us = None;
        let mut targets = Vec::new();
        // The spread of past forwards to each peer target, by target index.
        let mut spreads = Vec::new();
        let mut holders = Vec::new();
        if let ModuleState::Ready(module) = &entry.state
            && !exclude.contains(&self.peer_id)
        {
            local_exec_us = module.exec_mean.get();
            holders.push(Holder {
                id: 0usize,
                local: true,
                measured_rtt_us: Some(0),
                coordinate: None,
                in_flight: self.in_flight.load(Ordering::Relaxed),
                capacity: self.executor.capacity() as u32,
                mean_exec_us: local_exec_us,
                down_until_ms: None,
                heard_ms: now_ms,
            });
            targets.push(RouteTarget::Local(module.clone()));
            spreads.push(None);
        }
        for peer in view.peers.values() {
            let Some(target) = self.peer_target(peer, entry, exclude, now_ms) else {
                continue;
            };
            holders.push(Holder {
                id: targets.len(),
                local: false,
                measured_rtt_us: peer.rtt_us,
                coordinate: peer.coordinate,
                // Its last reported load, plus what this node sent it since.
                in_flight: peer.in_flight.saturating_add(peer.feedback.forwarding()),
                capacity: peer.capacity,
                mean_exec_us: peer.mean_exec_us.get(&hash).copied(),
                down_until_ms: peer.feedback.down_until_ms(),
                heard_ms: self.clock_ms(peer.last_seen),
            });
            targets.push(RouteTarget::Peer(target));
            spreads.push(peer.forward_us.get(&hash).copied());
        }
        let plan = routing::plan(&holders, &own_coordinate, local_exec_us, now_ms);
        let default_exec_us = local_exec_us.unwrap_or(routing::DEFAULT_EXEC_US);
        for holder in &holders {
            let Some(RouteTarget::Peer(target)) = targets.get_mut(holder.id) else {
                continue;
            };
            let candidate = routing::candidate(holder, &own_coordinate, default_exec_us);
            let spread = spreads.get(holder.id).copied().flatten();
            target.rtt_us = candidate.rtt_us;
            target.hedge_after = Duration::from_micros(routing::hedge_after_us(
                spread.as_ref(),
                candidate.expected_us(),
            ));
        }
        for id in &plan.probe {
            if let Some(RouteTarget::Peer(target)) = targets.get(*id) {
                self.control.probe(target.peer_id);
            }
        }
        let mut slots: Vec<Option<RouteTarget>> = targets.into_iter().map(Some).collect();
        plan.order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect()
    }

    /// `peer` as a place to run `entry`, if it holds the blob ready, is not `exclude`d and has
    /// proved its claim; a claim not proved yet is put to the proof (see `possession`).
    fn peer_target(
        &self,
        peer: &PeerInfo,
        entry: &ModuleEntry,
        exclude: &[PeerId],
        now_ms: u64,
    ) -> Option<PeerTarget> {
        let hash = entry.signed.manifest.blob;
        let addr = PeerAddr {
            key: peer.key?,
            addr: peer.quic_addr?,
        };
        if !peer.ready.contains(&hash)
            || peer.leaving
            || peer.peer_id == self.peer_id
            || exclude.contains(&peer.peer_id)
        {
            return None;
        }
        if !peer.feedback.has_proven(&hash, now_ms) {
            let size = entry.signed.manifest.size;
            self.possession.check(&peer.feedback, addr, hash, size);
            return None;
        }
        Some(PeerTarget {
            peer_id: peer.peer_id,
            addr,
            feedback: peer.feedback.clone(),
            rtt_us: 0,
            hedge_after: Duration::ZERO,
        })
    }

    /// Whether a peer is proving that it holds `entry`'s blob now.
    fn proving(&self, view: &View, entry: &ModuleEntry) -> bool {
        let (hash, now_ms) = (entry.signed.manifest.blob, self.clock_ms(Instant::now()));
        view.peers
            .values()
            .any(|peer| peer.ready.contains(&hash) && peer.feedback.proof_under_way(&hash, now_ms))
    }

    /// Milliseconds from this node's start to `at` (the clock routing decisions use).
    pub(crate) fn clock_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}
