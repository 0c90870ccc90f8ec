//! Inbound libp2p connections per source address: at most a configured number from one IP
//! address at a time, refused before their handshake.
//!
//! Keys cost nothing, addresses do: a flood of fresh identities from one host cannot take more
//! than this many of the node's connections, and so cannot crowd honest peers out of its peer
//! table. Dials this node makes are not counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{held} inbound connections from {ip} already")]
pub(crate) struct TooManyFromAddress {
    ip: IpAddr,
    held: usize,
}

/// Counts inbound connections per source IP address and refuses those beyond the limit.
#[derive(Debug)]
pub(crate) struct InboundPerAddress {
    max: usize,
    held: HashMap<IpAddr, usize>,
    connections: HashMap<ConnectionId, IpAddr>,
}

impl InboundPerAddress {
    /// At most `max` inbound connections from one address.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            held: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    fn release(&mut self, connection: &ConnectionId) {
        let Some(ip) = self.connections.remove(connection) else {
            return;
        };
        if let Some(held) = self.held.get_mut(&ip) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&ip);
            }
        }
    }
}

/// The IP address of a multiaddr, if it starts with one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

impl NetworkBehaviour for InboundPerAddress {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(());
        };
        let held = self.held.entry(ip).or_default();
        if *held >= self.max {
            return Err(ConnectionDenied::new(TooManyFromAddress {
                ip,
                held: *held,
            }));
        }
        *held += 1;
        self.connections.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(closed) => self.release(&closed.connection_id),
            FromSwarm::ListenFailure(failure) => self.release(&failure.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_connections_from_one_address_are_capped_and_places_come_back() {
        let mut limit = InboundPerAddress::new(2);
        let local: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let from =
            |ip: &str| -> Multiaddr { format!("/ip4/{ip}/udp/5000/quic-v1").parse().unwrap() };
        let (a, b, c) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        assert!(
            limit
                .handle_pending_inbound_connection(a, &local, &from("10.0.0.1"))
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(b, &local, &from("10.0.0.1"))
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(c, &local, &from("10.0.0.1"))
                .is_err()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(c, &local, &from("10.0.0.2"))
                .is_ok()
        );
        limit.release(&a);
        let d = ConnectionId::new_unchecked(4);
        assert!(
            limit
                .handle_pending_inbound_connection(d, &local, &from("10.0.0.1"))
                .is_ok()
        );
    }
}
