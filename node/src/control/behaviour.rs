//! The libp2p side of the control plane: the composed behaviour (gossipsub for manifests with
//! explicit validation and peer scoring, identify, ping, request-response sync, status and
//! holders, Kademlia, circuit relay and DCUtR), and building the swarm over QUIC and TCP, and
//! through relays.

use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, dcutr, identify, kad, noise, ping, relay, tcp, yamux};
use wasmesh_protocol::holders::HOLDERS_PROTOCOL;
use wasmesh_protocol::wire::{
    KAD_PROTOCOL, MANIFEST_TOPIC, PROTOCOL_VERSION, STATUS_PROTOCOL, SYNC_PROTOCOL,
};

use super::address_limit::InboundPerAddress;
use super::codec::{self, LimitedCodec};
use super::gate::Gated;
use crate::core::holder_search::DIRECTORY_REPLICAS;
use crate::metrics::Metrics;

/// The gossipsub heartbeat (mesh upkeep and lazy gossip); other gossipsub parameters are the
/// library's defaults.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a sync, status or holder request, or a Kademlia lookup, may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection with no stream open stays up (statuses and pings keep neighbours'
/// connections busy).
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The composed libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) sync: request_response::Behaviour<LimitedCodec<codec::SyncPair>>,
    pub(crate) status: request_response::Behaviour<LimitedCodec<codec::StatusPair>>,
    /// Closed to a peer of a private mesh until it has proved membership (`gate`).
    pub(crate) kad: Gated<kad::Behaviour<kad::store::MemoryStore>>,
    pub(crate) holders: request_response::Behaviour<LimitedCodec<codec::HoldersPair>>,
    /// Refuses inbound connections beyond a number per source address.
    pub(crate) inbound_limit: InboundPerAddress,
    /// A relay for peers behind NATs (`relays`); closed to strangers of a private mesh.
    pub(crate) relay: Gated<relay::Behaviour>,
    /// Reservations on relays, and dials through them.
    pub(crate) relay_client: relay::client::Behaviour,
    /// Relayed connections upgraded to direct ones through both NATs.
    pub(crate) dcutr: dcutr::Behaviour,
}

/// How the swarm is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SwarmSettings {
    /// Identify does not tell peers the listen addresses (the node announces others).
    pub(crate) hide_listen_addrs: bool,
    /// A private mesh: Kademlia serves and takes in members only.
    pub(crate) private: bool,
    /// Inbound connections from one IP address at a time.
    pub(crate) max_inbound_per_address: usize,
    /// Whether loopback, private and link-local addresses learned from peers may be dialed.
    pub(crate) allow_private_addrs: bool,
}

/// Largest gossipsub RPC taken: a manifest (at most 4 KiB, checked again when decoded) or a
/// batch of control messages.
const MAX_GOSSIP_RPC: usize = 64 * 1024;

/// How long a status waits for its answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often each connection's round trip is measured (libp2p ping).
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Builds the swarm for `keys`.
pub(crate) fn build_swarm(
    keys: &wasmesh_protocol::Keypair,
    settings: SwarmSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Swarm<Behaviour>> {
    let SwarmSettings {
        hide_listen_addrs,
        private,
        max_inbound_per_address,
        allow_private_addrs,
    } = settings;
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
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|key, relay_client| {
            let id = key.public().to_peer_id();
            let gossipsub = gossipsub(key, &mut registry)?;
            let identify = identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                    .with_hide_listen_addrs(hide_listen_addrs),
            );
            let sync = request_response::Behaviour::with_codec(
                LimitedCodec::new(metrics.clone()),
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            );
            let status = request_response::Behaviour::with_codec(
                LimitedCodec::new(metrics.clone()),
                [(StreamProtocol::new(STATUS_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(STATUS_TIMEOUT),
            );
            let holders = request_response::Behaviour::with_codec(
                LimitedCodec::new(metrics.clone()),
                [(StreamProtocol::new(HOLDERS_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(STATUS_TIMEOUT),
            );
            Ok(Behaviour {
                gossipsub,
                identify,
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_EVERY)),
                sync,
                status,
                kad: Gated::new(kademlia(id, private), private, allow_private_addrs),
                holders,
                inbound_limit: InboundPerAddress::new(max_inbound_per_address),
                relay: Gated::new(
                    relay::Behaviour::new(id, super::relays::server_config()),
                    private,
                    allow_private_addrs,
                ),
                relay_client,
                dcutr: dcutr::Behaviour::new(id),
            })
        })?
        .with_swarm_config(|c| {
            // A stream settles on the last protocol it proposes without waiting a round trip
            // for the peer to agree, and sends its first message with the proposal (a peer
            // that does not speak it resets the stream). Statuses, sync, holder lookups and
            // reach propose one protocol each: a status (and with it a new ready list) reached
            // a far neighbour in 1.5 round trips instead of half of one, a third of the demo's
            // far cold start (BENCHMARKS.md, "The demo's far cold start").
            c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    drop(registry);
    Ok(swarm)
}

/// Gossipsub for manifests: explicit validation, messages signed by their author and
/// identified by author and content, peer scoring, and libp2p's metrics in `registry`.
fn gossipsub(
    key: &libp2p::identity::Keypair,
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<gossipsub::Behaviour> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_RPC)
        .heartbeat_interval(HEARTBEAT)
        // The id binds the author: gossipsub marks an id as seen before validating it, so with
        // an id of the data alone, a peer that republished another node's manifest under its
        // own identity would have the genuine copy dropped as a duplicate.
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
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?
        .with_metrics(registry, gossipsub::MetricsConfig::default());
    gossipsub
        .with_peer_score(peer_score_params(), PeerScoreThresholds::default())
        .map_err(|e| anyhow::anyhow!("gossipsub scoring: {e}"))?;
    Ok(gossipsub)
}

/// Closest peers a Kademlia lookup waits for: the directory nodes a blob is announced to.
const LOOKUP_CLOSEST: std::num::NonZeroUsize =
    std::num::NonZeroUsize::MIN.saturating_add(DIRECTORY_REPLICAS - 1);

/// Kademlia for closest-peer lookups only (directory nodes of a blob): always a server, since
/// every node is a directory node; it stores no records nor provider records from others
/// (inbound ones are reported, and ignored). In a private mesh its table takes only the peers
/// the control task adds, members whose statuses arrived, never a peer merely connected.
fn kademlia(id: libp2p::PeerId, private: bool) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    config.set_record_filtering(kad::StoreInserts::FilterBoth);
    if private {
        config.set_kbucket_inserts(kad::BucketInserts::Manual);
    }
    config.set_query_timeout(REQUEST_TIMEOUT);
    // A lookup ends once the closest few have answered: as many as a blob's directory nodes.
    config.set_replication_factor(LOOKUP_CLOSEST);
    let mut kad = kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// Gossipsub peer scoring, counting only what a peer cannot do by accident: messages that fail
/// validation (a bad signature, a malformed manifest). Three of them put a peer below
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
        topics: [(IdentTopic::new(MANIFEST_TOPIC).hash(), topic)]
            .into_iter()
            .collect(),
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        slow_peer_weight: 0.0,
        ..PeerScoreParams::default()
    }
}
