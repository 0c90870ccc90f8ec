//! Carrying out what the node's state decided (`core::state::Effect`) on the swarm: dials,
//! disconnections, counted refusals, statuses to new neighbours, sync and peer-exchange requests, and
//! private-mesh peers shut out of or let into gossip and Kademlia.

use std::time::Instant;

use libp2p::swarm::dial_opts::DialOpts;

use super::EventLoop;
use crate::core::state::{Effect, Input};
use crate::rejection::Rejection;

impl EventLoop {
    /// Carries out `effects`, in order.
    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            self.apply_one(effect);
        }
    }

    fn apply_one(&mut self, effect: Effect) {
        match effect {
            Effect::DialBootstrap { addr } => {
                self.metrics.dials.inc();
                let opts = DialOpts::from(addr.clone());
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => self.owner.note_kept_dial(connection),
                    Err(error) => tracing::warn!(%addr, %error, "cannot dial a bootstrap peer"),
                }
            }
            Effect::Dial { peer, addrs } => {
                // Connected already (a Kademlia lookup's connection, say): kept from now on.
                if self.swarm.is_connected(&peer) {
                    self.keep_as_neighbour(peer);
                    return;
                }
                self.metrics.dials.inc();
                let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => self.owner.note_kept_dial(connection),
                    Err(error) => {
                        tracing::debug!(%peer, %error, "cannot dial");
                        self.owner
                            .handle(Input::DialFailed { peer }, Instant::now());
                    }
                }
            }
            Effect::Disconnect { peer, count } => {
                if let Some(reason) = count {
                    self.metrics.count_rejection(reason);
                }
                tracing::info!(%peer, reason = count.map_or("refused", Rejection::as_str), "disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Effect::Count { peer, reason } => {
                self.metrics.count_rejection(reason);
                if let Some(suppressed) = self.refusals.logged(&peer) {
                    tracing::info!(%peer, %reason, suppressed, "peer refused");
                }
            }
            Effect::SendStatus { peer } => {
                self.send_status(peer);
            }
            Effect::AskSync { peer } => {
                let request = self.owner.policy().sync_request(None);
                self.swarm.behaviour_mut().sync.send_request(&peer, request);
            }
            Effect::AskPeers { peer } => {
                let request = self.owner.policy().peer_exchange_request();
                self.swarm.behaviour_mut().sync.send_request(&peer, request);
            }
            Effect::ShutOut { peer } => {
                let behaviour = self.swarm.behaviour_mut();
                behaviour.gossipsub.blacklist_peer(&peer);
                behaviour.kad.close(&peer);
                behaviour.kad.inner().remove_peer(&peer);
                behaviour.relay.close(&peer);
            }
            Effect::LetIn { peer } => {
                tracing::info!(%peer, "admitted to the private mesh");
                let behaviour = self.swarm.behaviour_mut();
                behaviour.gossipsub.remove_blacklisted_peer(&peer);
                behaviour.kad.open(peer);
                behaviour.relay.open(peer);
            }
        }
    }
}
