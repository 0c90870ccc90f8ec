//! The control plane: one task owns the libp2p swarm (QUIC + TCP, gossipsub, identify, ping,
//! request-response sync) and feeds what arrives into the node.
//!
//! Gossipsub validates explicitly: every message is decoded with its size limit and checked by
//! the node before it is reported `Accept` (forwarded) or `Reject` (dropped, and the sender's
//! score lowered). When a connection to a new peer opens, both sides send a sync request, so a
//! node that joins late or returns after a partition gets every manifest it lacks at once. In a
//! private mesh the same exchange carries membership certificates: a peer stays blacklisted in
//! gossipsub (no messages to or from it) until its certificate is checked, and is disconnected
//! if it fails. Peers are discovered through each other's status (peer exchange).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, watch};
use wasmesh_protocol::wire::{
    MANIFEST_TOPIC, MAX_STATUS_SIZE, MAX_SYNC_REQUEST_SIZE, MAX_SYNC_RESPONSE_SIZE, STATUS_TOPIC,
    SYNC_PROTOCOL, StatusMessage, SyncRequest, SyncResponse,
};
use wasmesh_protocol::{ContentHash, SignedManifest};

use crate::metrics::Metrics;
use crate::node::{NodeInner, Offered, Origin};
use crate::registry::track_peer;
use crate::status_intake::StatusRefusal;

/// Most peers this node dials on its own (bootstrap and peer exchange).
pub const MAX_DIALED_PEERS: usize = 32;

/// Failed dials in a row after which a peer learned from statuses is no longer dialed (it can
/// still connect to this node): made-up addresses must not keep a node dialing forever.
const MAX_DIAL_FAILURES: u32 = 6;

/// The gossipsub heartbeat (mesh upkeep and lazy gossip); other gossipsub parameters are the
/// library's defaults.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a peer of a private mesh has to prove membership (answer the sync request that
/// carries certificates) before it is disconnected.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after losing a peer it is dialed again; doubled per failed dial, up to 8 s.
const REDIAL_AFTER: Duration = Duration::from_secs(1);

/// What the rest of the node asks of the swarm task.
#[derive(Debug)]
pub enum GossipCommand {
    /// Publish an encoded signed manifest.
    PublishManifest(Vec<u8>),
    /// Publish an encoded status message.
    PublishStatus(Vec<u8>),
    /// Dial an address.
    Dial(Multiaddr),
    /// Connect to a known peer (so its round trip gets measured), unless connected or dialing.
    Probe(PeerId),
}

/// The composed libp2p behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Sync messages on the wire: the protocol codec with size limits. It counts what it refuses
/// itself: libp2p does not report a request that fails to decode to the behaviour.
#[derive(Debug, Clone)]
pub(crate) struct SyncCodec {
    metrics: Arc<Metrics>,
}

impl SyncCodec {
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
        io.write_all(&request.encode()).await?;
        io.close().await
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
        io.write_all(&response.encode()).await?;
        io.close().await
    }
}

/// Builds the swarm for `keys`, listening on `listen`.
pub(crate) fn build_swarm(
    keys: &wasmesh_protocol::Keypair,
    hide_listen_addrs: bool,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Swarm<Behaviour>> {
    let identity = wasmesh_keys::identity::libp2p_keypair(keys);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
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
                    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
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
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_secs(5)),
                ),
                sync,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

/// Runs the swarm until shutdown.
pub(crate) async fn run(
    mut swarm: Swarm<Behaviour>,
    node: Arc<NodeInner>,
    mut commands: mpsc::Receiver<GossipCommand>,
    mut shutdown: watch::Receiver<bool>,
) {
    let manifests = IdentTopic::new(MANIFEST_TOPIC);
    let status = IdentTopic::new(STATUS_TOPIC);
    for topic in [&manifests, &status] {
        if let Err(error) = swarm.behaviour_mut().gossipsub.subscribe(topic) {
            tracing::error!(%error, "cannot subscribe to gossip");
        }
    }
    let mut admission = AdmissionState::default();
    let mut exchange = PeerExchange::default();
    // Peers lost to a partition or a restart are dialed again even when no gossip arrives.
    let mut redial = tokio::time::interval(REDIAL_AFTER);
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = redial.tick() => {
                enforce_admission(&mut swarm, &node, &mut admission);
                exchange.maybe_ask(&mut swarm, &node);
                maybe_dial_new_peers(&mut swarm, &node);
                note_scores(&swarm, &node);
            }
            command = commands.recv() => match command {
                None => return,
                Some(GossipCommand::PublishManifest(bytes)) => {
                    if let Err(error) = swarm.behaviour_mut().gossipsub.publish(manifests.clone(), bytes) {
                        tracing::debug!(%error, "manifest not gossiped now; peers get it by sync");
                    }
                }
                Some(GossipCommand::PublishStatus(bytes)) => {
                    let _ = swarm.behaviour_mut().gossipsub.publish(status.clone(), bytes);
                }
                Some(GossipCommand::Probe(peer)) => {
                    let addrs = node
                        .peers()
                        .get(&peer)
                        .filter(|p| !p.connected && !p.dialing)
                        .map(|p| p.addrs.clone());
                    if let Some(addrs) = addrs.filter(|a| !a.is_empty()) {
                        dial_peer(&mut swarm, &node, peer, addrs, Instant::now());
                    }
                }
                Some(GossipCommand::Dial(addr)) => {
                    node.metrics.dials.inc();
                    if let Err(error) = swarm.dial(addr.clone()) {
                        tracing::debug!(%addr, %error, "dial failed");
                    }
                }
            },
            event = swarm.select_next_some() => handle_event(&mut swarm, &node, &mut admission, event),
        }
    }
}

/// Peer exchange: every [`PEER_EXCHANGE_EVERY`], the connected peer asked least recently is
/// asked which peers it is connected to (a sync request without manifests). This, and the
/// first sync of every connection, is how a node learns of peers beyond its bootstrap peers.
#[derive(Debug, Default)]
struct PeerExchange {
    asked: HashMap<PeerId, Instant>,
    last: Option<Instant>,
}

/// How often a node asks one neighbour for its peers.
pub const PEER_EXCHANGE_EVERY: Duration = Duration::from_secs(2);

impl PeerExchange {
    fn maybe_ask(&mut self, swarm: &mut Swarm<Behaviour>, node: &NodeInner) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < PEER_EXCHANGE_EVERY)
        {
            return;
        }
        let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
        self.asked.retain(|peer, _| connected.contains(peer));
        let Some(peer) = connected
            .into_iter()
            .min_by_key(|peer| self.asked.get(peer).copied())
        else {
            return;
        };
        self.asked.insert(peer, now);
        self.last = Some(now);
        swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, node.peer_exchange_request());
    }
}

/// Private meshes: peers admitted (until their certificate expires, ms since the Unix epoch),
/// and peers connected but not yet admitted (since when). Each peer that leaves or is refused
/// without being admitted is counted once as `not_admitted`.
#[derive(Debug, Default)]
struct AdmissionState {
    admitted: HashMap<PeerId, u64>,
    pending: HashMap<PeerId, Instant>,
}

fn handle_event(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    admission: &mut AdmissionState,
    event: SwarmEvent<BehaviourEvent>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, "listening");
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            num_established,
            ..
        } => {
            let tracked = match track_peer(&mut node.peers(), peer_id, Instant::now()) {
                Some(info) => {
                    info.connected = true;
                    info.dialing = false;
                    info.dial_failures = 0;
                    true
                }
                None => false,
            };
            if !tracked {
                // Every tracked peer is connected or being dialed: no room for one more.
                node.metrics.count_rejection("peer_table_full");
                tracing::info!(peer = %peer_id, "peer table full; closing the connection");
                let _ = swarm.disconnect_peer_id(peer_id);
                return;
            }
            node.metrics
                .peers
                .set(swarm.connected_peers().count() as i64);
            if num_established.get() == 1 {
                if node.admission.is_private() && !admission.admitted.contains_key(&peer_id) {
                    swarm.behaviour_mut().gossipsub.blacklist_peer(&peer_id);
                    admission.pending.insert(peer_id, Instant::now());
                }
                swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer_id, node.sync_request(None));
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            if let Some(peer) = node.peers().get_mut(&peer_id) {
                peer.connected = false;
                peer.next_dial = Some(Instant::now() + REDIAL_AFTER);
            }
            admission.admitted.remove(&peer_id);
            if admission.pending.remove(&peer_id).is_some() {
                node.metrics.count_rejection("not_admitted");
                tracing::info!(%peer_id, "peer left without proving membership");
            }
            node.metrics
                .peers
                .set(swarm.connected_peers().count() as i64);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        })) => {
            let (acceptance, sync_from) = validate(node, &message);
            if let Some((peer, digest)) = sync_from
                && swarm.is_connected(&peer)
            {
                swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, node.sync_request(None));
                node.note_sync(&peer, digest);
                tracing::debug!(%peer, "manifests differ; asked for a sync");
            }
            swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &propagation_source, acceptance);
            maybe_dial_new_peers(swarm, node);
        }
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            peer,
            message,
            ..
        })) => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let response = if admit(swarm, node, admission, peer, &request.membership) {
                    node.sync_response(&request, &peer)
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
                if admit(swarm, node, admission, peer, &response.membership) {
                    node.on_introductions(&response.peers);
                    let last = response.manifests.last().map(|m| m.manifest.key());
                    for signed in response.manifests {
                        let _ = node.offer_manifest(signed, Origin::Sync(peer));
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
        SwarmEvent::OutgoingConnectionError {
            peer_id: Some(peer_id),
            error,
            ..
        } => {
            if let Some(peer) = node.peers().get_mut(&peer_id) {
                peer.dialing = false;
                peer.dial_failures = peer.dial_failures.saturating_add(1);
                let backoff = REDIAL_AFTER.saturating_mul(1 << peer.dial_failures.min(3));
                peer.next_dial = Some(Instant::now() + backoff);
                tracing::debug!(%peer_id, %error, ?backoff, "dial failed; trying again later");
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
            peer,
            result: Ok(rtt),
            ..
        })) => {
            node.on_ping(&peer, rtt);
        }
        _ => {}
    }
}

/// Decides whether `peer` is admitted, given the membership certificate it presented; refuses
/// and disconnects it otherwise (private meshes only).
fn admit(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    admission: &mut AdmissionState,
    peer: PeerId,
    membership: &[u8],
) -> bool {
    if !node.admission.is_private() || admission.admitted.contains_key(&peer) {
        return true;
    }
    if let Some(expires_ms) = node.admits_until(&peer, membership) {
        admission.pending.remove(&peer);
        admission.admitted.insert(peer, expires_ms);
        swarm
            .behaviour_mut()
            .gossipsub
            .remove_blacklisted_peer(&peer);
        tracing::info!(%peer, "admitted to the private mesh");
        true
    } else {
        if admission.pending.remove(&peer).is_some() {
            node.metrics.count_rejection("not_admitted");
        }
        tracing::warn!(%peer, "peer has no valid membership certificate; disconnecting");
        let _ = swarm.disconnect_peer_id(peer);
        false
    }
}

/// Private meshes: disconnects peers whose membership has expired since they were admitted,
/// and peers that have not proved membership within [`ADMISSION_TIMEOUT`].
fn enforce_admission(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    admission: &mut AdmissionState,
) {
    let now_ms = crate::clock::now_ms();
    let expired: Vec<PeerId> = admission
        .admitted
        .iter()
        .filter(|(_, expires_ms)| **expires_ms <= now_ms)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in expired {
        admission.admitted.remove(&peer);
        node.metrics.count_rejection("membership_expired");
        tracing::info!(%peer, "membership expired; disconnecting");
        swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = swarm.disconnect_peer_id(peer);
    }
    let silent: Vec<PeerId> = admission
        .pending
        .iter()
        .filter(|(_, since)| since.elapsed() >= ADMISSION_TIMEOUT)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in silent {
        admission.pending.remove(&peer);
        node.metrics.count_rejection("admission_timeout");
        tracing::info!(%peer, "peer did not prove membership in time; disconnecting");
        let _ = swarm.disconnect_peer_id(peer);
    }
}

/// Checks a gossiped message; also names the peer to ask for a sync (and its digest) when its
/// status shows manifests this node may lack.
fn validate(
    node: &Arc<NodeInner>,
    message: &gossipsub::Message,
) -> (MessageAcceptance, Option<(PeerId, ContentHash)>) {
    let Some(source) = message.source else {
        node.metrics.count_rejection("gossip_unsigned");
        return (MessageAcceptance::Reject, None);
    };
    if message.topic == IdentTopic::new(MANIFEST_TOPIC).hash() {
        let acceptance = match SignedManifest::decode(&message.data) {
            Err(error) => {
                node.metrics.count_rejection("gossip_malformed_manifest");
                tracing::info!(%source, %error, "malformed manifest gossip");
                MessageAcceptance::Reject
            }
            Ok(signed) => match node.offer_manifest(signed, Origin::Gossip(source)) {
                Ok(Offered::Accepted) => MessageAcceptance::Accept,
                Ok(Offered::AlreadyHeld) => MessageAcceptance::Ignore,
                // Only what no honest peer would relay costs the sender score: relays run the same
                // checks, so a bad signature or a malformed manifest is the sender's own. Trust
                // lists, scopes, name owners and held versions differ between honest nodes, so a
                // manifest refused for those is dropped quietly.
                Err(refusal) if refusal.is_honest_disagreement() => MessageAcceptance::Ignore,
                Err(_) => MessageAcceptance::Reject,
            },
        };
        (acceptance, None)
    } else if message.topic == IdentTopic::new(STATUS_TOPIC).hash() {
        match StatusMessage::decode(&message.data)
            .map_err(|_| StatusRefusal::Invalid("malformed status"))
            .and_then(|status| node.on_status(source, status))
        {
            Ok(differs) => (MessageAcceptance::Accept, differs.map(|d| (source, d))),
            Err(StatusRefusal::Invalid(reason)) => {
                node.metrics.count_rejection("gossip_bad_status");
                tracing::info!(%source, reason, "refused a status message");
                (MessageAcceptance::Reject, None)
            }
            // A peer this node does not know: relayed statuses make no entries (nor dial
            // targets). Not the relay's fault, so not penalised; not relayed further either.
            Err(StatusRefusal::UnknownPeer) => {
                node.metrics.count_rejection("status_unknown_peer");
                (MessageAcceptance::Ignore, None)
            }
        }
    } else {
        node.metrics.count_rejection("gossip_unknown_topic");
        (MessageAcceptance::Reject, None)
    }
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

/// Copies the gossip score of each tracked peer into the peer table (for `/v1/peers`).
fn note_scores(swarm: &Swarm<Behaviour>, node: &Arc<NodeInner>) {
    let gossipsub = &swarm.behaviour().gossipsub;
    for info in node.peers().values_mut() {
        info.gossip_score = gossipsub.peer_score(&info.peer_id);
    }
}

/// Peer exchange: dial peers named in status gossip that this node is not connected to.
fn maybe_dial_new_peers(swarm: &mut Swarm<Behaviour>, node: &Arc<NodeInner>) {
    let connected = swarm.connected_peers().count();
    if connected >= MAX_DIALED_PEERS {
        return;
    }
    let local = *swarm.local_peer_id();
    let now = Instant::now();
    let to_dial: Vec<(PeerId, Vec<Multiaddr>)> = node
        .peers()
        .values()
        .filter(|p| {
            !p.connected
                && !p.dialing
                && p.next_dial.is_none_or(|at| at <= now)
                && p.dial_failures < MAX_DIAL_FAILURES
                && p.peer_id != local
                && !p.addrs.is_empty()
        })
        .take(MAX_DIALED_PEERS - connected)
        .map(|p| (p.peer_id, p.addrs.clone()))
        .collect();
    for (peer, addrs) in to_dial {
        dial_peer(swarm, node, peer, addrs, now);
    }
}

/// Dials a peer at its addresses (unless connected) and marks it as being dialed.
fn dial_peer(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    now: Instant,
) {
    if swarm.is_connected(&peer) {
        return;
    }
    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
        .addresses(addrs)
        .build();
    let dialed = swarm.dial(opts);
    node.metrics.dials.inc();
    if let Some(info) = node.peers().get_mut(&peer) {
        match dialed {
            // Marked so the next status does not dial again while this dial is under way.
            Ok(()) => info.dialing = true,
            Err(_) => info.next_dial = Some(now + REDIAL_AFTER),
        }
    }
}
