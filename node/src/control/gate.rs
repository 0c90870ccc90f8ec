//! Protocols closed to a peer until it has proved membership of a private mesh.
//!
//! libp2p answers a protocol on every connection that negotiates it: Kademlia, for one, answers
//! `FIND_NODE` with the peers in its table, their ids and addresses. In a private mesh nothing
//! but the admission exchange may be answered before the peer has proved membership
//! (`core::admission`). [`Gated`] wraps a behaviour so that each of its connections refuses the
//! protocol's inbound streams (as if it were not spoken) until the control task opens the gate
//! for the peer, and closes it again when the membership ends. In an open mesh every gate is
//! open from the start.
//!
//! The wrapper also keeps the behaviour to the node's address rule (`crate::address_scope`):
//! the addresses it offers for a dial (Kademlia's, learned from other peers' answers) are
//! filtered, so no peer can steer this node into sending packets to its own host or LAN.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};

use either::Either;
use futures::future;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{
    ConnectionEvent, ConnectionHandler, ConnectionHandlerEvent, FullyNegotiatedInbound,
    ListenUpgradeError, SendWrapper, SubstreamProtocol,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

/// Opens or closes a connection's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Open,
    Close,
}

/// A behaviour whose inbound streams a peer may open only once its gate is open.
pub(crate) struct Gated<B> {
    inner: B,
    /// Whether gates start closed (a private mesh).
    closed_at_first: bool,
    /// Peers whose gate is open (only tracked when gates start closed).
    open: HashSet<PeerId>,
    /// The connections of each peer, to tell their handlers.
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Gate changes not yet handed to the swarm.
    notices: VecDeque<(PeerId, ConnectionId, Gate)>,
    /// Whether loopback, private and link-local addresses may be dialed.
    allow_private_addrs: bool,
}

impl<B> Gated<B> {
    /// Wraps `inner`; its gates start closed when `private`, and it dials private addresses
    /// only if `allow_private_addrs`.
    pub(crate) fn new(inner: B, private: bool, allow_private_addrs: bool) -> Self {
        Self {
            inner,
            closed_at_first: private,
            open: HashSet::new(),
            connections: HashMap::new(),
            notices: VecDeque::new(),
            allow_private_addrs,
        }
    }

    /// The wrapped behaviour.
    pub(crate) fn inner(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Lets `peer` open the protocol's streams (it proved membership).
    pub(crate) fn open(&mut self, peer: PeerId) {
        if self.closed_at_first && self.open.insert(peer) {
            self.notify(peer, Gate::Open);
        }
    }

    /// Refuses `peer` the protocol's streams again (its membership ended).
    pub(crate) fn close(&mut self, peer: &PeerId) {
        if self.open.remove(peer) {
            self.notify(*peer, Gate::Close);
        }
    }

    /// Whether `peer` may open the protocol's streams.
    pub(crate) fn is_open(&self, peer: &PeerId) -> bool {
        !self.closed_at_first || self.open.contains(peer)
    }

    fn notify(&mut self, peer: PeerId, gate: Gate) {
        for connection in self.connections.get(&peer).into_iter().flatten() {
            self.notices.push_back((peer, *connection, gate));
        }
    }

    fn wrap<H>(&mut self, peer: PeerId, connection: ConnectionId, inner: H) -> GatedHandler<H> {
        self.connections.entry(peer).or_default().insert(connection);
        GatedHandler {
            inner,
            open: self.is_open(&peer),
        }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Gated<B> {
    type ConnectionHandler = GatedHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(self.wrap(peer, connection_id, inner))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let mut offered = self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )?;
        if !self.allow_private_addrs {
            offered.retain(crate::address_scope::is_global);
        }
        Ok(offered)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(self.wrap(peer, connection_id, inner))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = &event
            && let Some(connections) = self.connections.get_mut(&closed.peer_id)
        {
            connections.remove(&closed.connection_id);
            if connections.is_empty() {
                self.connections.remove(&closed.peer_id);
                self.open.remove(&closed.peer_id);
            }
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, connection, gate)) = self.notices.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(connection),
                event: Either::Right(gate),
            });
        }
        self.inner.poll(cx).map(|event| event.map_in(Either::Left))
    }
}

/// A connection handler that refuses its protocol's inbound streams while its gate is closed.
pub(crate) struct GatedHandler<H> {
    inner: H,
    open: bool,
}

impl<H: ConnectionHandler> ConnectionHandler for GatedHandler<H> {
    type FromBehaviour = Either<H::FromBehaviour, Gate>;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = Either<SendWrapper<H::InboundProtocol>, SendWrapper<DeniedUpgrade>>;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = Either<H::InboundOpenInfo, ()>;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        if self.open {
            self.inner
                .listen_protocol()
                .map_upgrade(|upgrade| Either::Left(SendWrapper(upgrade)))
                .map_info(Either::Left)
        } else {
            SubstreamProtocol::new(Either::Right(SendWrapper(DeniedUpgrade)), Either::Right(()))
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            Either::Left(event) => self.inner.on_behaviour_event(event),
            Either::Right(gate) => self.open = gate == Gate::Open,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        let event = match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, info }) => {
                match (protocol, info) {
                    (future::Either::Left(protocol), Either::Left(info)) => {
                        ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                            protocol,
                            info,
                        })
                    }
                    // A denied upgrade never completes.
                    _ => return,
                }
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error }) => {
                match (info, error) {
                    (Either::Left(info), Either::Left(error)) => {
                        ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error })
                    }
                    // The refusal of a closed gate: nothing for the inner handler.
                    _ => return,
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(outbound) => {
                ConnectionEvent::FullyNegotiatedOutbound(outbound)
            }
            ConnectionEvent::DialUpgradeError(error) => ConnectionEvent::DialUpgradeError(error),
            ConnectionEvent::AddressChange(change) => ConnectionEvent::AddressChange(change),
            ConnectionEvent::LocalProtocolsChange(change) => {
                ConnectionEvent::LocalProtocolsChange(change)
            }
            ConnectionEvent::RemoteProtocolsChange(change) => {
                ConnectionEvent::RemoteProtocolsChange(change)
            }
            _ => return,
        };
        self.inner.on_connection_event(event);
    }
}
