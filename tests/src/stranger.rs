//! Hand-made libp2p peers for the tests: strangers that speak only what a test needs of them.

use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, Swarm, identity};
use wasmesh_protocol::wire::{STATUS_PROTOCOL, StatusMessage};

pub use crate::raw_codec::RawCodec;
use crate::{MESH_DEADLINE, TestNode};

/// A libp2p peer with `keys`, over TCP and QUIC, running `behaviour`; its connections stay open
/// for minutes even when idle.
pub fn swarm<B: NetworkBehaviour>(
    keys: identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> Swarm<B> {
    swarm_with_relay_client(keys, |key, _| behaviour(key))
}

/// A libp2p peer with `keys` that speaks only the relay client's protocols: it reserves an
/// address on a relay (`listen_on(<relay>/p2p-circuit)`) and dials peers through one.
pub fn relay_user(keys: identity::Keypair) -> Swarm<libp2p::relay::client::Behaviour> {
    swarm_with_relay_client(keys, |_, relay| relay)
}

/// [`swarm`], with the relay client's transport and behaviour (which `behaviour` may keep).
fn swarm_with_relay_client<B: NetworkBehaviour>(
    keys: identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair, libp2p::relay::client::Behaviour) -> B,
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
        .with_relay_client(libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// What a status sender speaks: the status protocol, and ping (so the node measures its
/// round trip, as it does a real peer's).
#[derive(NetworkBehaviour)]
pub struct StatusAndPing {
    status: request_response::Behaviour<RawCodec>,
    ping: libp2p::ping::Behaviour,
}

impl std::fmt::Debug for StatusAndPing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusAndPing").finish_non_exhaustive()
    }
}

/// A peer that sends statuses of its choosing on the status protocol, connected to one node.
pub struct StatusSender {
    swarm: Swarm<StatusAndPing>,
    node: libp2p::PeerId,
}

impl std::fmt::Debug for StatusSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSender")
            .field("peer", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl StatusSender {
    /// Dials `node` with the libp2p identity of `seed`.
    pub fn connect(seed: [u8; 32], node: &TestNode) -> Self {
        let keys = identity::Keypair::ed25519_from_bytes(seed).unwrap();
        let mut swarm = swarm(keys, |_| StatusAndPing {
            status: request_response::Behaviour::new(
                [(StreamProtocol::new(STATUS_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
            ping: libp2p::ping::Behaviour::default(),
        });
        swarm.dial(node.node.p2p_addrs()[0].clone()).unwrap();
        Self {
            swarm,
            node: node.node.peer_id(),
        }
    }

    /// Sends `status`, with a growing sequence number, every 200 ms until `done` holds or the
    /// node closes the connection; returns whether it closed it. Panics with `what` after
    /// [`MESH_DEADLINE`].
    pub async fn send_until(
        &mut self,
        what: &str,
        mut status: StatusMessage,
        done: impl Fn() -> bool,
    ) -> bool {
        let until = tokio::time::Instant::now() + MESH_DEADLINE;
        let mut connected = false;
        while !done() {
            assert!(
                tokio::time::Instant::now() < until,
                "timed out waiting until {what}"
            );
            let event =
                tokio::time::timeout(Duration::from_millis(200), self.swarm.select_next_some())
                    .await;
            match event {
                Ok(SwarmEvent::ConnectionEstablished { .. }) => connected = true,
                Ok(SwarmEvent::ConnectionClosed { .. }) if connected => return true,
                _ => {}
            }
            if self.swarm.is_connected(&self.node) {
                status.seq += 1;
                self.swarm
                    .behaviour_mut()
                    .status
                    .send_request(&self.node, status.encode());
            }
        }
        false
    }

    /// Keeps sending `status` once a second (and answering pings) until the task is aborted,
    /// as a live peer does.
    pub fn keep_sending(mut self, mut status: StatusMessage) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = self.swarm.select_next_some() => {}
                    _ = tick.tick() => {
                        if self.swarm.is_connected(&self.node) {
                            status.seq += 1_000;
                            self.swarm
                                .behaviour_mut()
                                .status
                                .send_request(&self.node, status.encode());
                        }
                    }
                }
            }
        })
    }
}
