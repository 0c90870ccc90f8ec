//! The QUIC data plane (quinn): one endpoint per node, serving and fetching blobs.
//!
//! Protocol `wasmesh/blob/1` (see `wasmesh_protocol::wire`): per stream, the client writes a
//! 4-byte little-endian length and a `BlobRequest`, then finishes its side; the server answers
//! with a 9-byte `BlobHeader` and, when found, exactly `size` bytes of the blob.
//!
//! Bounds: a peer may open at most [`STREAMS_PER_CONNECTION`] streams at once; the node serves
//! at most [`MAX_SERVING`] blobs at once (more get `Busy`) and fetches at most [`MAX_FETCHING`];
//! a request must arrive within [`REQUEST_TIMEOUT`]; a fetch that stalls for [`IDLE_TIMEOUT`]
//! is abandoned, and so is a transfer, either way, slower than [`MIN_TRANSFER_RATE`] (see
//! [`transfer_deadline`]): a peer that trickles or never reads holds no fetch slot or serving
//! permit for long. Flow-control windows are sized for long links (16 MiB per stream): with
//! quinn's defaults one stream over a 40 ms round trip moves only ~17.5 MiB/s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use wasmesh_protocol::wire::{
    BLOB_ALPN, BlobHeader, BlobRequest, INVOKE_ALPN, InvokeReply, InvokeRequest,
    MAX_BLOB_REQUEST_SIZE, MAX_INVOKE_MESSAGE_SIZE,
};
use wasmesh_protocol::{ContentHash, PublicKey};

use crate::admission::Admission;
use crate::connection_limits::ConnectionLimits;
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::tls::{TlsError, TlsIdentity, peer_identity};

/// Streams a peer may have open on one connection.
pub const STREAMS_PER_CONNECTION: u32 = 8;
/// Blobs served at once by this node.
pub const MAX_SERVING: usize = 32;
/// Blobs fetched at once by this node.
pub const MAX_FETCHING: usize = 8;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A transfer that moves no byte for this long is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHUNK: usize = 256 * 1024;

/// The slowest a blob transfer may be, in bytes per second, beyond its first [`IDLE_TIMEOUT`].
pub const MIN_TRANSFER_RATE: u64 = 256 << 10;

/// When a transfer of `size` bytes that starts now must be over.
pub fn transfer_deadline(size: u64) -> tokio::time::Instant {
    tokio::time::Instant::now()
        + IDLE_TIMEOUT
        + Duration::from_millis(size * 1000 / MIN_TRANSFER_RATE)
}
/// Bytes read from disk at once when serving (at most `MAX_SERVING` of these buffers exist).
const SERVE_READ: usize = 4 << 20;

/// Why a blob could not be fetched from one provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No connection could be made (unreachable, wrong key, refused).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The provider's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The provider does not hold the blob.
    #[error("the provider does not hold the blob")]
    NotFound,
    /// The provider is at its transfer limit.
    #[error("the provider is busy")]
    Busy,
    /// The provider broke the protocol (bad header, wrong size, closed early).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No progress within the idle timeout.
    #[error("the transfer stalled")]
    Stalled,
    /// The peer did not acknowledge a request within a few round trips (it is likely down).
    #[error("the peer did not acknowledge the request")]
    Unresponsive,
    /// What arrived does not verify.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs requests forwarded by peers (implemented by the node).
pub trait InvokeHandler: Send + Sync + 'static {
    /// Executes (or refuses) one forwarded request from the peer with key `from`.
    fn handle(
        self: Arc<Self>,
        request: InvokeRequest,
        from: PublicKey,
    ) -> futures::future::BoxFuture<'static, InvokeReply>;
}

/// Time a peer has to send a forwarded request's body.
pub const INVOKE_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A peer's data-plane endpoint and the key its certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The node key.
    pub key: PublicKey,
    /// The QUIC address.
    pub addr: SocketAddr,
}

/// One node's QUIC endpoint.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

/// A connection's peer and protocol (ALPN).
type ConnectionKey = (PublicKey, &'static [u8]);

struct Inner {
    endpoint: Endpoint,
    identity: TlsIdentity,
    transport: Arc<quinn::TransportConfig>,
    connections: Mutex<HashMap<ConnectionKey, Connection>>,
    /// One lock per peer and protocol, held while connecting.
    dialing: Mutex<HashMap<ConnectionKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether admission is checked (a private mesh): connections then end with the peer's
    /// membership.
    private: bool,
    fetching: Semaphore,
    serving: Arc<Semaphore>,
    inbound: ConnectionLimits,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
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

fn common_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .send_window(64 << 20)
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    transport
}

impl DataPlane {
    /// Binds the endpoint at `addr` (port 0 picks one).
    pub fn bind(
        addr: SocketAddr,
        identity: TlsIdentity,
        admission: Admission,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DataPlaneError> {
        let transport = Arc::new(client_transport());
        let private = admission.is_private();
        let tls = identity.server_config(admission, &[BLOB_ALPN, INVOKE_ALPN])?;
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(server_transport()));
        let endpoint = Endpoint::server(server, addr)?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                transport,
                connections: Mutex::default(),
                dialing: Mutex::default(),
                private,
                fetching: Semaphore::new(MAX_FETCHING),
                serving: Arc::new(Semaphore::new(MAX_SERVING)),
                inbound: ConnectionLimits::default(),
                metrics,
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Closes the endpoint.
    pub fn close(&self) {
        self.inner.endpoint.close(VarInt::from_u32(0), b"shutdown");
    }

    /// How many handles to this data plane exist (its connection tasks hold one each). The
    /// endpoint's socket is released when the last one is dropped.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Accepts connections until the endpoint closes, serving blobs from `store` and forwarded
    /// requests through `invoke`.
    pub async fn serve(self, store: Store, invoke: Option<Arc<dyn InvokeHandler>>) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let Some(handshake) = self.inner.inbound.try_handshake() else {
                self.inner.metrics.count_rejection("quic_connection_limit");
                incoming.refuse();
                continue;
            };
            let this = self.clone();
            let store = store.clone();
            let invoke = invoke.clone();
            tokio::spawn(async move {
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(error) => {
                        this.inner.metrics.count_rejection("quic_handshake");
                        tracing::debug!(%error, "refused a QUIC connection");
                        return;
                    }
                };
                let Some(peer) = Self::peer_key(&connection) else {
                    connection.close(VarInt::from_u32(1), b"no peer key");
                    return;
                };
                let Some(_place) = this.inner.inbound.admit(handshake, peer) else {
                    this.inner.metrics.count_rejection("quic_connection_limit");
                    tracing::debug!(peer = %peer.fingerprint(), "too many connections from one peer");
                    connection.close(VarInt::from_u32(4), b"too many connections");
                    return;
                };
                this.close_at_membership_expiry(&connection);
                this.serve_connection(connection, peer, store, invoke).await
            });
        }
    }

    async fn serve_connection(
        &self,
        connection: Connection,
        from: PublicKey,
        store: Store,
        invoke: Option<Arc<dyn InvokeHandler>>,
    ) {
        let alpn = connection
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        match (alpn.as_deref(), invoke) {
            (Some(BLOB_ALPN), _) => {}
            (Some(INVOKE_ALPN), Some(handler)) => {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    let this = self.clone();
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(reason) = this.serve_invoke(send, recv, handler, from).await {
                            this.inner.metrics.count_rejection("invoke_request");
                            tracing::debug!(reason, "refused a forwarded request");
                        }
                    });
                }
                return;
            }
            _ => {
                connection.close(VarInt::from_u32(1), b"unsupported protocol");
                return;
            }
        }
        while let Ok((send, recv)) = connection.accept_bi().await {
            let this = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(reason) = this.serve_blob(send, recv, &store).await {
                    this.inner.metrics.count_rejection("blob_request");
                    tracing::debug!(reason, "refused a blob request");
                }
            });
        }
    }

    async fn serve_blob(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        store: &Store,
    ) -> Result<(), &'static str> {
        let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut recv))
            .await
            .map_err(|_| "request timed out")??;
        let header_and_file = match self.inner.serving.clone().try_acquire_owned() {
            Err(_) => (BlobHeader::Busy, None),
            Ok(permit) => match store.open_blob(&request.hash) {
                Ok((file, size)) => (BlobHeader::Found { size }, Some((file, permit))),
                Err(_) => (BlobHeader::NotFound, None),
            },
        };
        let (header, file) = header_and_file;
        send.write_all(&header.encode())
            .await
            .map_err(|_| "peer went away")?;
        if let (Some((file, _permit)), BlobHeader::Found { size }) = (file, header) {
            let mut file = tokio::fs::File::from_std(file);
            // Large reads: each one is a round trip through the blocking pool.
            file.set_max_buf_size(SERVE_READ);
            let mut buffer = vec![0u8; SERVE_READ];
            let sending = async {
                loop {
                    let n = file.read(&mut buffer).await.map_err(|_| "read failed")?;
                    if n == 0 {
                        return Ok::<(), &'static str>(());
                    }
                    send.write_all(&buffer[..n])
                        .await
                        .map_err(|_| "peer went away")?;
                }
            };
            tokio::time::timeout_at(transfer_deadline(size), sending)
                .await
                .map_err(|_| "the peer reads below the minimum rate")??;
            self.inner.metrics.blobs_served.inc();
        }
        send.finish().map_err(|_| "peer went away")?;
        // Wait until the peer has the data (or leaves) before dropping the stream.
        let _ = send.stopped().await;
        Ok(())
    }

    async fn serve_invoke(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        handler: Arc<dyn InvokeHandler>,
        from: PublicKey,
    ) -> Result<(), &'static str> {
        let bytes = tokio::time::timeout(
            INVOKE_READ_TIMEOUT,
            read_framed(&mut recv, MAX_INVOKE_MESSAGE_SIZE),
        )
        .await
        .map_err(|_| "request timed out")??;
        let request = InvokeRequest::decode(&bytes).map_err(|_| "malformed request")?;
        let reply = handler.handle(request, from).await;
        write_framed(&mut send, &reply.encode())
            .await
            .map_err(|_| "peer went away")?;
        send.finish().map_err(|_| "peer went away")?;
        let _ = send.stopped().await;
        Ok(())
    }

    /// Sends a request to `peer` and waits for its reply, for at most `timeout`.
    ///
    /// A peer that has died without closing its connection would hold the request until
    /// `timeout`; so the peer's QUIC stack must acknowledge the whole request within
    /// `ack_within` (a few round trips), or the call fails with [`FetchError::Unresponsive`] and
    /// the caller can try elsewhere while time is left.
    pub async fn invoke(
        &self,
        peer: PeerAddr,
        request: &InvokeRequest,
        timeout: Duration,
        ack_within: Duration,
    ) -> Result<InvokeReply, FetchError> {
        let exchange = async {
            let protocol = |e: &dyn std::fmt::Display| FetchError::Protocol(e.to_string());
            // Handing the request to QUIC must not wait on a dead peer either: a stale
            // connection can have no stream credit left.
            let hand_over = async {
                let connection = self.connect(peer, INVOKE_ALPN).await?;
                let (mut send, recv) = connection.open_bi().await.map_err(|e| protocol(&e))?;
                write_framed(&mut send, &request.encode())
                    .await
                    .map_err(|e| protocol(&e))?;
                send.finish().map_err(|e| protocol(&e))?;
                Ok::<_, FetchError>((send, recv))
            };
            let (send, mut recv) = tokio::time::timeout(ack_within, hand_over)
                .await
                .map_err(|_| FetchError::Unresponsive)??;
            let reply = read_framed(&mut recv, MAX_INVOKE_MESSAGE_SIZE);
            tokio::pin!(reply);
            let acknowledged = tokio::time::timeout(ack_within, send.stopped());
            let bytes = tokio::select! {
                bytes = &mut reply => bytes,
                acked = acknowledged => match acked {
                    Ok(_) => reply.await,
                    Err(_) => return Err(FetchError::Unresponsive),
                },
            }
            .map_err(|e| protocol(&e))?;
            InvokeReply::decode(&bytes).map_err(|e| protocol(&e))
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Stalled)
            .and_then(|r| r);
        if matches!(result, Err(FetchError::Unresponsive | FetchError::Stalled)) {
            // The connection is likely dead (the peer crashed or restarted): the next request
            // opens a new one.
            self.forget(peer, INVOKE_ALPN);
        }
        result
    }

    /// Closes and drops the cached connection to `peer` for `alpn`.
    fn forget(&self, peer: PeerAddr, alpn: &'static [u8]) {
        if let Some(connection) = lock(&self.inner.connections).remove(&(peer.key, alpn)) {
            connection.close(0u32.into(), b"unresponsive");
        }
    }

    async fn connect(&self, peer: PeerAddr, alpn: &'static [u8]) -> Result<Connection, FetchError> {
        let key = (peer.key, alpn);
        let cached = || {
            lock(&self.inner.connections)
                .get(&key)
                .filter(|c| c.close_reason().is_none() && c.remote_address() == peer.addr)
                .cloned()
        };
        if let Some(connection) = cached() {
            return Ok(connection);
        }
        // One handshake per peer and protocol at a time: a burst of requests to a peer not yet
        // connected shares one connection (peers cap the connections they accept from one key).
        let dialing = lock(&self.inner.dialing).entry(key).or_default().clone();
        let turn = dialing.lock().await;
        let connected = match cached() {
            Some(connection) => Ok(connection),
            None => self.handshake(peer, alpn).await,
        };
        if let Ok(connection) = &connected {
            lock(&self.inner.connections).insert(key, connection.clone());
        }
        drop(turn);
        let mut dialing_map = lock(&self.inner.dialing);
        // The map's handle and this one: nobody else is waiting.
        if Arc::strong_count(&dialing) <= 2 {
            dialing_map.remove(&key);
        }
        connected
    }

    async fn handshake(
        &self,
        peer: PeerAddr,
        alpn: &'static [u8],
    ) -> Result<Connection, FetchError> {
        let fail = |reason: String| FetchError::Connect {
            addr: peer.addr,
            reason,
        };
        let tls = self
            .inner
            .identity
            .client_config(peer.key, alpn)
            .map_err(|e| fail(e.to_string()))?;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| fail(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.inner.transport.clone());
        let connecting = self
            .inner
            .endpoint
            .connect_with(config, peer.addr, "wasmesh")
            .map_err(|e| fail(e.to_string()))?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        self.close_at_membership_expiry(&connection);
        Ok(connection)
    }

    /// In a private mesh, admission was checked at the handshake: the connection is closed when
    /// the peer's membership certificate expires (a reconnection is then refused).
    fn close_at_membership_expiry(&self, connection: &Connection) {
        let Some(expires_ms) =
            Self::peer_membership_expiry(connection).filter(|_| self.inner.private)
        else {
            return;
        };
        let left = Duration::from_millis(expires_ms.saturating_sub(crate::clock::now_ms()));
        let (connection, metrics) = (connection.clone(), self.inner.metrics.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection.closed() => {}
                _ = tokio::time::sleep(left) => {
                    metrics.count_rejection("membership_expired");
                    tracing::info!(peer = %connection.remote_address(), "membership expired; closing the QUIC connection");
                    connection.close(VarInt::from_u32(3), b"membership expired");
                }
            }
        });
    }

    /// When the membership certificate the peer presented expires (ms since the Unix epoch).
    fn peer_membership_expiry(connection: &Connection) -> Option<u64> {
        let certs = connection
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        let (_, membership) = peer_identity(certs.first()?).ok()?;
        Some(membership?.cert.expires_at_ms)
    }

    /// Fetches the blob `hash` of `size` bytes from `provider` into `store`, verifying it.
    pub async fn fetch_blob(
        &self,
        provider: PeerAddr,
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<(), FetchError> {
        let _slot = self
            .inner
            .fetching
            .acquire()
            .await
            .map_err(|_| FetchError::Protocol("shutting down".into()))?;
        let connection = self.connect(provider, BLOB_ALPN).await?;
        let protocol = |what: &str| FetchError::Protocol(what.to_owned());
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| protocol(&e.to_string()))?;
        write_framed(&mut send, &BlobRequest { hash }.encode())
            .await
            .map_err(|e| protocol(&e.to_string()))?;
        send.finish().map_err(|e| protocol(&e.to_string()))?;

        let mut header = [0u8; BlobHeader::SIZE];
        tokio::time::timeout(IDLE_TIMEOUT, recv.read_exact(&mut header))
            .await
            .map_err(|_| FetchError::Stalled)?
            .map_err(|e| protocol(&e.to_string()))?;
        match BlobHeader::decode(&header).map_err(|e| protocol(&e.to_string()))? {
            BlobHeader::Found { size: offered } if offered == size => {}
            BlobHeader::Found { size: offered } => {
                return Err(protocol(&format!(
                    "offered {offered} bytes, expected {size}"
                )));
            }
            BlobHeader::NotFound => return Err(FetchError::NotFound),
            BlobHeader::Busy => return Err(FetchError::Busy),
        }

        // Receiving and verifying overlap: a blocking thread hashes and writes each chunk
        // while the next one arrives (at most 16 chunks, 4 MiB, in between).
        let writer = store.blob_writer(hash, size).map_err(StoreError::Io)?;
        let (chunks, incoming) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
        let verify = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            for chunk in incoming {
                writer.write(&chunk)?;
            }
            Ok::<_, StoreError>(writer)
        });
        let deadline = transfer_deadline(size);
        let received: Result<(), FetchError> = async {
            let mut progress = FetchProgress::new(hash, size);
            loop {
                if tokio::time::Instant::now() >= deadline {
                    tracing::info!(hash = %hash.short(), "the provider sends below the minimum rate");
                    return Err(FetchError::Stalled);
                }
                let idle_until = deadline.min(tokio::time::Instant::now() + IDLE_TIMEOUT);
                let chunk = tokio::time::timeout_at(idle_until, recv.read_chunk(CHUNK, true))
                    .await
                    .map_err(|_| FetchError::Stalled)?
                    .map_err(|e| protocol(&e.to_string()))?;
                let Some(chunk) = chunk else { return Ok(()) };
                progress.advance(chunk.bytes.len());
                if chunks.send(chunk.bytes).is_err() {
                    // The writer stopped early (too many bytes); its error is reported below.
                    return Ok(());
                }
            }
        }
        .await;
        drop(chunks);
        let writer = verify.await.map_err(|e| protocol(&e.to_string()))??;
        received?;
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| protocol(&e.to_string()))??;
        self.inner.metrics.blobs_fetched.inc();
        Ok(())
    }

    /// Fetches from the first provider that delivers a verified blob, trying them in order.
    /// Returns the failures of the providers tried before.
    pub async fn fetch_from_any(
        &self,
        providers: &[PeerAddr],
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<Vec<(PeerAddr, FetchError)>, Vec<(PeerAddr, FetchError)>> {
        let mut failures = Vec::new();
        for provider in providers {
            match self.fetch_blob(*provider, hash, size, store).await {
                Ok(()) => return Ok(failures),
                Err(error) => {
                    if matches!(error, FetchError::Store(StoreError::HashMismatch { .. })) {
                        self.inner.metrics.count_rejection("blob_hash_mismatch");
                    }
                    tracing::warn!(
                        hash = %hash.short(),
                        provider = %provider.key.fingerprint(),
                        %error,
                        "blob fetch failed; trying the next provider"
                    );
                    failures.push((*provider, error));
                }
            }
        }
        Err(failures)
    }

    /// The node key of the peer on `connection`.
    pub fn peer_key(connection: &Connection) -> Option<PublicKey> {
        let certs = connection
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        peer_identity(certs.first()?).ok().map(|(key, _)| key)
    }
}

/// Logs the progress of large fetches, every quarter.
struct FetchProgress {
    hash: ContentHash,
    size: u64,
    received: u64,
    next_quarter: u64,
    started: std::time::Instant,
}

impl FetchProgress {
    /// Blobs smaller than this are fetched silently.
    const LARGE: u64 = 8 << 20;

    fn new(hash: ContentHash, size: u64) -> Self {
        Self {
            hash,
            size,
            received: 0,
            next_quarter: 1,
            started: std::time::Instant::now(),
        }
    }

    fn advance(&mut self, bytes: usize) {
        self.received += bytes as u64;
        if self.size < Self::LARGE {
            return;
        }
        while self.next_quarter <= 4 && self.received * 4 >= self.size * self.next_quarter {
            let mib_s = self.received as f64
                / (1 << 20) as f64
                / self.started.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(
                hash = %self.hash.short(),
                done = format!("{}%", self.next_quarter * 25),
                mib_s = format!("{mib_s:.0}"),
                "fetching blob"
            );
            self.next_quarter += 1;
        }
    }
}

async fn read_request(recv: &mut quinn::RecvStream) -> Result<BlobRequest, &'static str> {
    let bytes = read_framed(recv, MAX_BLOB_REQUEST_SIZE).await?;
    BlobRequest::decode(&bytes).map_err(|_| "malformed request")
}

/// Reads a 4-byte little-endian length and that many bytes (at most `limit`).
async fn read_framed(recv: &mut quinn::RecvStream, limit: usize) -> Result<Vec<u8>, &'static str> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len)
        .await
        .map_err(|_| "truncated message")?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err("oversized message");
    }
    // Grown as bytes arrive, never allocated up front from what the peer claims: a peer that
    // announces 64 MiB and sends nothing costs this node nothing.
    let mut bytes = Vec::with_capacity(len.min(FRAME_PREALLOCATE));
    (&mut *recv)
        .take(len as u64)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| "truncated message")?;
    if bytes.len() != len {
        return Err("truncated message");
    }
    Ok(bytes)
}

/// What a framed read reserves before any of its bytes arrive.
const FRAME_PREALLOCATE: usize = 64 << 10;

/// Writes a 4-byte little-endian length and the bytes.
async fn write_framed(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), quinn::WriteError> {
    send.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    send.write_all(bytes).await
}
