//! Requests at scale, routed by the node's own code: an entry's core lists the places it can
//! run (`wasmesh_node::core::routing::candidates`, from its peer table), `routing::plan`
//! orders them and names the holders worth measuring; the entry then measures them as the node
//! does (its core asks to dial them, the connection opens, a ping comes back) and plans again.
//! The requests are sampled at one moment of the mesh's life: what one sets off is in place
//! for the next, and every status is as fresh as the node's status interval keeps it.
//! An entry that knows no holder asks the blob's directory nodes first; one that must forward
//! and knows fewer holders than the plan probes asks them after routing, as the node does. Claims to hold the
//! blob are proved at once (the model's data plane delivers).
//!
//! The oracle knows every holder and every round trip; the baseline plans over every holder,
//! with the entry's coordinate, as a node that heard of every holder would.

use libp2p::PeerId;
use rand::RngExt;
use rand_pcg::Pcg64;
use wasmesh_node::core::routing::{Candidates, LocalHolder, candidates};
use wasmesh_node::core::state::Input;
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::routing::{self, Holder};

use super::costs::{CAPACITY, MEAN_EXEC_US};
use super::directory::Directories;
use super::figures::RoutingFigures;
use super::mesh::{Mesh, NodeId};
use crate::report::{Percentiles, round3};

/// Where one request ran, and what the entry did to decide.
struct Routed {
    chosen: Option<NodeId>,
    probed: usize,
    known: usize,
    measured: bool,
    asked_directory: bool,
    searched: bool,
}

/// What the sampled requests gave.
#[derive(Default)]
struct Tally {
    unrouted: usize,
    via_directory: usize,
    searched: usize,
    hits: usize,
    measured: usize,
    probed: usize,
    known: usize,
    stretch: Vec<f64>,
    extra: Vec<f64>,
    errors: Vec<f64>,
}

impl Tally {
    fn figures(self, requests: usize, holders: usize) -> RoutingFigures {
        let count = requests.max(1) as f64;
        RoutingFigures {
            requests,
            holders,
            unrouted: self.unrouted,
            via_directory_fraction: round3(self.via_directory as f64 / count),
            searched_fraction: round3(self.searched as f64 / count),
            oracle_fraction: round3(self.hits as f64 / count),
            stretch: Percentiles::of(&self.stretch),
            extra_rtt_ms: Percentiles::of(&self.extra),
            measured_fraction: round3(self.measured as f64 / count),
            estimate_error: Percentiles::of(&self.errors),
            probed_mean: round3(self.probed as f64 / count),
            known_mean: round3(self.known as f64 / count),
        }
    }

    /// Counts one request that ran on `chosen`, from `entry`.
    fn take(&mut self, mesh: &Mesh, holders: &[NodeId], entry: NodeId, chosen: NodeId) {
        let best = holders
            .iter()
            .map(|&h| mesh.rtt_us(entry, h))
            .min()
            .unwrap_or(0);
        let got = mesh.rtt_us(entry, chosen);
        if got == best {
            self.hits += 1;
        }
        self.stretch
            .push((got + MEAN_EXEC_US) as f64 / (best + MEAN_EXEC_US) as f64);
        self.extra.push(got.saturating_sub(best) as f64 / 1000.0);
    }
}

/// Routes `requests` requests for `blob`, each from a random entry, with the node's code: the
/// figures against the oracle, and those of the baseline that knows every holder.
pub(crate) fn route_all(
    mesh: &mut Mesh,
    directories: &mut Directories,
    blob: ContentHash,
    holders: &[NodeId],
    requests: usize,
    rng: &mut Pcg64,
) -> (RoutingFigures, RoutingFigures) {
    let (mut node_tally, mut baseline) = (Tally::default(), Tally::default());
    for _ in 0..requests {
        let entry = rng.random_range(0..mesh.nodes.len()) as NodeId;
        estimate_error(mesh, holders, entry, &mut node_tally.errors);
        let routed = route_one(mesh, directories, blob, holders, entry);
        node_tally.probed += routed.probed;
        node_tally.known += routed.known;
        node_tally.measured += usize::from(routed.measured);
        node_tally.via_directory += usize::from(routed.asked_directory);
        node_tally.searched += usize::from(routed.searched);
        match routed.chosen {
            Some(chosen) => node_tally.take(mesh, holders, entry, chosen),
            None => node_tally.unrouted += 1,
        }
        let (chosen, probed) = plan_over_every_holder(mesh, holders, entry);
        baseline.probed += probed;
        baseline.known += holders.len();
        match chosen {
            Some(chosen) => baseline.take(mesh, holders, entry, chosen),
            None => baseline.unrouted += 1,
        }
    }
    (
        node_tally.figures(requests, holders.len()),
        baseline.figures(requests, holders.len()),
    )
}

/// One request at `entry`, decided as the node decides it.
fn route_one(
    mesh: &mut Mesh,
    directories: &mut Directories,
    blob: ContentHash,
    holders: &[NodeId],
    entry: NodeId,
) -> Routed {
    let mut routed = Routed {
        chosen: None,
        probed: 0,
        known: 0,
        measured: false,
        asked_directory: false,
        searched: false,
    };
    let local = holders.contains(&entry).then_some(LocalHolder {
        in_flight: 0,
        capacity: CAPACITY,
        exec_us: Some(MEAN_EXEC_US),
    });
    // Each round measures at least one more holder, so the plan settles.
    for _ in 0..=holders.len() {
        let (plan, chosen_peers, known) = plan_at(mesh, entry, blob, local);
        routed.known = routed.known.max(known);
        if known == 0 && local.is_none() && !routed.asked_directory {
            routed.asked_directory = true;
            directories.find(mesh, entry);
            continue;
        }
        if plan.probe.is_empty() {
            routed.chosen = plan.order.first().and_then(|id| match *id {
                Candidates::LOCAL => Some(entry),
                _ => chosen_peers.get(id).and_then(|peer| mesh.node_of(peer)),
            });
            let measured = |id: &usize| *id == Candidates::LOCAL || chosen_peers.contains_key(id);
            routed.measured = plan.order.iter().any(measured);
            // As the node: forwarding with fewer holders known than the plan probes asks the
            // directory without waiting; the answer serves later requests.
            if local.is_none() && known < routing::PROBE_BEST && !routed.asked_directory {
                directories.find(mesh, entry);
                routed.searched = true;
            }
            return routed;
        }
        for id in &plan.probe {
            if let Some(peer) = chosen_peers.get(id) {
                routed.probed += 1;
                measure(mesh, entry, *peer);
            }
        }
    }
    routed
}

/// The entry's plan now, the peers behind its holder ids, and how many holders it knows.
fn plan_at(
    mesh: &Mesh,
    entry: NodeId,
    blob: ContentHash,
    local: Option<LocalHolder>,
) -> (
    routing::Plan<usize>,
    std::collections::BTreeMap<usize, PeerId>,
    usize,
) {
    let now_ms = mesh.now_us / 1000;
    let base = mesh.instant(0);
    let node = &mesh.nodes[entry as usize];
    let ms_of = |at: std::time::Instant| at.saturating_duration_since(base).as_millis() as u64;
    let find = || {
        candidates(
            &node.state.peers,
            &node.peer_id,
            &blob,
            local,
            &[],
            now_ms,
            ms_of,
        )
    };
    // The model's data plane delivers: a claim is proved as soon as it is put to the proof.
    for peer in &find().unproven {
        peer.feedback.proof_ended(&blob, true, now_ms);
    }
    let found = find();
    let plan = routing::plan(
        &found.holders,
        &node.coordinate(),
        local.and_then(|l| l.exec_us),
        now_ms,
    );
    let peers = found
        .holders
        .iter()
        .filter_map(|h| Some((h.id, found.peer(h.id)?.peer_id)))
        .collect();
    let known = found.holders.len();
    (plan, peers, known)
}

/// `entry` measures its round trip to `peer`: its core asks to connect (a probe), the
/// connection opens, and a ping comes back.
fn measure(mesh: &mut Mesh, entry: NodeId, peer: PeerId) {
    let Some(target) = mesh.node_of(&peer) else {
        return;
    };
    let now = mesh.instant(mesh.now_us);
    let effects = mesh.nodes[entry as usize]
        .state
        .handle(Input::ProbeWanted { peer }, now);
    mesh.apply_now(entry, effects);
    let rtt_us = mesh.rtt_us(entry, target);
    mesh.deliver_within(rtt_us);
    let now = mesh.instant(mesh.now_us);
    mesh.nodes[entry as usize]
        .state
        .handle(Input::Pinged { peer, rtt_us }, now);
}

/// The baseline: a plan over every holder, measuring those it names from the entry.
fn plan_over_every_holder(
    mesh: &Mesh,
    holders: &[NodeId],
    entry: NodeId,
) -> (Option<NodeId>, usize) {
    let own = mesh.nodes[entry as usize].coordinate();
    let connected = &mesh.nodes[entry as usize].connected;
    let mut known: Vec<Holder<NodeId>> = holders
        .iter()
        .map(|&h| Holder {
            id: h,
            local: h == entry,
            measured_rtt_us: connected.contains(&h).then(|| mesh.rtt_us(entry, h)),
            coordinate: Some(mesh.nodes[h as usize].coordinate()),
            in_flight: 0,
            capacity: CAPACITY,
            mean_exec_us: Some(MEAN_EXEC_US),
            down_until_ms: None,
            heard_ms: 0,
        })
        .collect();
    let mut probed = 0;
    loop {
        let plan = routing::plan(&known, &own, Some(MEAN_EXEC_US), 0);
        if plan.probe.is_empty() {
            return (plan.order.first().copied(), probed);
        }
        for holder in known.iter_mut().filter(|h| plan.probe.contains(&h.id)) {
            holder.measured_rtt_us = Some(mesh.rtt_us(entry, holder.id));
            probed += 1;
        }
    }
}

/// The error of the coordinate estimate from `entry` to the first holder it is not connected
/// to.
fn estimate_error(mesh: &Mesh, holders: &[NodeId], entry: NodeId, errors: &mut Vec<f64>) {
    let node = &mesh.nodes[entry as usize];
    let Some(&far) = holders
        .iter()
        .find(|&&h| h != entry && !node.connected.contains(&h))
    else {
        return;
    };
    let theirs = mesh.nodes[far as usize].coordinate();
    if let Some(estimated) = routing::estimated_rtt_us(&node.coordinate(), Some(&theirs)) {
        let actual = mesh.rtt_us(entry, far).max(1) as f64;
        errors.push((estimated as f64 - actual).abs() / actual);
    }
}
