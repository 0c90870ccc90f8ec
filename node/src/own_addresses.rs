//! This node's own addresses: what its listeners report (one per interface for a listener on
//! `0.0.0.0`), what the operator announces, and where peers saw its connections come from
//! (identify's observed address); which of them its statuses advertise, and what they say of
//! its reachability.
//!
//! Advertised, best first (the first is the one printed for bootstrapping): the announced
//! addresses alone when there are any; otherwise globally routable listen addresses, then
//! observed global addresses two peers agree on, then the rendezvous this node stands on
//! behind a NAT (`/p2p/<rendezvous>/p2p-circuit`, see `standing`), then private ones (peers on
//! the same LAN dial them; peers elsewhere drop them, see `address_scope`), and loopback only
//! when there is nothing else (a mesh on one machine). Never a wildcard.

use std::net::{IpAddr, SocketAddr};

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use wasmesh_protocol::PublicKey;

use crate::address_scope::{ip_of, is_global, socket_is_dialable};
use crate::core::peers::data_path::{circuit_via, is_circuit};
use crate::data::SeenByRendezvous;

/// Observed addresses remembered, at most, of each kind (a peer can report anything).
const MAX_OBSERVED: usize = 8;
/// Peers that must report the same observed address before it is advertised.
const CONFIRMATIONS: usize = 2;

/// What this node can say of how peers reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// The operator announced its addresses.
    Announced,
    /// It listens on a globally routable address (and no peer's dial back was dropped there).
    Public,
    /// It listens on a globally routable address, but a peer's dial back to it was dropped: a
    /// firewall lets in only what it asked for, so it stands on rendezvous as a node behind a
    /// NAT does.
    Firewalled,
    /// It listens on private addresses only, and peers saw it at a global one: a NAT is in
    /// between, and peers outside cannot dial it.
    BehindNat,
    /// Private or loopback addresses only, and no peer has seen it elsewhere: a LAN or one
    /// machine.
    Local,
}

/// What this node found of the NAT in front of its data plane, from what its rendezvous saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatKind {
    /// One mapping whoever it sends to, and a rendezvous reached it there from a port it never
    /// sent to: peers dial it there directly (a full-cone NAT).
    Open,
    /// One mapping whoever it sends to, and a rendezvous' dial back from a new port did not
    /// get in: a peer gets in once both have sent to each other (hole punching).
    Filtering,
    /// Each rendezvous saw another mapping: no punch reaches it, a relay does.
    Symmetric,
}

/// A global address peers saw this node at, and who said so.
#[derive(Debug, Clone)]
struct Observation {
    addr: Multiaddr,
    reporters: Vec<PeerId>,
}

/// This node's addresses (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct OwnAddresses {
    listen: Vec<Multiaddr>,
    /// Addresses reserved on libp2p relays (`control::relays`), at most [`MAX_OBSERVED`].
    relayed: Vec<Multiaddr>,
    announce: Vec<Multiaddr>,
    observed: Vec<Observation>,
    /// Where the data plane is bound (perhaps `0.0.0.0:port`).
    data_plane: SocketAddr,
    /// Where rendezvous saw the data plane's packets come from, by rendezvous (at most
    /// [`MAX_OBSERVED`]).
    quic_observed: Vec<(PublicKey, SocketAddr)>,
    /// Where rendezvous dialed back, and whether that got in (at most [`MAX_OBSERVED`]).
    dialed_back: Vec<(SocketAddr, bool)>,
    announce_quic: Option<SocketAddr>,
}

/// What the node's status page shows of its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressReport {
    /// The libp2p addresses advertised, best first.
    pub p2p: Vec<String>,
    /// The data-plane address advertised.
    pub quic: String,
    /// How peers reach this node.
    pub reachability: Reachability,
    /// Whether peers can dial its data plane where it is (else it stands on rendezvous).
    pub direct: bool,
    /// What it found of the NAT in front of it (`None`: no NAT, or nothing known yet).
    pub nat: Option<NatKind>,
    /// Whether a peer's dial back reached its data plane at the advertised address (`None`:
    /// none was asked yet).
    pub reachable: Option<bool>,
}

impl OwnAddresses {
    /// A node whose listeners reported `listen`, announcing `announce`, its data plane bound
    /// at `data_plane` (announced as `announce_quic`, if set).
    pub(crate) fn new(
        listen: Vec<Multiaddr>,
        announce: Vec<Multiaddr>,
        data_plane: SocketAddr,
        announce_quic: Option<SocketAddr>,
    ) -> Self {
        let mut own = Self {
            listen: Vec::new(),
            relayed: Vec::new(),
            announce,
            observed: Vec::new(),
            data_plane,
            quic_observed: Vec::new(),
            dialed_back: Vec::new(),
            announce_quic,
        };
        for addr in listen {
            own.add_listen(addr);
        }
        own
    }

    /// A listener reported `addr` (a reservation on a relay reports a `/p2p-circuit` address
    /// through it); whether it was new.
    pub(crate) fn add_listen(&mut self, addr: Multiaddr) -> bool {
        if is_circuit(&addr) {
            let addr = without_own_id(addr);
            if self.relayed.contains(&addr) || self.relayed.len() >= MAX_OBSERVED {
                return false;
            }
            self.relayed.push(addr);
            return true;
        }
        if is_wildcard(&addr) || self.listen.contains(&addr) {
            return false;
        }
        self.listen.push(addr);
        true
    }

    /// A listener's `addr` went away (an interface went down, a reservation ended); whether it
    /// was known.
    pub(crate) fn remove_listen(&mut self, addr: &Multiaddr) -> bool {
        let before = self.listen.len() + self.relayed.len();
        let relayed = without_own_id(addr.clone());
        self.listen.retain(|a| a != addr);
        self.relayed.retain(|a| *a != relayed);
        self.listen.len() + self.relayed.len() != before
    }

    /// `peer` saw this node's connection come from `addr`; whether what is advertised
    /// changed. Only global addresses count (a peer on the same LAN sees a private one), and
    /// not a connection through a relay (the peer saw the relay's address).
    pub(crate) fn observed(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        if !is_global(&addr) || ip_of(&addr).is_none() || is_circuit(&addr) {
            return false;
        }
        let advertised_before = self.p2p();
        let reachability_before = self.reachability();
        let room = self.observed.len() < MAX_OBSERVED;
        match self.observed.iter_mut().find(|o| o.addr == addr) {
            Some(known)
                if !known.reporters.contains(&peer) && known.reporters.len() < CONFIRMATIONS =>
            {
                known.reporters.push(peer);
            }
            Some(_) => {}
            None if room => self.observed.push(Observation {
                addr,
                reporters: vec![peer],
            }),
            None => {}
        }
        self.p2p() != advertised_before || self.reachability() != reachability_before
    }

    /// Rendezvous `by` saw the data plane's packets come from `observed.seen`, and dialed
    /// back there if `observed.dialed_back` says so; whether what is advertised changed.
    pub(crate) fn quic_observed(&mut self, by: PublicKey, observed: SeenByRendezvous) -> bool {
        let before = (self.quic(), self.nat());
        let addr = observed.seen;
        let room = self.quic_observed.len() < MAX_OBSERVED;
        match self.quic_observed.iter_mut().find(|(key, _)| *key == by) {
            Some(known) => known.1 = addr,
            None if room => self.quic_observed.push((by, addr)),
            None => return false,
        }
        if let Some(reached) = observed.dialed_back {
            if self.dialed_back.len() == MAX_OBSERVED {
                self.dialed_back.remove(0);
            }
            self.dialed_back.push((addr, reached));
        }
        (self.quic(), self.nat()) != before
    }

    /// What this node found of the NAT in front of its data plane: nothing for a node peers
    /// dial where it is, or before a rendezvous said; symmetric when the rendezvous saw
    /// different mappings; else what the latest dial back to the mapping found.
    pub(crate) fn nat(&self) -> Option<NatKind> {
        if self.dialable_directly() || self.quic_observed.is_empty() {
            return None;
        }
        let Some(mapping) = self.agreed_quic_observation() else {
            return Some(NatKind::Symmetric);
        };
        let (_, reached) = self
            .dialed_back
            .iter()
            .rev()
            .find(|(addr, _)| *addr == mapping)?;
        Some(if *reached {
            NatKind::Open
        } else {
            NatKind::Filtering
        })
    }

    /// The address every rendezvous agrees the data plane's packets come from: the NAT maps
    /// this node's socket to one address whoever it sends to. `None` before any said, or when
    /// they disagree (a NAT that maps each destination apart: nobody can dial that).
    fn agreed_quic_observation(&self) -> Option<SocketAddr> {
        let (_, first) = *self.quic_observed.first()?;
        self.quic_observed
            .iter()
            .all(|(_, addr)| *addr == first)
            .then_some(first)
    }

    /// The libp2p addresses to advertise, best first.
    pub(crate) fn p2p(&self) -> Vec<Multiaddr> {
        if !self.announce.is_empty() {
            return self.announce.clone();
        }
        let confirmed = self
            .observed
            .iter()
            .filter(|o| o.reporters.len() >= CONFIRMATIONS)
            .map(|o| o.addr.clone());
        let (global, rest): (Vec<_>, Vec<_>) = self.listen.iter().cloned().partition(is_global);
        let (loopback, private): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|a| ip_of(a).is_some_and(|ip| ip.is_loopback()));
        // A rendezvous' relay address once reserved there (peers dial through it), else its
        // name alone (the data plane still finds it); none for a node peers dial directly (a
        // public one whose reachability a rendezvous checked).
        let standing_on = if self.dialable_directly() {
            &[][..]
        } else {
            &self.quic_observed[..]
        };
        let circuits = standing_on
            .iter()
            .filter_map(|(rendezvous, _)| wasmesh_keys::identity::peer_id(rendezvous))
            .map(|rendezvous| {
                let bare = circuit_via(rendezvous);
                self.relayed
                    .iter()
                    .find(|reserved| reserved.ends_with(&bare))
                    .cloned()
                    .unwrap_or(bare)
            });
        let mut advertised: Vec<Multiaddr> = Vec::new();
        for addr in global
            .into_iter()
            .chain(confirmed)
            .chain(circuits)
            .chain(private)
        {
            if !advertised.contains(&addr) {
                advertised.push(addr);
            }
        }
        if advertised.is_empty() {
            advertised = loopback;
        }
        advertised
    }

    /// The data-plane address to advertise: the announced one; else the bound one (a wildcard
    /// replaced by the IP of the best advertised listen address) if it is globally routable;
    /// else the one the rendezvous agree they see; else the bound one.
    pub(crate) fn quic(&self) -> SocketAddr {
        if let Some(announced) = self.announce_quic {
            return announced;
        }
        let own = self.own_quic();
        if socket_is_dialable(&own, false) {
            return own;
        }
        self.agreed_quic_observation().unwrap_or(own)
    }

    /// The bound data-plane address, a wildcard replaced by the IP of this node's best own
    /// interface (a listen address: global, then private, then loopback; never an observed
    /// one, which is the NAT's).
    fn own_quic(&self) -> SocketAddr {
        if !self.data_plane.ip().is_unspecified() {
            return self.data_plane;
        }
        let family_matches = |ip: &IpAddr| ip.is_ipv4() == self.data_plane.is_ipv4();
        let rank = |ip: &IpAddr| {
            if ip.is_loopback() {
                2
            } else if socket_is_dialable(&SocketAddr::new(*ip, 0), false) {
                0
            } else {
                1
            }
        };
        let own_ip = self
            .listen
            .iter()
            .filter_map(ip_of)
            .filter(|ip| family_matches(ip) && !ip.is_unspecified())
            .min_by_key(rank);
        match own_ip {
            Some(ip) => SocketAddr::new(ip, self.data_plane.port()),
            None => self.data_plane,
        }
    }

    /// Whether peers can dial this node's data plane where it is: an announced address, or a
    /// globally routable own one that no firewall was found in front of. A node that cannot
    /// be dialed stands on rendezvous (`standing`).
    pub(crate) fn dialable_directly(&self) -> bool {
        self.announce_quic.is_some()
            || (socket_is_dialable(&self.own_quic(), false) && !self.firewalled())
    }

    /// Whether the latest dial back to the advertised data-plane address got in.
    pub(crate) fn reachable(&self) -> Option<bool> {
        let advertised = self.quic();
        self.dialed_back
            .iter()
            .rev()
            .find(|(addr, _)| *addr == advertised)
            .map(|(_, reached)| *reached)
    }

    /// Whether this node's own global data-plane address was dialed back and the dial dropped.
    fn firewalled(&self) -> bool {
        let own = self.own_quic();
        self.announce_quic.is_none()
            && self
                .dialed_back
                .iter()
                .rev()
                .find(|(addr, _)| *addr == own)
                .is_some_and(|(_, reached)| !reached)
    }

    /// How peers reach this node.
    pub(crate) fn reachability(&self) -> Reachability {
        if !self.announce.is_empty() {
            Reachability::Announced
        } else if self.listen.iter().any(is_global) {
            if self.firewalled() {
                Reachability::Firewalled
            } else {
                Reachability::Public
            }
        } else if !self.observed.is_empty() {
            Reachability::BehindNat
        } else {
            Reachability::Local
        }
    }

    /// What the status page shows.
    pub(crate) fn report(&self) -> AddressReport {
        AddressReport {
            p2p: self.p2p().iter().map(ToString::to_string).collect(),
            quic: self.quic().to_string(),
            reachability: self.reachability(),
            direct: self.dialable_directly(),
            nat: self.nat(),
            reachable: self.reachable(),
        }
    }
}

/// `addr` without a trailing `/p2p/<id>` (a relay reports its reservation with this node's id).
fn without_own_id(mut addr: Multiaddr) -> Multiaddr {
    if matches!(
        addr.iter().last(),
        Some(libp2p::multiaddr::Protocol::P2p(_))
    ) {
        addr.pop();
    }
    addr
}

fn is_wildcard(addr: &Multiaddr) -> bool {
    ip_of(addr).is_some_and(|ip| ip.is_unspecified())
}

#[cfg(test)]
mod tests;
