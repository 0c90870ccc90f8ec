//! Swarm events, turned into inputs of the node's state: connections opening and closing,
//! dials failing, pings, gossip, sync requests and answers, identify, and refused inbound
//! connections. Statuses are [`super::statuses`]', holder traffic [`super::holders`]'.

use std::time::Instant;

use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, Message};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{PeerId, identify, ping};
use wasmesh_protocol::wire::{MANIFEST_TOPIC, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use wasmesh_protocol::{ModuleKey, SignedManifest};

use super::EventLoop;
use super::behaviour::BehaviourEvent;
use super::command::NextPage;
use crate::core::manifests::GossipVerdict;
use crate::core::state::Input;
use crate::rejection::Rejection;

/// A sync request or answer, as the swarm delivers it.
type SyncEvent = request_response::Event<SyncRequest, SyncResponse>;

/// Gossipsub's name for a verdict.
pub(super) fn acceptance(verdict: GossipVerdict) -> MessageAcceptance {
    match verdict {
        GossipVerdict::Accept => MessageAcceptance::Accept,
        GossipVerdict::Ignore => MessageAcceptance::Ignore,
        GossipVerdict::Reject => MessageAcceptance::Reject,
    }
}

impl EventLoop {
    /// Turns one swarm event into inputs of the node.
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.owner.change_addresses(|own| own.add_listen(address));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for address in addresses {
                    self.owner
                        .change_addresses(|own| own.remove_listen(&address));
                }
                let reason = match &reason {
                    Ok(()) => "closed".to_string(),
                    Err(error) => error.to_string(),
                };
                self.on_listener_closed(listener_id, &reason);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "no longer listening");
                self.owner
                    .change_addresses(|own| own.remove_listen(&address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => self.on_connection(
                peer_id,
                connection_id,
                num_established.get() == 1,
                &endpoint,
            ),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.paths.closed(peer_id, connection_id);
                if num_established == 0 {
                    let effects = self
                        .owner
                        .handle(Input::ConnectionClosed { peer: peer_id }, Instant::now());
                    self.apply(effects);
                }
                self.note_control_path(peer_id);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                ..
            } => {
                self.metrics.count_rejection(Rejection::InboundPerAddress);
                tracing::debug!(addr = %send_back_addr, %cause, "refused an inbound connection");
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                self.owner.take_kept_dial(&connection_id);
                let Some(peer_id) = peer_id else {
                    return;
                };
                tracing::debug!(%peer_id, %error, "dial failed; trying again later");
                self.owner
                    .handle(Input::DialFailed { peer: peer_id }, Instant::now());
            }
            _ => {}
        }
    }

    /// Turns one event of the composed behaviour into inputs of the node.
    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Status(event) => self.on_status_event(event),
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::Holders(event) => self.on_holders_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, info);
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                let rtt_us = rtt.as_micros() as u64;
                self.owner
                    .handle(Input::Pinged { peer, rtt_us }, Instant::now());
            }
            BehaviourEvent::Relay(event) => self.on_relay_event(event),
            BehaviourEvent::RelayClient(event) => self.on_relay_client_event(event),
            BehaviourEvent::Dcutr(event) => self.on_dcutr_event(event),
            _ => {}
        }
    }

    fn on_connection(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        first: bool,
        endpoint: &ConnectedPoint,
    ) {
        let dialed = match endpoint {
            ConnectedPoint::Dialer { address, .. } => Some(address),
            ConnectedPoint::Listener { .. } => None,
        };
        self.paths.opened(peer, connection, endpoint.is_relayed());
        let input = Input::ConnectionOpened {
            peer,
            first,
            dialed,
        };
        let effects = self.owner.handle(input, Instant::now());
        self.apply(effects);
        self.note_control_path(peer);
        if self.owner.take_kept_dial(&connection) {
            self.keep_as_neighbour(peer);
        }
    }

    /// A gossiped message: a manifest goes to be screened, anything else is refused.
    fn on_gossip(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let verdict = self.take_gossip(propagation_source, message_id.clone(), message);
        if let Some(verdict) = verdict {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance(verdict),
                );
        }
        self.dial_after_news();
    }

    /// The verdict on a gossiped message now, or `None` when it is being screened (the verdict
    /// follows with the result).
    fn take_gossip(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) -> Option<GossipVerdict> {
        let Some(source) = message.source else {
            self.metrics.count_rejection(Rejection::GossipUnsigned);
            return Some(GossipVerdict::Reject);
        };
        if message.topic != IdentTopic::new(MANIFEST_TOPIC).hash() {
            self.metrics.count_rejection(Rejection::GossipUnknownTopic);
            return Some(GossipVerdict::Reject);
        }
        match SignedManifest::decode(&message.data) {
            Err(error) => {
                self.metrics
                    .count_rejection(Rejection::GossipMalformedManifest);
                if let Some(suppressed) = self.refusals.logged(&source) {
                    tracing::info!(%source, %error, suppressed, "malformed manifest gossip");
                }
                Some(GossipVerdict::Reject)
            }
            Ok(signed) => {
                let screening =
                    self.verifier
                        .gossiped(signed, source, message_id, propagation_source);
                (!screening).then_some(GossipVerdict::Ignore)
            }
        }
    }

    fn on_sync_event(&mut self, event: SyncEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => {
                    let response = if self.admit(peer, &request.membership) {
                        self.owner.sync_response(&request, &peer)
                    } else {
                        SyncResponse {
                            manifests: Vec::new(),
                            membership: self.owner.policy().membership_bytes(),
                            more: false,
                            peers: Vec::new(),
                        }
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                Message::Response { response, .. } => self.on_sync_answer(peer, response),
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.metrics.count_rejection(Rejection::SyncInbound);
                tracing::debug!(%peer, %error, "sync request failed");
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                self.metrics.count_rejection(Rejection::SyncOutbound);
                tracing::debug!(%peer, %error, "sync failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A page of a peer's manifests and its introductions: the peers are taken, the manifests
    /// screened, and the next page asked for once they are filed.
    fn on_sync_answer(&mut self, peer: PeerId, response: SyncResponse) {
        if !self.admit(peer, &response.membership) {
            return;
        }
        let connected = self.swarm.connected_peers().count();
        let effects = self.owner.on_introductions(&response.peers, connected);
        self.apply(effects);
        let last: Option<ModuleKey> = response.manifests.last().map(|m| m.manifest.key());
        let next_page = last
            .filter(|_| response.more)
            .map(|after| NextPage { peer, after });
        if !response.manifests.is_empty() {
            self.verifier.synced(response.manifests, peer, next_page);
        }
    }

    /// A peer's identify: one of another protocol version is disconnected; where it saw this
    /// node's connection come from is noted (`own_addresses`); in an open mesh, its listen
    /// addresses let Kademlia route through it (in a private mesh, members'
    /// addresses come from their statuses instead, once they are admitted).
    fn on_identify(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != PROTOCOL_VERSION {
            self.metrics.count_rejection(Rejection::PeerOtherVersion);
            tracing::info!(%peer, version = %info.protocol_version, ours = PROTOCOL_VERSION, "disconnecting a peer of another protocol version");
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        let observed = info.observed_addr;
        self.owner
            .change_addresses(|own| own.observed(peer, observed));
        if self.owner.policy().is_private() {
            return;
        }
        let allow_private_addrs = self.owner.policy().allow_private_addrs;
        for addr in info.listen_addrs {
            if allow_private_addrs || crate::address_scope::is_global(&addr) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .inner()
                    .add_address(&peer, addr);
            }
        }
    }
}
