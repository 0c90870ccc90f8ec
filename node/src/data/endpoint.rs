//! The QUIC endpoint: binding with TLS (node-key certificates, ALPN per protocol), the transport
//! settings of each direction, and the cache of outgoing connections, one per peer and
//! protocol. In a private mesh, every connection ends when the peer's membership does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use tokio_util::task::TaskTracker;
use wasmesh_keys::SignedMembershipCert;
use wasmesh_protocol::PublicKey;
use wasmesh_protocol::wire::{BLOB_ALPN, INVOKE_ALPN, REACH_ALPN};

use crate::admission::Admission;
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::tls::{TlsError, TlsIdentity, peer_identity};

/// Streams a peer may have open on one connection: room for its whole share of this node's
/// forwarded requests (`forward_shares`), so that work beyond what a node takes is answered
/// `Busy` at once rather than left waiting for stream credit, where it would look like a peer
/// that stopped answering. Each stream is bounded by the stream window and its read deadline.
pub const STREAMS_PER_CONNECTION: u32 = 128;
/// Time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing endpoint waits for its port to be free, and how often it looks.
const RELEASE_DEADLINE: Duration = Duration::from_secs(2);
const RELEASE_POLL: Duration = Duration::from_millis(1);

/// A peer's data-plane endpoint and the key its certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The node key.
    pub key: PublicKey,
    /// The QUIC address.
    pub addr: SocketAddr,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataPlaneError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind the QUIC endpoint: {0}")]
    Bind(#[from] std::io::Error),
}

/// Why no connection could be made to a peer (unreachable, wrong key, refused, timed out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {addr}: {reason}")]
pub struct ConnectError {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Why.
    pub reason: String,
}

/// A connection's peer and protocol (ALPN).
pub(super) type ConnectionKey = (PublicKey, &'static [u8]);

/// The rendezvous a peer behind a NAT stands on, by its node key (none for a public peer).
pub type RendezvousOf = Arc<dyn Fn(PublicKey) -> Vec<PeerAddr> + Send + Sync>;

/// What reaching peers behind NATs needs from the rest of the node (`traversal`).
#[derive(Clone)]
pub struct ReachSettings {
    /// Where the rendezvous of a peer are.
    pub rendezvous_of: RendezvousOf,
    /// Whether a punch or a relay may send packets to loopback, private and link-local
    /// addresses (as the node's policy says of every address peers name).
    pub allow_private_addrs: bool,
}

impl std::fmt::Debug for ReachSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReachSettings")
            .field("allow_private_addrs", &self.allow_private_addrs)
            .finish_non_exhaustive()
    }
}

/// The endpoint and its outgoing connections.
pub(crate) struct Connections {
    endpoint: Endpoint,
    identity: TlsIdentity,
    transport: Arc<quinn::TransportConfig>,
    cached: Mutex<HashMap<ConnectionKey, Connection>>,
    /// One lock per peer and protocol, held while connecting.
    dialing: Mutex<HashMap<ConnectionKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Who may be served and used: in a private mesh, connections end with the peer's
    /// membership.
    admission: Admission,
    /// How peers behind NATs are reached, once set (until then, only directly).
    pub(super) reach: OnceLock<ReachSettings>,
    /// The relay sessions that reach peers no punched handshake got through to, by key.
    pub(super) relayed: Mutex<HashMap<PublicKey, SocketAddr>>,
    pub(super) metrics: Arc<Metrics>,
    tasks: TaskTracker,
}

/// The transport of connections this node opens (fetching blobs, forwarding requests): large
/// receive windows, so that a blob arrives at the speed of the link even far away (16 MiB is
/// the bandwidth-delay product of 1 Gbit/s at 130 ms).
fn client_transport() -> quinn::TransportConfig {
    let mut transport = common_transport();
    transport
        .stream_receive_window(VarInt::from_u32(16 << 20))
        .receive_window(VarInt::from_u32(64 << 20));
    transport
}

/// The transport of connections peers open to this node. What arrives on them is requests
/// (a blob request is a few bytes, a forwarded request at most its body), so the receive
/// windows are small: they bound what a peer can make this node buffer.
fn server_transport() -> quinn::TransportConfig {
    let mut transport = common_transport();
    transport
        .stream_receive_window(VarInt::from_u32(2 << 20))
        .receive_window(VarInt::from_u32(4 << 20));
    transport
}

/// Bytes a connection may have in flight towards a peer (a blob's ranges at the speed of a
/// long, fast link).
const SEND_WINDOW: u64 = 64 << 20;
/// How often an idle connection is kept alive, so a cached one is ready for the next forward.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Silence after which a connection is dead (ms).
const IDLE_TIMEOUT_MS: u32 = 30_000;

fn common_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    transport
}

impl Connections {
    /// Binds the endpoint at `addr` (port 0 picks one), accepting the blob and invoke protocols
    /// from peers `admission` lets in.
    pub(crate) fn bind(
        addr: SocketAddr,
        identity: TlsIdentity,
        admission: Admission,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
    ) -> Result<Self, DataPlaneError> {
        let tls =
            identity.server_config(admission.clone(), &[BLOB_ALPN, INVOKE_ALPN, REACH_ALPN])?;
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(server_transport()));
        let endpoint = Endpoint::server(server, addr)?;
        Ok(Self {
            endpoint,
            identity,
            transport: Arc::new(client_transport()),
            cached: Mutex::default(),
            dialing: Mutex::default(),
            admission,
            reach: OnceLock::new(),
            relayed: Mutex::default(),
            metrics,
            tasks,
        })
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Moves the (closed) endpoint to an ephemeral socket on the same interface, releasing its
    /// port while its connections drain (up to three probe timeouts, seconds when a peer has
    /// gone silent). quinn keeps the socket it leaves until a packet arrives on the new one, so
    /// the endpoint moves twice: the second move drops the first socket.
    /// Returns once the port is free (the connections drop their handles to the first socket
    /// as their tasks next run), or after [`RELEASE_DEADLINE`].
    pub(crate) async fn release_port(&self) -> std::io::Result<()> {
        let port = self.endpoint.local_addr()?;
        // A connection that has finished draining no longer hears of a move, and its handle
        // keeps the socket it was made on: the cache lets go of them first.
        crate::lock::lock(&self.cached).clear();
        for _ in 0..2 {
            let throwaway = std::net::UdpSocket::bind(SocketAddr::new(port.ip(), 0))?;
            self.endpoint.rebind(throwaway)?;
        }
        let deadline = tokio::time::Instant::now() + RELEASE_DEADLINE;
        while std::net::UdpSocket::bind(port).is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{port} still bound after {RELEASE_DEADLINE:?}"),
                ));
            }
            tokio::time::sleep(RELEASE_POLL).await;
        }
        Ok(())
    }

    /// The connection to `peer` for `alpn`: the cached one while it is open, else a new one
    /// (one handshake per peer and protocol at a time). A node behind a NAT first asks its
    /// rendezvous to introduce it, so the peer's NAT, if it has one, lets the handshake in.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        peer: PeerAddr,
        alpn: &'static [u8],
    ) -> Result<Connection, ConnectError> {
        self.connect_introduced(peer, alpn, alpn != REACH_ALPN)
            .await
    }

    /// [`Connections::connect`], asking the rendezvous for an introduction first if
    /// `introduce` (a dial that answers a punch request must not ask for one in turn).
    ///
    /// The dial runs on a task of its own: a caller that stops waiting (a request whose peer
    /// did not answer in time) does not cancel it, so a path that takes a while to find (an
    /// introduction, a relay session) is found once, and the next caller takes it.
    ///
    /// A boxed `Send` future, as the dial may open reach connections through this in turn.
    pub(crate) fn connect_introduced(
        self: &Arc<Self>,
        peer: PeerAddr,
        alpn: &'static [u8],
        introduce: bool,
    ) -> BoxFuture<'static, Result<Connection, ConnectError>> {
        let key = (peer.key, alpn);
        if let Some(connection) = self.cached(key, peer) {
            return Box::pin(std::future::ready(Ok(connection)));
        }
        // A burst of requests to a peer not yet connected shares one connection (peers cap the
        // connections they accept from one key).
        let dialing = lock(&self.dialing).entry(key).or_default().clone();
        let this = self.clone();
        let dial = self.tasks.spawn(async move {
            let turn = dialing.clone().lock_owned().await;
            let connected = match this.cached(key, peer) {
                Some(connection) => Ok(connection),
                None => this.dial(peer, alpn, introduce).await,
            };
            if let Ok(connection) = &connected {
                lock(&this.cached).insert(key, connection.clone());
            }
            drop(turn);
            let mut dialing_map = lock(&this.dialing);
            // The map's handle and this one: nobody else is waiting.
            if Arc::strong_count(&dialing) <= 2 {
                dialing_map.remove(&key);
            }
            connected
        });
        Box::pin(async move {
            dial.await.unwrap_or_else(|_| {
                Err(ConnectError {
                    addr: peer.addr,
                    reason: "the dial was stopped (the node is stopping)".into(),
                })
            })
        })
    }

    /// The open connection to `peer` for the protocol of `key`, if one is cached: made to its
    /// address, or through the relay session that reaches it.
    fn cached(&self, key: ConnectionKey, peer: PeerAddr) -> Option<Connection> {
        lock(&self.cached)
            .get(&key)
            .filter(|c| {
                c.close_reason().is_none()
                    && (c.remote_address() == peer.addr
                        || self.relayed_path(peer.key) == Some(c.remote_address()))
            })
            .cloned()
    }

    /// Keeps `connection` for the peer and protocol of `key`, unless an open one is kept.
    pub(super) fn keep_unless_open(&self, key: ConnectionKey, connection: Connection) {
        let mut cached = lock(&self.cached);
        if cached.get(&key).is_none_or(|c| c.close_reason().is_some()) {
            cached.insert(key, connection);
        }
    }

    /// Tells this node how to reach peers behind NATs (set once).
    pub(crate) fn set_reach(&self, settings: ReachSettings) {
        let _ = self.reach.set(settings);
    }

    /// Whether an address a rendezvous named (a punch, a relay session) may be sent packets
    /// to: a rendezvous must not steer this node to its own host or LAN (`address_scope`).
    pub(crate) fn may_send_to(&self, addr: &SocketAddr) -> bool {
        let allow_private_addrs = self.reach.get().is_some_and(|r| r.allow_private_addrs);
        crate::address_scope::socket_is_dialable(addr, allow_private_addrs)
    }

    /// Drops the cached connection to `peer` for `alpn` (it may be dead: the next request
    /// opens a new one). It is not closed: the requests in flight on it go on, and fail on
    /// their own if the peer is gone; it closes once the last of them ends.
    pub(crate) fn forget(&self, peer: PeerAddr, alpn: &'static [u8]) {
        let forgotten = lock(&self.cached).remove(&(peer.key, alpn));
        // A connection through a relay session that went silent: the relay may be gone, so
        // the next dial looks for a path afresh.
        let mut relayed = lock(&self.relayed);
        if forgotten.is_some_and(|c| relayed.get(&peer.key) == Some(&c.remote_address())) {
            relayed.remove(&peer.key);
        }
    }

    /// A handshake with `peer` for `alpn`, within `within`.
    pub(super) async fn handshake(
        &self,
        peer: PeerAddr,
        alpn: &'static [u8],
        within: Duration,
    ) -> Result<Connection, ConnectError> {
        let fail = |reason: String| ConnectError {
            addr: peer.addr,
            reason,
        };
        let config = self.client_config(peer, alpn)?;
        // quinn's connection driver takes the current span and keeps it while the connection
        // lives: it is made with no span current (a request's trace must end with the request).
        let connecting = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
            self.endpoint.connect_with(config, peer.addr, "wasmesh")
        })
        .map_err(|e| fail(e.to_string()))?;
        let connection = tokio::time::timeout(within, connecting)
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        self.close_at_membership_expiry(&connection);
        Ok(connection)
    }

    /// The client side of a handshake with `peer` for `alpn`: its key checked, this node's
    /// presented, the transport of the connections this node opens.
    pub(super) fn client_config(
        &self,
        peer: PeerAddr,
        alpn: &'static [u8],
    ) -> Result<quinn::ClientConfig, ConnectError> {
        let fail = |reason: String| ConnectError {
            addr: peer.addr,
            reason,
        };
        let tls = self
            .identity
            .client_config(peer.key, &self.admission, alpn)
            .map_err(|e| fail(e.to_string()))?;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| fail(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }

    /// In a private mesh, admission was checked at the handshake: the connection is closed when
    /// the peer's membership certificate expires (a reconnection is then refused).
    pub(crate) fn close_at_membership_expiry(&self, connection: &Connection) {
        let private = self.admission.is_private();
        let Some(expires_ms) = peer_membership_expiry(connection).filter(|_| private) else {
            return;
        };
        let left = Duration::from_millis(expires_ms.saturating_sub(crate::clock::now_ms()));
        let (connection, metrics) = (connection.clone(), self.metrics.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                _ = connection.closed() => {}
                _ = tokio::time::sleep(left) => {
                    metrics.count_rejection(Rejection::MembershipExpired);
                    tracing::info!(peer = %connection.remote_address(), "membership expired; closing the QUIC connection");
                    super::CloseCode::MembershipExpired.close(&connection);
                }
            }
        });
    }
}

/// The node key and membership certificate the peer on `connection` presented.
fn presented_identity(
    connection: &Connection,
) -> Option<(PublicKey, Option<SignedMembershipCert>)> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    peer_identity(certs.first()?).ok()
}

/// When the membership certificate the peer presented expires (ms since the Unix epoch).
fn peer_membership_expiry(connection: &Connection) -> Option<u64> {
    Some(presented_identity(connection)?.1?.cert.expires_at_ms)
}

/// The node key of the peer on `connection`.
pub fn peer_key(connection: &Connection) -> Option<PublicKey> {
    presented_identity(connection).map(|(key, _)| key)
}

/// The protocol (ALPN) a connection agreed on.
pub(crate) fn protocol_of(connection: &Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
}
