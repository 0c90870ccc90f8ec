//! The control plane across NATs (libp2p circuit relay v2 and DCUtR).
//!
//! - **Serving.** A node whose own address is public or announced serves as a relay for the
//!   mesh (unless its operator says otherwise, `--relay`), within [`server_config`]'s bounds
//!   (reservations, circuits, a circuit's bytes and duration); a node behind a NAT, behind a
//!   firewall or on a LAN does not. In a private mesh only members reach it (the behaviour is
//!   `Gated` like Kademlia). Accepted and refused reservations and circuits are counted
//!   (`wasmesh_control_relay_total`, and refusals as rejections).
//! - **Reserving.** A node that peers cannot dial keeps a reservation on up to
//!   [`MAX_RESERVATIONS`] of the rendezvous its data plane stands on (`crate::standing`), and
//!   advertises the relayed address in place of the rendezvous' bare name (`own_addresses`).
//!   A peer dialing it there gets a relayed connection, which DCUtR then upgrades to a direct
//!   one through both NATs (counted in `wasmesh_hole_punches_total`). Where punching cannot
//!   work (symmetric NATs), the relayed connection stays, within the relay's bounds, and is
//!   dialed again when they cut it.
//! - **Paths.** Which of a peer's connections are relayed ([`ControlPaths`]), for `/v1/peers`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, dcutr, relay};

use super::EventLoop;
use crate::address_scope;
use crate::core::peers::data_path::is_circuit;
use crate::metrics::Ended;
use crate::own_addresses::Reachability;
use crate::rejection::Rejection;

/// Relays a node behind a NAT keeps a reservation on, at most.
pub(crate) const MAX_RESERVATIONS: usize = 2;

/// How long after a reservation failed or ended the same relay is asked again.
const RESERVE_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// Reservations a relay holds, at most (each is a few hundred bytes of state).
pub(crate) const MAX_RELAY_RESERVATIONS: usize = 64;
/// Circuits a relay carries at once, at most.
pub(crate) const MAX_RELAY_CIRCUITS: usize = 32;
/// Bytes one circuit carries, at most, each way: enough for the hole punch and for control
/// traffic (statuses, syncs) while a direct connection is not possible.
pub(crate) const MAX_CIRCUIT_BYTES: u64 = 1 << 20;
/// How long one circuit lives, at most; the peers dial again if they still need it.
pub(crate) const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(120);

/// The relay server's bounds.
pub(crate) fn server_config() -> relay::Config {
    relay::Config {
        max_reservations: MAX_RELAY_RESERVATIONS,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(10 * 60),
        max_circuits: MAX_RELAY_CIRCUITS,
        max_circuits_per_peer: 4,
        max_circuit_duration: MAX_CIRCUIT_DURATION,
        max_circuit_bytes: MAX_CIRCUIT_BYTES,
        ..relay::Config::default()
    }
}

/// Whether this node serves as a relay, and what it told the swarm, as of a version of its
/// addresses.
#[derive(Debug)]
pub(crate) struct RelayService {
    version: u64,
    serve: bool,
    external: Vec<Multiaddr>,
}

/// The reservations this node holds or asked for, by relay.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    held: HashMap<PeerId, ListenerId>,
    /// Relays whose last reservation failed or ended, and when they may be asked again.
    resting: HashMap<PeerId, Instant>,
}

impl Reservations {
    /// Whether a reservation on `relay` is wanted: there is room, none is held there, and it
    /// is not resting after a failure.
    pub(crate) fn wanted(&mut self, relay: PeerId, now: Instant) -> bool {
        if self.held.contains_key(&relay) || self.held.len() >= MAX_RESERVATIONS {
            return false;
        }
        if self.resting.get(&relay).is_some_and(|until| *until > now) {
            return false;
        }
        self.resting.remove(&relay);
        true
    }

    /// The listener for a reservation on `relay` started.
    pub(crate) fn asked(&mut self, relay: PeerId, listener: ListenerId) {
        self.held.insert(relay, listener);
    }

    /// `listener` closed (its reservation failed, or its relay went away): the relay it was
    /// on, if it was one, rests before it is asked again.
    pub(crate) fn closed(&mut self, listener: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self
            .held
            .iter()
            .find_map(|(relay, id)| (*id == listener).then_some(*relay))?;
        self.held.remove(&relay);
        self.resting.retain(|_, until| *until > now);
        self.resting.insert(relay, now + RESERVE_AGAIN_AFTER);
        Some(relay)
    }
}

/// Open control connections per peer, direct and relayed.
#[derive(Debug, Default)]
pub(crate) struct ControlPaths {
    open: HashMap<PeerId, HashMap<ConnectionId, bool>>,
}

impl ControlPaths {
    /// A connection to `peer` opened (`relayed`: through a relay's circuit).
    pub(crate) fn opened(&mut self, peer: PeerId, connection: ConnectionId, relayed: bool) {
        self.open
            .entry(peer)
            .or_default()
            .insert(connection, relayed);
    }

    /// A connection to `peer` closed.
    pub(crate) fn closed(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(connections) = self.open.get_mut(&peer) {
            connections.remove(&connection);
            if connections.is_empty() {
                self.open.remove(&peer);
            }
        }
    }

    /// Whether every open connection to `peer` goes through a relay (none open: false).
    pub(crate) fn relayed_only(&self, peer: &PeerId) -> bool {
        self.open
            .get(peer)
            .is_some_and(|connections| connections.values().all(|relayed| *relayed))
    }
}

impl EventLoop {
    /// Serves as a relay while this node's address is public or announced, not otherwise;
    /// its public addresses are the swarm's external ones (a relay hands them out with each
    /// reservation, and DCUtR and identify tell peers of them).
    pub(super) fn serve_as_relay_if_public(&mut self) {
        let (own, version) = self.owner.addresses();
        if self
            .relay_serving
            .as_ref()
            .is_some_and(|s| s.version == version)
        {
            return;
        }
        let reachability = own.reachability();
        let public = matches!(reachability, Reachability::Public | Reachability::Announced);
        let serve = self.owner.policy().relay.unwrap_or(public);
        // What a reservation hands out: the public addresses (announced ones are the swarm's
        // already, `daemon::listeners`), or, on a LAN whose operator turned relaying on, the
        // private ones.
        let external: Vec<Multiaddr> = match reachability {
            Reachability::Announced => Vec::new(),
            _ if !serve => Vec::new(),
            _ => own
                .p2p()
                .into_iter()
                .filter(|a| !is_circuit(a))
                .filter(|a| !public || address_scope::is_global(a))
                .collect(),
        };
        let before = self.relay_serving.replace(RelayService {
            version,
            serve,
            external: external.clone(),
        });
        let (served, old) = before.map_or((None, Vec::new()), |b| (Some(b.serve), b.external));
        for addr in old.iter().filter(|a| !external.contains(a)) {
            self.swarm.remove_external_address(addr);
        }
        for addr in external.into_iter().filter(|a| !old.contains(a)) {
            self.swarm.add_external_address(addr);
        }
        if served == Some(serve) {
            return;
        }
        let status = if serve {
            relay::Status::Enable
        } else {
            relay::Status::Disable
        };
        tracing::info!(serve, "serving as a relay for peers behind NATs");
        self.swarm
            .behaviour_mut()
            .relay
            .inner()
            .set_status(Some(status));
    }

    /// The data plane stands on `rendezvous` (peers cannot dial this node): the control plane
    /// keeps a reservation there too, if it has room for one, at the relay's best advertised
    /// address.
    pub(super) fn reserve_on(&mut self, rendezvous: PeerId) {
        if !self.swarm.is_connected(&rendezvous)
            || !self.reservations.wanted(rendezvous, Instant::now())
        {
            return;
        }
        let Some(relay_addr) = self
            .owner
            .state()
            .peers
            .get(&rendezvous)
            .and_then(|info| info.addrs.iter().find(|a| !is_circuit(a)).cloned())
        else {
            return;
        };
        let mut addr = relay_addr;
        addr.push(libp2p::multiaddr::Protocol::P2p(rendezvous));
        addr.push(libp2p::multiaddr::Protocol::P2pCircuit);
        match self.swarm.listen_on(addr) {
            Ok(listener) => self.reservations.asked(rendezvous, listener),
            Err(error) => tracing::debug!(%rendezvous, %error, "cannot ask for a reservation"),
        }
    }

    /// A listener closed: if it held a reservation, the relay rests before it is asked again.
    pub(super) fn on_listener_closed(&mut self, listener: ListenerId, reason: &str) {
        if let Some(relay) = self.reservations.closed(listener, Instant::now()) {
            self.count_relay("reservation_lost");
            tracing::info!(%relay, reason, "relay reservation ended");
        }
    }

    /// What the relay this node serves did.
    pub(super) fn on_relay_event(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.count_relay("reservation_accepted");
                tracing::debug!(peer = %src_peer_id, "relay reservation accepted");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                self.count_relay("circuit_accepted");
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relay circuit opened");
            }
            relay::Event::CircuitClosed { error, .. } => {
                self.count_relay("circuit_closed");
                if let Some(error) = error {
                    tracing::debug!(%error, "relay circuit cut");
                }
            }
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status,
            } => self.refuse_relaying(src_peer_id, "reservation", status),
            relay::Event::CircuitReqDenied {
                src_peer_id,
                status,
                ..
            } => self.refuse_relaying(src_peer_id, "circuit", status),
            relay::Event::ReservationTimedOut { .. } => self.count_relay("reservation_expired"),
            _ => {}
        }
    }

    /// Counts a refused reservation or circuit, and logs it (at most a few a second per peer).
    fn refuse_relaying(&mut self, peer: PeerId, what: &'static str, status: impl std::fmt::Debug) {
        let reason = Rejection::ControlRelayRefused;
        self.metrics.count_rejection(reason);
        if let Some(suppressed) = self.refusals.logged(&peer) {
            tracing::info!(%peer, what, ?status, reason = reason.as_str(), suppressed, "relay request refused");
        }
    }

    /// What this node's own reservations and relayed dials did.
    pub(super) fn on_relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    self.count_relay("reserved");
                    tracing::info!(relay = %relay_peer_id, "reserved a relayed address");
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "dialed a peer through a relay");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "a peer dialed this node through a relay");
            }
        }
    }

    /// A relayed connection was (or was not) upgraded to a direct one.
    pub(super) fn on_dcutr_event(&mut self, event: dcutr::Event) {
        let peer = event.remote_peer_id;
        let outcome = match event.result {
            Ok(_) => {
                tracing::info!(%peer, "punched a direct control connection");
                "direct"
            }
            Err(error) => {
                tracing::info!(%peer, %error, "no direct control connection; staying relayed");
                "failed"
            }
        };
        self.metrics
            .hole_punches
            .get_or_create(&Ended { outcome })
            .inc();
    }

    /// A control connection to `peer` opened or closed: whether the peer is reached through a
    /// relay only is noted in its entry (`/v1/peers`).
    pub(super) fn note_control_path(&mut self, peer: PeerId) {
        let relayed = self.paths.relayed_only(&peer);
        if let Some(info) = self.owner.state_mut().peers.get_mut(&peer) {
            info.relayed = relayed;
        }
    }

    fn count_relay(&self, outcome: &'static str) {
        self.metrics
            .control_relay
            .get_or_create(&Ended { outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reservation_rests_before_the_relay_is_asked_again() {
        let mut reservations = Reservations::default();
        let relay = PeerId::random();
        let now = Instant::now();
        assert!(reservations.wanted(relay, now));
        let listener = ListenerId::next();
        reservations.asked(relay, listener);
        assert!(!reservations.wanted(relay, now), "held already");
        assert_eq!(reservations.closed(listener, now), Some(relay));
        assert!(!reservations.wanted(relay, now), "resting");
        assert!(reservations.wanted(relay, now + RESERVE_AGAIN_AFTER));
    }

    #[test]
    fn reservations_stop_at_the_cap() {
        let mut reservations = Reservations::default();
        let now = Instant::now();
        for _ in 0..MAX_RESERVATIONS {
            let relay = PeerId::random();
            assert!(reservations.wanted(relay, now));
            reservations.asked(relay, ListenerId::next());
        }
        assert!(!reservations.wanted(PeerId::random(), now));
    }

    #[test]
    fn a_peer_is_relayed_only_while_no_direct_connection_is_open() {
        let mut paths = ControlPaths::default();
        let peer = PeerId::random();
        let (relayed, direct) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert!(!paths.relayed_only(&peer));
        paths.opened(peer, relayed, true);
        assert!(paths.relayed_only(&peer));
        paths.opened(peer, direct, false);
        assert!(!paths.relayed_only(&peer), "punched");
        paths.closed(peer, relayed);
        paths.closed(peer, direct);
        assert!(!paths.relayed_only(&peer));
    }
}
