//! Statuses between neighbours: this node's goes to each neighbour (in a private mesh, admitted
//! ones only) when it changes and on the status interval; a neighbour's is taken into the peer
//! table and answered, asking for its ready list when this node's copy is stale; leaving, the
//! node sends a last status that says so and waits for the answers.

use libp2p::PeerId;
use libp2p::request_response::{self, Message, OutboundRequestId};
use tokio::sync::oneshot;
use wasmesh_protocol::DecodeError;
use wasmesh_protocol::wire::{StatusAck, StatusMessage};

use super::EventLoop;
use crate::core::peers::intake::StatusRefusal;
use crate::rejection::Rejection;

/// A status or its answer, as the swarm delivers it.
type StatusEvent = request_response::Event<Result<StatusMessage, DecodeError>, StatusAck>;

impl EventLoop {
    /// Makes this node's status again and sends it to every neighbour.
    pub(super) fn broadcast_status(&mut self) {
        self.owner.refresh_status();
        for peer in self.owner.state().peers.neighbours() {
            self.send_status(peer);
        }
    }

    /// Sends a status that says this node is leaving to every neighbour; `done` is answered
    /// once each has answered it.
    pub(super) fn leave(&mut self, done: oneshot::Sender<()>) {
        self.owner.refresh_status();
        let sent = self
            .owner
            .state()
            .peers
            .neighbours()
            .into_iter()
            .filter_map(|peer| self.send_status(peer))
            .collect();
        self.owner.await_leave_acks(sent, done);
    }

    /// Sends this node's newest status to `peer` (see `Owner::status_for`): connected peers
    /// only, and in a private mesh only admitted ones. Returns the request, if one was sent.
    pub(super) fn send_status(&mut self, peer: PeerId) -> Option<OutboundRequestId> {
        if !self.owner.state().admits(&peer) {
            return None;
        }
        let status = self.owner.status_for(&peer)?;
        Some(
            self.swarm
                .behaviour_mut()
                .status
                .send_request(&peer, Ok(status)),
        )
    }

    /// Keeps connected `peer` as a neighbour (see `NodeState::keep`).
    pub(super) fn keep_as_neighbour(&mut self, peer: PeerId) {
        let effects = self.owner.state_mut().keep(peer);
        self.apply(effects);
    }

    /// A status from a peer, the answer to one of this node's, or a failure.
    pub(super) fn on_status_event(&mut self, event: StatusEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                // A status that does not decode (counted by the codec): no honest node sends
                // one.
                Message::Request {
                    request: Err(error),
                    ..
                } => {
                    tracing::info!(%peer, %error, "malformed status; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Message::Request {
                    request: Ok(status),
                    channel,
                    ..
                } => {
                    if let Some(ack) = self.on_status(peer, status) {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .status
                            .send_response(channel, ack);
                    }
                }
                Message::Response {
                    response,
                    request_id,
                } => {
                    self.owner.status_answered(&request_id);
                    if response.want_ready {
                        self.owner.state_mut().peers.resend_ready(&peer);
                        self.send_status(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.owner.status_answered(&request_id);
                self.owner.state_mut().peers.resend_ready(&peer);
                tracing::debug!(%peer, %error, "status not delivered");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "status not taken");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Takes a peer's status; the answer to send, if it was taken.
    fn on_status(&mut self, peer: PeerId, status: StatusMessage) -> Option<StatusAck> {
        let leaving = status.leaving;
        let connected = self.swarm.connected_peers().count();
        match self.owner.on_status(peer, status, connected) {
            Ok(verdict) => {
                self.follow_status(peer, leaving);
                self.apply(verdict.effects);
                Some(StatusAck {
                    want_ready: verdict.want_ready,
                })
            }
            Err(StatusRefusal::NotAdmitted) => {
                self.metrics.count_rejection(Rejection::StatusNotAdmitted);
                tracing::debug!(%peer, "status from a peer not admitted yet");
                None
            }
            // No honest node sends these: the connection is closed.
            Err(StatusRefusal::Invalid(reason)) => {
                self.metrics.count_rejection(Rejection::BadStatus);
                tracing::info!(%peer, reason, "refused a status; disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer);
                None
            }
            Err(StatusRefusal::UnknownPeer) => {
                self.metrics.count_rejection(Rejection::StatusUnknownPeer);
                tracing::debug!(%peer, "status from a peer the table does not hold");
                None
            }
        }
    }

    /// What Kademlia learns from a status that was taken: a leaving peer leaves its table, a
    /// member of a private mesh gives its addresses.
    fn follow_status(&mut self, peer: PeerId, leaving: bool) {
        if leaving {
            // Neither a provider nor a directory node any more: lookups skip it.
            self.swarm.behaviour_mut().kad.inner().remove_peer(&peer);
            tracing::info!(%peer, "peer is leaving; no longer routed to");
        }
        if self.owner.policy().is_private() {
            // A member's dial addresses, from its own status, let Kademlia route through it.
            let addrs = self
                .owner
                .state()
                .peers
                .get(&peer)
                .map(|info| info.addrs.clone())
                .unwrap_or_default();
            for addr in addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .inner()
                    .add_address(&peer, addr);
            }
        }
    }
}
