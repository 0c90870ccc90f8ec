//! The control plane: one task, the [`EventLoop`], owns the libp2p swarm (QUIC + TCP,
//! gossipsub, identify, ping, request-response sync, status and holders, Kademlia) and the
//! node's state ([`owner`]). Swarm events and the commands of the rest of the node ([`handle`])
//! become inputs of that state; what it decides becomes actions on the swarm ([`effects`]);
//! after each, the loop publishes the node's view (`crate::view`) and, when the node's ready
//! list or manifests changed, its status.
//!
//! Gossipsub carries manifests only, and validates explicitly: every message is decoded with its
//! size limit, screened off the loop ([`verifier`]) and filed by the owner before it is reported
//! `Accept` (forwarded), `Ignore` or `Reject` (dropped, and the sender's score lowered).
//! Statuses go to neighbours only ([`statuses`]), never relayed. A peer whose identify names
//! another protocol version is disconnected, counted and logged. When a connection to a new
//! peer opens, both sides send a sync request, so a node that joins late or returns after a
//! partition gets every manifest it lacks at once. In a private mesh the same exchange carries
//! membership certificates: a peer stays blacklisted in gossipsub (no messages to or from it)
//! and shut out of Kademlia ([`gate`]) until its certificate is checked, and is disconnected if
//! it fails. Peers are discovered through connections and neighbours' introductions
//! (`core::peers`); the decisions about them are the core's.

mod address_limit;
mod behaviour;
mod codec;
pub mod command;
mod effects;
mod events;
mod gate;
pub mod handle;
mod holder_work;
mod holders;
mod leave;
pub(crate) mod own_status;
pub(crate) mod owner;
mod relays;
mod statuses;
pub(crate) mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::IdentTopic;
use libp2p::{PeerId, Swarm};
use tokio::sync::{mpsc, watch};
use wasmesh_protocol::Keypair;
use wasmesh_protocol::wire::MANIFEST_TOPIC;

pub(crate) use self::behaviour::{Behaviour, SwarmSettings, build_swarm};
pub use self::behaviour::{HEARTBEAT, PING_EVERY};
pub use self::command::ControlCommand;
use self::command::ScreenedBatch;
use self::owner::Owner;
use self::verifier::Verifier;
pub use crate::core::admission::ADMISSION_TIMEOUT;
use crate::core::manifests::Screened;
pub use crate::core::peers::MAX_DIALED_PEERS;
use crate::core::peers::REDIAL_AFTER;
pub use crate::core::peers::exchange::PEER_EXCHANGE_EVERY;
use crate::core::state::Input;
use crate::metrics::Metrics;
use crate::refusal_log::Refusals;

/// The control task: the swarm and the node's state, and what they need (see the module docs).
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    owner: Owner,
    verifier: Verifier,
    metrics: Arc<Metrics>,
    refusals: Arc<Refusals>,
    /// Signs this node's holder records.
    keys: Keypair,
    /// How often this node's status goes to its neighbours when nothing else changed.
    status_interval: Duration,
    /// Reservations on relays, behind a NAT (`relays`).
    reservations: relays::Reservations,
    /// Which peers are reached through a relay only.
    paths: relays::ControlPaths,
    /// Whether this node serves as a relay now (`None` before it was decided).
    relay_serving: Option<relays::RelayService>,
}

impl EventLoop {
    /// A loop over `swarm` and `owner`.
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        owner: Owner,
        verifier: Verifier,
        metrics: Arc<Metrics>,
        refusals: Arc<Refusals>,
        keys: Keypair,
        status_interval: Duration,
    ) -> Self {
        Self {
            swarm,
            owner,
            verifier,
            metrics,
            refusals,
            keys,
            status_interval,
            reservations: relays::Reservations::default(),
            paths: relays::ControlPaths::default(),
            relay_serving: None,
        }
    }

    /// Runs until shutdown (or until every handle is dropped).
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<ControlCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let manifests = IdentTopic::new(MANIFEST_TOPIC);
        if let Err(error) = self.swarm.behaviour_mut().gossipsub.subscribe(&manifests) {
            tracing::error!(%error, "cannot subscribe to gossip");
        }
        // Peers lost to a partition or a restart are dialed again even when no gossip arrives.
        let mut redial = tokio::time::interval(REDIAL_AFTER);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_timer = tokio::time::interval(self.status_interval);
        status_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = redial.tick() => self.tick(),
                _ = status_timer.tick() => self.broadcast_status(),
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
            self.serve_as_relay_if_public();
            if self.owner.publish() {
                self.broadcast_status();
            }
        }
    }

    /// The periodic tick: the core's timers, gossip scores for `/v1/peers`, and the holder
    /// announcements and refreshes that are due.
    fn tick(&mut self) {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let wall_ms = crate::clock::now_ms();
        let effects = self.owner.handle(
            Input::Tick {
                connected: &connected,
                wall_ms,
            },
            Instant::now(),
        );
        self.apply(effects);
        self.note_scores();
        let ready = self
            .owner
            .own_status()
            .and_then(|s| s.ready.clone())
            .unwrap_or_default();
        self.holders_tick(&ready);
    }

    fn on_command(&mut self, command: ControlCommand) {
        match command {
            ControlCommand::PublishManifest(bytes) => {
                let topic = IdentTopic::new(MANIFEST_TOPIC);
                if let Err(error) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                    tracing::debug!(%error, "manifest not gossiped now; peers get it by sync");
                }
            }
            ControlCommand::Leave { done } => self.leave(done),
            ControlCommand::FindHolders { blob, done } => self.find_holders(blob, done),
            ControlCommand::Probe(peer) => {
                let effects = self
                    .owner
                    .handle(Input::ProbeWanted { peer }, Instant::now());
                self.apply(effects);
            }
            ControlCommand::Offer {
                verified,
                origin,
                reply,
            } => self.owner.file_and_reply(*verified, origin, reply),
            ControlCommand::Ingested {
                key,
                blob,
                state,
                done,
            } => self.owner.ingested(&key, &blob, state, done),
            ControlCommand::ForwardAnswered(answer) => {
                self.owner
                    .handle(Input::ForwardAnswered(answer), Instant::now());
            }
            ControlCommand::Screened(batch) => self.file_screened(*batch),
            ControlCommand::DataPlaneSeen { key, addr, open } => {
                self.owner
                    .state_mut()
                    .peers
                    .data_plane_seen(key, addr, open);
            }
            ControlCommand::QuicObserved { by, observed } => {
                self.owner
                    .change_addresses(|own| own.quic_observed(by, observed));
                let direct = self.owner.addresses().0.dialable_directly();
                if let Some(rendezvous) = wasmesh_keys::identity::peer_id(&by).filter(|_| !direct) {
                    self.reserve_on(rendezvous);
                }
            }
        }
    }

    /// Files what screening verified; a gossiped manifest's validation is reported with the
    /// outcome (`core::manifests::gossip_verdict`).
    fn file_screened(&mut self, batch: ScreenedBatch) {
        let mut last = None;
        for (signed, screened) in batch.manifests {
            let outcome = match screened {
                Screened::Answered(answer) => {
                    self.owner.note_outcome(&signed, batch.origin, &answer);
                    answer
                }
                Screened::Verified(verified) => self.owner.file(verified, batch.origin),
            };
            last = Some(outcome);
        }
        // The next page, after the last key of this one.
        if let Some(next) = batch.next_page {
            let request = self.owner.policy().sync_request(Some(next.after));
            self.swarm
                .behaviour_mut()
                .sync
                .send_request(&next.peer, request);
        }
        if let (Some(gossip), Some(outcome)) = (batch.gossip, last) {
            let acceptance = events::acceptance(crate::core::manifests::gossip_verdict(&outcome));
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &gossip.id,
                    &gossip.propagation_source,
                    acceptance,
                );
        }
    }

    /// Copies the gossip score of each tracked peer into the peer table (for `/v1/peers`).
    fn note_scores(&mut self) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        self.owner
            .state_mut()
            .peers
            .update_each(|info| info.gossip_score = gossipsub.peer_score(&info.peer_id));
    }

    /// Whether what `peer` sends is taken, given the membership certificate it presented
    /// (private meshes; an open mesh takes everyone).
    fn admit(&mut self, peer: PeerId, membership: &[u8]) -> bool {
        if !self.owner.state().admits(&peer) {
            let until_ms = self.owner.policy().admits_until(&peer, membership);
            let effects = self
                .owner
                .handle(Input::Membership { peer, until_ms }, Instant::now());
            self.apply(effects);
        }
        self.owner.state().admits(&peer)
    }

    /// News that may have made peers worth dialing came (a status, an introduction, gossip).
    fn dial_after_news(&mut self) {
        let connected = self.swarm.connected_peers().count();
        let effects = self
            .owner
            .handle(Input::MaybeDial { connected }, Instant::now());
        self.apply(effects);
    }
}
