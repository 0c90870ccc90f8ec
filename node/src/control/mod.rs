//! The control plane: one task owns the libp2p swarm (QUIC + TCP, gossipsub, identify, ping,
//! request-response sync and status) and the node's state (`owner`). Swarm events and the commands of
//! the rest of the node ([`handle`]) become inputs of that state; what it decides becomes
//! actions on the swarm; after each, the task publishes the node's view (`crate::view`).
//!
//! Gossipsub carries manifests only, and validates explicitly: every message is decoded with its
//! size limit and checked by the node before it is reported `Accept` (forwarded) or `Reject`
//! (dropped, and the sender's score lowered). Statuses go to connected peers only (`status`),
//! never relayed. A peer whose identify names another protocol version is disconnected, counted
//! and logged. When a connection to a new peer opens, both sides send a sync request, so a
//! node that joins late or returns after a partition gets every manifest it lacks at once. In a
//! private mesh the same exchange carries membership certificates: a peer stays blacklisted in
//! gossipsub (no messages to or from it) until its certificate is checked, and is disconnected
//! if it fails (see `admission`). Peers are discovered through connections and neighbours'
//! introductions (`core::peers`); the decisions about them are the peer table's.

mod address_limit;
mod behaviour;
mod codec;
pub mod command;
mod gate;
pub mod handle;
mod holder_work;
mod holders;
mod leave;
pub(crate) mod owner;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm, identify, ping};
use tokio::sync::{mpsc, watch};
use wasmesh_protocol::wire::{
    MANIFEST_TOPIC, PROTOCOL_VERSION, StatusAck, StatusMessage, SyncResponse,
};
use wasmesh_protocol::{DecodeError, SignedManifest};

pub(crate) use self::behaviour::{Behaviour, BehaviourEvent, SwarmSettings, build_swarm};
pub use self::behaviour::{HEARTBEAT, PING_EVERY};
pub use self::command::ControlCommand;
use self::owner::Owner;
pub use crate::core::admission::ADMISSION_TIMEOUT;
pub use crate::core::peers::MAX_DIALED_PEERS;
use crate::core::peers::REDIAL_AFTER;
pub use crate::core::peers::exchange::PEER_EXCHANGE_EVERY;
use crate::core::peers::intake::StatusRefusal;
use crate::core::state::{Effect, Input};
use crate::node::{NodeInner, Offered, Origin};

/// Runs the swarm until shutdown.
pub(crate) async fn run(
    mut swarm: Swarm<Behaviour>,
    node: Arc<NodeInner>,
    mut owner: Owner,
    mut commands: mpsc::Receiver<ControlCommand>,
    mut shutdown: watch::Receiver<bool>,
) {
    let manifests = IdentTopic::new(MANIFEST_TOPIC);
    if let Err(error) = swarm.behaviour_mut().gossipsub.subscribe(&manifests) {
        tracing::error!(%error, "cannot subscribe to gossip");
    }
    // Peers lost to a partition or a restart are dialed again even when no gossip arrives.
    let mut redial = tokio::time::interval(REDIAL_AFTER);
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = redial.tick() => {
                let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
                let wall_ms = crate::clock::now_ms();
                let effects = owner.handle(Input::Tick { connected: &connected, wall_ms }, Instant::now());
                apply(&mut swarm, &node, &mut owner, effects);
                note_scores(&swarm, &mut owner);
                let ready = owner.own_status().and_then(|s| s.ready.clone()).unwrap_or_default();
                holders::tick(&mut swarm, &mut owner, &ready);
            }
            command = commands.recv() => match command {
                None => return,
                Some(ControlCommand::PublishManifest(bytes)) => {
                    if let Err(error) = swarm.behaviour_mut().gossipsub.publish(manifests.clone(), bytes) {
                        tracing::debug!(%error, "manifest not gossiped now; peers get it by sync");
                    }
                }
                Some(ControlCommand::PublishStatus(status)) => {
                    owner.set_own_status(*status);
                    for peer in owner.state().peers.neighbours() {
                        send_status(&mut swarm, &node, &mut owner, peer);
                    }
                }
                Some(ControlCommand::Leave { status, done }) => {
                    owner.set_own_status(*status);
                    let sent = owner
                        .state()
                        .peers
                        .neighbours()
                        .into_iter()
                        .filter_map(|peer| send_status(&mut swarm, &node, &mut owner, peer))
                        .collect();
                    owner.await_leave_acks(sent, done);
                }
                Some(ControlCommand::FindHolders { blob, done }) => {
                    holders::find(&mut swarm, &node, &mut owner, blob, done);
                }
                Some(ControlCommand::Probe(peer)) => {
                    let effects = owner.handle(Input::ProbeWanted { peer }, Instant::now());
                    apply(&mut swarm, &node, &mut owner, effects);
                }
                Some(ControlCommand::Offer { signed, origin, reply }) => {
                    owner.offer_and_reply(&node, *signed, origin, reply);
                }
                Some(ControlCommand::Ingested { key, blob, state, done }) => {
                    owner.ingested(&key, &blob, state, done);
                }
                Some(ControlCommand::ForwardAnswered(answer)) => {
                    owner.handle(Input::ForwardAnswered(answer), Instant::now());
                }
            },
            event = swarm.select_next_some() => handle_event(&mut swarm, &node, &mut owner, event),
        }
        owner.publish(&node);
    }
}

/// Turns one swarm event into inputs of the node.
fn handle_event(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    event: SwarmEvent<BehaviourEvent>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, "listening");
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            num_established,
            endpoint,
            ..
        } => {
            let first = num_established.get() == 1;
            let dialed = match &endpoint {
                libp2p::core::ConnectedPoint::Dialer { address, .. } => Some(address),
                libp2p::core::ConnectedPoint::Listener { .. } => None,
            };
            let effects = owner.handle(
                Input::ConnectionOpened {
                    peer: peer_id,
                    first,
                    dialed,
                },
                Instant::now(),
            );
            apply(swarm, node, owner, effects);
            if owner.take_kept_dial(&connection_id)
                && owner.state_mut().peers.make_neighbour(&peer_id)
            {
                send_status(swarm, node, owner, peer_id);
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            let effects = owner.handle(Input::ConnectionClosed { peer: peer_id }, Instant::now());
            apply(swarm, node, owner, effects);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        })) => {
            let acceptance = validate(node, owner, &message);
            swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &propagation_source, acceptance);
            let connected = swarm.connected_peers().count();
            let effects = owner.handle(Input::MaybeDial { connected }, Instant::now());
            apply(swarm, node, owner, effects);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            peer,
            message,
            ..
        })) => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let response = if admit(swarm, node, owner, peer, &request.membership) {
                    owner.sync_response(node, &request, &peer)
                } else {
                    SyncResponse {
                        manifests: Vec::new(),
                        membership: node.membership_bytes(),
                        more: false,
                        peers: Vec::new(),
                    }
                };
                let _ = swarm.behaviour_mut().sync.send_response(channel, response);
            }
            request_response::Message::Response { response, .. } => {
                if admit(swarm, node, owner, peer, &response.membership) {
                    owner.on_introductions(node, &response.peers);
                    let connected = swarm.connected_peers().count();
                    let effects = owner.handle(Input::MaybeDial { connected }, Instant::now());
                    apply(swarm, node, owner, effects);
                    let last = response.manifests.last().map(|m| m.manifest.key());
                    for signed in response.manifests {
                        let _ = owner.offer_manifest(node, signed, Origin::Sync(peer));
                    }
                    // The next page, after the last key of this one.
                    if response.more
                        && let Some(last) = last
                    {
                        swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&peer, node.sync_request(Some(last)));
                    }
                }
            }
        },
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::InboundFailure {
            peer,
            error,
            ..
        })) => {
            node.metrics.count_rejection("sync_inbound");
            tracing::debug!(%peer, %error, "sync request failed");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
            peer,
            error,
            ..
        })) => {
            node.metrics.count_rejection("sync_outbound");
            tracing::debug!(%peer, %error, "sync failed");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Status(event)) => {
            on_status_event(swarm, node, owner, event);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
            holders::on_kad_event(swarm, node, owner, event);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Holders(event)) => {
            holders::on_holders_event(swarm, node, owner, event);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if info.protocol_version == PROTOCOL_VERSION && !node.admission.is_private() => {
            // Its listen addresses let Kademlia route through it; in a private mesh, members'
            // addresses come from their statuses instead, once they are admitted.
            for addr in info.listen_addrs {
                if node.allow_private_addrs || crate::address_scope::is_global(&addr) {
                    swarm
                        .behaviour_mut()
                        .kad
                        .inner()
                        .add_address(&peer_id, addr);
                }
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if info.protocol_version != PROTOCOL_VERSION => {
            node.metrics.count_rejection("peer_other_version");
            tracing::info!(peer = %peer_id, version = %info.protocol_version, ours = PROTOCOL_VERSION, "disconnecting a peer of another protocol version");
            let _ = swarm.disconnect_peer_id(peer_id);
        }
        SwarmEvent::IncomingConnectionError {
            send_back_addr,
            error: libp2p::swarm::ListenError::Denied { cause },
            ..
        } => {
            node.metrics.count_rejection("inbound_per_address");
            tracing::debug!(addr = %send_back_addr, %cause, "refused an inbound connection");
        }
        SwarmEvent::OutgoingConnectionError {
            connection_id,
            peer_id,
            error,
        } => {
            owner.take_kept_dial(&connection_id);
            let Some(peer_id) = peer_id else {
                return;
            };
            tracing::debug!(%peer_id, %error, "dial failed; trying again later");
            owner.handle(Input::DialFailed { peer: peer_id }, Instant::now());
        }
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
            peer,
            result: Ok(rtt),
            ..
        })) => {
            let rtt_us = rtt.as_micros() as u64;
            owner.handle(Input::Pinged { peer, rtt_us }, Instant::now());
        }
        _ => {}
    }
}

/// Checks a gossiped message.
fn validate(
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    message: &gossipsub::Message,
) -> MessageAcceptance {
    let Some(source) = message.source else {
        node.metrics.count_rejection("gossip_unsigned");
        return MessageAcceptance::Reject;
    };
    if message.topic == IdentTopic::new(MANIFEST_TOPIC).hash() {
        match SignedManifest::decode(&message.data) {
            Err(error) => {
                node.metrics.count_rejection("gossip_malformed_manifest");
                if let Some(suppressed) = node.peer_refusal_logged(&source) {
                    tracing::info!(%source, %error, suppressed, "malformed manifest gossip");
                }
                MessageAcceptance::Reject
            }
            Ok(signed) => match owner.offer_manifest(node, signed, Origin::Gossip(source)) {
                Ok(Offered::Accepted) => MessageAcceptance::Accept,
                Ok(Offered::AlreadyHeld) => MessageAcceptance::Ignore,
                // Only what no honest peer would relay costs the sender score: relays run the same
                // checks, so a bad signature or a malformed manifest is the sender's own. Trust
                // lists, scopes, name owners and held versions differ between honest nodes, so a
                // manifest refused for those is dropped quietly.
                Err(refusal) if refusal.is_honest_disagreement() => MessageAcceptance::Ignore,
                Err(_) => MessageAcceptance::Reject,
            },
        }
    } else {
        node.metrics.count_rejection("gossip_unknown_topic");
        MessageAcceptance::Reject
    }
}

/// Sends this node's newest status to `peer` (see `Owner::status_for`): connected peers only,
/// and in a private mesh only admitted ones. Returns the request, if one was sent.
fn send_status(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    owner: &mut Owner,
    peer: PeerId,
) -> Option<request_response::OutboundRequestId> {
    if node.admission.is_private() && !owner.state().admits(&peer) {
        return None;
    }
    let status = owner.status_for(&peer)?;
    Some(swarm.behaviour_mut().status.send_request(&peer, Ok(status)))
}

/// A status from a peer, the answer to one of this node's, or a failure.
fn on_status_event(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    event: request_response::Event<Result<StatusMessage, DecodeError>, StatusAck>,
) {
    match event {
        // A status that does not decode (counted by the codec): no honest node sends one.
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request: Err(error),
                    ..
                },
            ..
        } => {
            tracing::info!(%peer, %error, "malformed status; disconnecting");
            let _ = swarm.disconnect_peer_id(peer);
        }
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request: Ok(request),
                    channel,
                    ..
                },
            ..
        } => {
            if node.admission.is_private() && !owner.state().admits(&peer) {
                node.metrics.count_rejection("status_not_admitted");
                tracing::debug!(%peer, "status from a peer not admitted yet");
                return;
            }
            let leaving = request.leaving;
            match owner.on_status(node, peer, request) {
                Ok(follow_up) => {
                    if leaving {
                        // Neither a provider nor a directory node any more: lookups skip it.
                        swarm.behaviour_mut().kad.inner().remove_peer(&peer);
                        tracing::info!(%peer, "peer is leaving; no longer routed to");
                    }
                    let ack = StatusAck {
                        want_ready: follow_up.want_ready,
                    };
                    let _ = swarm.behaviour_mut().status.send_response(channel, ack);
                    if node.admission.is_private() {
                        // A member's dial addresses, from its own status, let Kademlia route
                        // through it.
                        let addrs = owner
                            .state()
                            .peers
                            .get(&peer)
                            .map(|info| info.addrs.clone())
                            .unwrap_or_default();
                        for addr in addrs {
                            swarm.behaviour_mut().kad.inner().add_address(&peer, addr);
                        }
                    }
                    // A peer that sends its status keeps this node as a neighbour: so does
                    // this node.
                    if owner.state_mut().peers.make_neighbour(&peer) {
                        send_status(swarm, node, owner, peer);
                    }
                    if let Some(digest) = follow_up.sync_at {
                        swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&peer, node.sync_request(None));
                        owner.note_sync(&peer, digest);
                        tracing::debug!(%peer, "manifests differ; asked for a sync");
                    }
                    let connected = swarm.connected_peers().count();
                    let effects = owner.handle(Input::MaybeDial { connected }, Instant::now());
                    apply(swarm, node, owner, effects);
                }
                // No honest node sends these: the connection is closed.
                Err(StatusRefusal::Invalid(reason)) => {
                    node.metrics.count_rejection("bad_status");
                    tracing::info!(%peer, reason, "refused a status; disconnecting");
                    let _ = swarm.disconnect_peer_id(peer);
                }
                Err(StatusRefusal::UnknownPeer) => {
                    node.metrics.count_rejection("status_unknown_peer");
                    tracing::debug!(%peer, "status from a peer the table does not hold");
                }
            }
        }
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Response {
                    response,
                    request_id,
                },
            ..
        } => {
            owner.status_answered(&request_id);
            if response.want_ready {
                owner.state_mut().peers.resend_ready(&peer);
                send_status(swarm, node, owner, peer);
            }
        }
        request_response::Event::OutboundFailure {
            peer,
            error,
            request_id,
            ..
        } => {
            owner.status_answered(&request_id);
            owner.state_mut().peers.resend_ready(&peer);
            tracing::debug!(%peer, %error, "status not delivered");
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(%peer, %error, "status not taken");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
}

/// Copies the gossip score of each tracked peer into the peer table (for `/v1/peers`).
fn note_scores(swarm: &Swarm<Behaviour>, owner: &mut Owner) {
    let gossipsub = &swarm.behaviour().gossipsub;
    for info in owner.state_mut().peers.values_mut() {
        info.gossip_score = gossipsub.peer_score(&info.peer_id);
    }
}

/// Whether what `peer` sends is taken, given the membership certificate it presented (private
/// meshes; an open mesh takes everyone).
fn admit(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    peer: PeerId,
    membership: &[u8],
) -> bool {
    if node.admission.is_private() && !owner.state().admits(&peer) {
        let until_ms = node.admits_until(&peer, membership);
        let effects = owner.handle(Input::Membership { peer, until_ms }, Instant::now());
        apply(swarm, node, owner, effects);
    }
    owner.state().admits(&peer)
}

/// Carries out what the node's state decided.
fn apply(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    effects: Vec<Effect>,
) {
    for effect in effects {
        match effect {
            Effect::DialBootstrap { addr } => {
                node.metrics.dials.inc();
                let opts = libp2p::swarm::dial_opts::DialOpts::from(addr.clone());
                let connection = opts.connection_id();
                match swarm.dial(opts) {
                    Ok(()) => owner.note_kept_dial(connection),
                    Err(error) => tracing::warn!(%addr, %error, "cannot dial a bootstrap peer"),
                }
            }
            Effect::Dial { peer, addrs } => {
                // Connected already (a Kademlia lookup's connection, say): kept from now on.
                if swarm.is_connected(&peer) {
                    if owner.state_mut().peers.make_neighbour(&peer) {
                        send_status(swarm, node, owner, peer);
                    }
                    continue;
                }
                node.metrics.dials.inc();
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .build();
                let connection = opts.connection_id();
                match swarm.dial(opts) {
                    Ok(()) => owner.note_kept_dial(connection),
                    Err(error) => {
                        tracing::debug!(%peer, %error, "cannot dial");
                        owner.handle(Input::DialFailed { peer }, Instant::now());
                    }
                }
            }
            Effect::Disconnect { peer, count } => {
                if let Some(reason) = count {
                    node.metrics.count_rejection(reason);
                }
                tracing::info!(%peer, reason = count.unwrap_or("refused"), "disconnecting");
                let _ = swarm.disconnect_peer_id(peer);
            }
            Effect::Count { peer, reason } => {
                node.metrics.count_rejection(reason);
                if let Some(suppressed) = node.peer_refusal_logged(&peer) {
                    tracing::info!(%peer, reason, suppressed, "peer refused");
                }
            }
            Effect::Keep { peer } => {
                if owner.state_mut().peers.make_neighbour(&peer) {
                    send_status(swarm, node, owner, peer);
                }
            }
            Effect::AskSync { peer } => {
                let request = node.sync_request(None);
                swarm.behaviour_mut().sync.send_request(&peer, request);
            }
            Effect::AskPeers { peer } => {
                let request = node.peer_exchange_request();
                swarm.behaviour_mut().sync.send_request(&peer, request);
            }
            Effect::ShutOut { peer } => {
                let behaviour = swarm.behaviour_mut();
                behaviour.gossipsub.blacklist_peer(&peer);
                behaviour.kad.close(&peer);
                behaviour.kad.inner().remove_peer(&peer);
            }
            Effect::LetIn { peer } => {
                tracing::info!(%peer, "admitted to the private mesh");
                let behaviour = swarm.behaviour_mut();
                behaviour.gossipsub.remove_blacklisted_peer(&peer);
                behaviour.kad.open(peer);
            }
        }
    }
}
