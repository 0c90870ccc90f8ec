//! Hand-made libp2p peers for the tests: strangers that speak only what a test needs of them.

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Swarm, identity};
use wasmesh_protocol::wire::{STATUS_TOPIC, StatusMessage};

use crate::{MESH_DEADLINE, TestNode};

/// A libp2p peer with `keys`, over TCP and QUIC, running `behaviour`; its connections stay open
/// for minutes even when idle.
pub fn swarm<B: NetworkBehaviour>(
    keys: identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keys)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_quic()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// A peer that publishes signed statuses under the node key of `seed`, connected to one node.
pub struct StatusGossiper {
    swarm: Swarm<gossipsub::Behaviour>,
    topic: IdentTopic,
}

impl std::fmt::Debug for StatusGossiper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusGossiper")
            .field("peer", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl StatusGossiper {
    /// Dials `node`, subscribed to the status topic.
    pub fn connect(seed: [u8; 32], node: &TestNode) -> Self {
        let keys = identity::Keypair::ed25519_from_bytes(seed).unwrap();
        let mut swarm = swarm(keys, |key| {
            gossipsub::Behaviour::new(
                MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .unwrap()
        });
        let topic = IdentTopic::new(STATUS_TOPIC);
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        swarm.dial(node.node.p2p_addrs()[0].clone()).unwrap();
        Self { swarm, topic }
    }

    /// Publishes `status`, with a growing sequence number, every 200 ms until `done` holds;
    /// panics with `what` after [`MESH_DEADLINE`], or if the node closes the connection.
    pub async fn gossip_until(
        &mut self,
        what: &str,
        mut status: StatusMessage,
        done: impl Fn() -> bool,
    ) {
        let until = tokio::time::Instant::now() + MESH_DEADLINE;
        while !done() {
            assert!(
                tokio::time::Instant::now() < until,
                "timed out waiting until {what}"
            );
            let event =
                tokio::time::timeout(Duration::from_millis(200), self.swarm.select_next_some())
                    .await;
            if matches!(event, Ok(SwarmEvent::ConnectionClosed { .. })) {
                panic!("the node closed the connection");
            }
            status.seq += 1;
            let _ = self
                .swarm
                .behaviour_mut()
                .publish(self.topic.clone(), status.encode());
        }
    }
}
