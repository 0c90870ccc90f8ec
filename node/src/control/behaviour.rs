//! The libp2p side of the control plane: the composed behaviour (gossipsub with explicit
//! validation and peer scoring, identify, ping, request-response sync), the sync codec with its
//! size limits, and building the swarm over QUIC and TCP.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use wasmesh_protocol::wire::{
    MANIFEST_TOPIC, MAX_STATUS_SIZE, MAX_SYNC_REQUEST_SIZE, MAX_SYNC_RESPONSE_SIZE, STATUS_TOPIC,
    SYNC_PROTOCOL, SyncRequest, SyncResponse,
};

use crate::metrics::{Direction, Metrics, TrafficKind};

/// The gossipsub heartbeat (mesh upkeep and lazy gossip); other gossipsub parameters are the
/// library's defaults.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// The composed libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
}

/// Sync messages on the wire: the protocol codec with size limits. It counts what it refuses
/// itself: libp2p does not report a request that fails to decode to the behaviour.
#[derive(Debug, Clone)]
pub(crate) struct SyncCodec {
    metrics: Arc<Metrics>,
}

impl SyncCodec {
    async fn send<T: futures::AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        self.metrics
            .count_traffic(TrafficKind::Sync, Direction::Sent, bytes.len());
        io.write_all(bytes).await?;
        io.close().await
    }

    fn refused(&self, error: std::io::Error, what: &str) -> std::io::Error {
        self.metrics.count_rejection(what);
        tracing::info!(%error, what, "refused a sync message");
        error
    }
}

async fn read_limited<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    if bytes.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    Ok(bytes)
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_SYNC_REQUEST_SIZE)
            .await
            .map_err(|e| self.refused(e, "sync_malformed"))?;
        self.metrics
            .count_traffic(TrafficKind::Sync, Direction::Received, bytes.len());
        SyncRequest::decode(&bytes).map_err(|e| self.refused(invalid(e), "sync_malformed"))
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncResponse>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_SYNC_RESPONSE_SIZE)
            .await
            .map_err(|e| self.refused(e, "sync_malformed"))?;
        self.metrics
            .count_traffic(TrafficKind::Sync, Direction::Received, bytes.len());
        SyncResponse::decode(&bytes).map_err(|e| self.refused(invalid(e), "sync_malformed"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.send(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.send(io, &response.encode()).await
    }
}

/// How often each connection's round trip is measured (libp2p ping).
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Builds the swarm for `keys`, listening on `listen`.
pub(crate) fn build_swarm(
    keys: &wasmesh_protocol::Keypair,
    hide_listen_addrs: bool,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Swarm<Behaviour>> {
    let identity = wasmesh_keys::identity::libp2p_keypair(keys);
    // libp2p's metrics (transport bytes, gossip per topic) go in the node's registry.
    let mut registry = metrics.registry();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_STATUS_SIZE)
                .heartbeat_interval(HEARTBEAT)
                // The id binds the author: gossipsub marks an id as seen before validating it, so
                // with an id of the data alone, a peer that republished another node's status
                // under its own identity would have the genuine copy dropped as a duplicate.
                .message_id_fn(|message| {
                    let mut id = blake3::Hasher::new();
                    if let Some(source) = &message.source {
                        id.update(&source.to_bytes());
                    }
                    id.update(&message.data);
                    gossipsub::MessageId::from(id.finalize().as_bytes().to_vec())
                })
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
                    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?
                    .with_metrics(&mut registry, gossipsub::MetricsConfig::default());
            gossipsub
                .with_peer_score(peer_score_params(), PeerScoreThresholds::default())
                .map_err(|e| anyhow::anyhow!("gossipsub scoring: {e}"))?;
            let identify = identify::Behaviour::new(
                identify::Config::new("/wasmesh/1".into(), key.public())
                    .with_hide_listen_addrs(hide_listen_addrs),
            );
            let sync = request_response::Behaviour::with_codec(
                SyncCodec {
                    metrics: metrics.clone(),
                },
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            Ok(Behaviour {
                gossipsub,
                identify,
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_EVERY)),
                sync,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    drop(registry);
    Ok(swarm)
}

/// Gossipsub peer scoring, counting only what a peer cannot do by accident: messages that fail
/// validation (a bad signature, a malformed or forged status). Three of them put a peer below
/// the graylist threshold (-80), and its messages are then ignored; the penalty decays over
/// minutes. Mesh-delivery and IP-colocation scores are off: meshes of a few nodes deliver little,
/// and many honest nodes share one address behind NAT or on one test host.
fn peer_score_params() -> PeerScoreParams {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    };
    PeerScoreParams {
        topics: [MANIFEST_TOPIC, STATUS_TOPIC]
            .into_iter()
            .map(|name| (IdentTopic::new(name).hash(), topic.clone()))
            .collect(),
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        slow_peer_weight: 0.0,
        ..PeerScoreParams::default()
    }
}
