//! The QUIC data plane (quinn): one endpoint per node, in four parts.
//!
//! - [`endpoint`]: binding, TLS with node-key certificates, one ALPN per protocol, transport
//!   settings (flow-control windows sized for long links on the connections this node opens,
//!   small ones on those peers open), and the cache of outgoing connections.
//! - [`blobs`]: serving ranges of content-addressed blobs; [`blob_fetch`]: fetching one blob in
//!   verified ranges from several providers at once.
//! - [`invoke`]: serving and sending forwarded requests.
//!
//! [`DataPlane`] ties them together: it accepts connections (at most 64 handshakes at a time,
//! each within 3 s and proving its source address once more than 8 are in progress; 256
//! connections in total and 4 per peer key: see `connection_limits`) and hands each stream to
//! the part its protocol names.
//! Every task it starts is tracked, and [`DataPlane::shutdown`] waits for them.

use crate::rejection::Rejection;

pub mod blob_fetch;
pub mod blobs;
mod close_code;
pub mod endpoint;
mod framing;
pub mod invoke;
mod possession;
mod range_compression;
mod reach;
pub mod relay;
mod seen;
pub mod traversal;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::Connection;
use tokio_util::task::TaskTracker;
use wasmesh_protocol::wire::{BLOB_ALPN, INVOKE_ALPN, InvokeReply, InvokeRequest, REACH_ALPN};
use wasmesh_protocol::{ContentHash, PublicKey};

pub use self::blob_fetch::{FetchError, FetchReport, MAX_PROVIDERS};
pub use self::close_code::CloseCode;
pub use self::endpoint::{ConnectError, DataPlaneError, PeerAddr, ReachSettings, peer_key};
pub use self::framing::{FrameError, RequestError};
pub use self::invoke::{ForwardError, InvokeHandler};
pub use self::reach::MAX_DIAL_BACKS;
pub use self::seen::SeenHook;

use crate::admission::Admission;
use crate::connection_limits::{Arrival, ConnectionLimits, HANDSHAKE_TIMEOUT};
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::TlsIdentity;

/// One node's QUIC endpoint, serving and fetching blobs and forwarded requests.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Arc<endpoint::Connections>,
    blobs: blobs::Blobs,
    fetcher: blob_fetch::BlobFetcher,
    inbound: ConnectionLimits,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    /// Forwarded requests being answered now (refusals included), until their reply is sent.
    answering: AtomicU32,
    /// Told of each peer's connection as it opens and closes, once set.
    seen: Arc<seen::SeenConnections>,
    /// The reach connections NATed nodes keep to this node.
    rendezvous: Arc<reach::Rendezvous>,
    /// The reach connections this node keeps to its rendezvous whose punch requests are being
    /// answered (by `stable_id`).
    standing: Mutex<HashSet<usize>>,
    /// Places for dials that answer punch requests (at most [`MAX_PUNCH_DIALS`] at once).
    punch_dials: Arc<tokio::sync::Semaphore>,
}

/// What a rendezvous observed of this node when it first stood on it (see
/// [`DataPlane::stand_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenByRendezvous {
    /// Where the node's packets come from (its NAT's mapping).
    pub seen: SocketAddr,
    /// Whether a handshake from a port the node never sent to reached it there (`None`: the
    /// rendezvous did not try).
    pub dialed_back: Option<bool>,
}

/// Dials answering punch requests under way at once, at most: each is a handshake toward an
/// address a rendezvous named, on behalf of a node that asked it.
pub const MAX_PUNCH_DIALS: usize = 16;

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// Binds the endpoint at `addr` (port 0 picks one).
    pub fn bind(
        addr: SocketAddr,
        identity: TlsIdentity,
        admission: Admission,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DataPlaneError> {
        let tasks = TaskTracker::new();
        let connections =
            endpoint::Connections::bind(addr, identity, admission, metrics.clone(), tasks.clone())
                .map(Arc::new)?;
        let rendezvous = Arc::new(reach::Rendezvous::new(
            addr.ip(),
            connections.clone(),
            metrics.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                connections,
                blobs: blobs::Blobs::new(metrics.clone()),
                fetcher: blob_fetch::BlobFetcher::new(metrics.clone()),
                inbound: ConnectionLimits::default(),
                metrics,
                tasks,
                answering: AtomicU32::new(0),
                seen: Arc::default(),
                rendezvous,
                standing: Mutex::default(),
                punch_dials: Arc::new(tokio::sync::Semaphore::new(MAX_PUNCH_DIALS)),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.connections.endpoint().local_addr()
    }

    /// Closes the endpoint: every connection ends, and the tasks serving them with it.
    pub fn close(&self) {
        self.inner
            .connections
            .endpoint()
            .close(CloseCode::Shutdown.code(), CloseCode::Shutdown.text());
    }

    /// Closes the endpoint, waits until every task it started has ended, and releases its
    /// port at once: the closing connections finish draining on a throwaway socket, so that a
    /// node restarted in the same process can bind the same address right away.
    pub async fn shutdown(&self) {
        self.close();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if let Err(error) = self.inner.connections.release_port().await {
            tracing::warn!(%error, "cannot release the QUIC port; it stays bound while connections drain");
        }
    }

    /// Tells `hook` of every peer connection accepted from now on, as it opens and closes (set
    /// once; later calls are ignored).
    pub fn on_peer_seen(&self, hook: SeenHook) {
        self.inner.seen.set_hook(hook);
    }

    /// Tells the data plane how to reach peers behind NATs: where their rendezvous are (see
    /// `core::peers::data_path`), so its dials to such a peer ask for an introduction, and
    /// which addresses a rendezvous may name (set once).
    pub fn enable_reach(&self, settings: endpoint::ReachSettings) {
        self.inner.connections.set_reach(settings);
    }

    /// Forwarded requests being answered now, refusals included (a stopping node waits for
    /// them before it closes its connections).
    pub fn answering(&self) -> u32 {
        self.inner.answering.load(Ordering::Relaxed)
    }

    /// How many handles to this data plane exist (its connection tasks hold one each). The
    /// endpoint's socket is released when the last one is dropped.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Accepts connections until the endpoint closes, serving blobs from `store` and forwarded
    /// requests through `invoke`. Handshakes are bounded apart from established connections,
    /// must finish within a deadline, and prove their source address once many are in
    /// progress (see `connection_limits`).
    pub async fn serve(self, store: Store, invoke: Option<Arc<dyn InvokeHandler>>) {
        while let Some(incoming) = self.inner.connections.endpoint().accept().await {
            let handshake = match self
                .inner
                .inbound
                .arrival(incoming.remote_address_validated())
            {
                Arrival::Proceed(handshake) => handshake,
                Arrival::Validate => {
                    self.inner.metrics.count_rejection(Rejection::QuicRetry);
                    if let Err(error) = incoming.retry() {
                        // It answered a Retry already: its address is proved, the places are not.
                        error.into_incoming().refuse();
                    }
                    continue;
                }
                Arrival::Refuse => {
                    self.inner
                        .metrics
                        .count_rejection(Rejection::QuicHandshakeLimit);
                    incoming.refuse();
                    continue;
                }
            };
            let this = self.clone();
            let store = store.clone();
            let invoke = invoke.clone();
            self.inner.tasks.spawn(async move {
                let connecting = match incoming.accept() {
                    Ok(connecting) => connecting,
                    Err(error) => {
                        this.inner.metrics.count_rejection(Rejection::QuicHandshake);
                        tracing::debug!(%error, "refused a QUIC connection");
                        return;
                    }
                };
                let connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await
                {
                    Ok(Ok(connection)) => connection,
                    Ok(Err(error)) => {
                        this.inner.metrics.count_rejection(Rejection::QuicHandshake);
                        tracing::debug!(%error, "refused a QUIC connection");
                        return;
                    }
                    Err(_) => {
                        this.inner.metrics.count_rejection(Rejection::QuicHandshakeTimeout);
                        tracing::debug!("a QUIC handshake took too long; dropped");
                        return;
                    }
                };
                let Some(peer) = peer_key(&connection) else {
                    CloseCode::NoPeerKey.close(&connection);
                    return;
                };
                let _place = match this.inner.inbound.admit(handshake, peer) {
                    Ok(place) => place,
                    Err(no_place) => {
                        this.inner.metrics.count_rejection(Rejection::QuicConnectionLimit);
                        tracing::debug!(peer = %peer.fingerprint(), ?no_place, "no place for a QUIC connection");
                        CloseCode::TooManyConnections.close(&connection);
                        return;
                    }
                };
                this.inner
                    .connections
                    .close_at_membership_expiry(&connection);
                let _seen = this.inner.seen.opened(peer, connection.remote_address());
                this.serve_connection(connection, peer, store, invoke).await
            });
        }
    }

    /// Serves the streams of one accepted connection with the part its protocol names.
    async fn serve_connection(
        &self,
        connection: Connection,
        from: PublicKey,
        store: Store,
        invoke: Option<Arc<dyn InvokeHandler>>,
    ) {
        match (endpoint::protocol_of(&connection).as_deref(), invoke) {
            (Some(BLOB_ALPN), _) => {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    let this = self.clone();
                    let store = store.clone();
                    self.inner.tasks.spawn(async move {
                        if let Err(error) = this.inner.blobs.serve(send, recv, &store).await {
                            this.inner.metrics.count_rejection(Rejection::BlobRequest);
                            tracing::debug!(%error, "refused a blob request");
                        }
                    });
                }
            }
            (Some(INVOKE_ALPN), Some(handler)) => {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    let this = self.clone();
                    let handler = handler.clone();
                    self.inner.tasks.spawn(async move {
                        let _answering = crate::counted::Counted::enter(&this.inner.answering);
                        let metrics = &this.inner.metrics;
                        if let Err(error) = invoke::serve(send, recv, handler, from, metrics).await
                        {
                            metrics.count_rejection(Rejection::InvokeRequest);
                            tracing::debug!(%error, "refused a forwarded request");
                        }
                    });
                }
            }
            (Some(REACH_ALPN), _) => {
                let rendezvous = self.inner.rendezvous.clone();
                let (metrics, tasks) = (self.inner.metrics.clone(), self.inner.tasks.clone());
                rendezvous.serve(connection, from, metrics, tasks).await;
            }
            _ => CloseCode::UnsupportedProtocol.close(&connection),
        }
    }

    /// Forwards a request to `peer` and waits for its reply, for at most `timeout`; the peer
    /// must acknowledge it within `ack_within` (see [`invoke`]).
    pub async fn invoke(
        &self,
        peer: PeerAddr,
        request: &InvokeRequest,
        timeout: Duration,
        ack_within: Duration,
    ) -> Result<InvokeReply, ForwardError> {
        invoke::forward(
            &self.inner.connections,
            peer,
            request,
            timeout,
            ack_within,
            &self.inner.metrics,
        )
        .await
    }

    /// Opens a reach connection to the rendezvous `peer` unless one is open, and keeps it (see
    /// `standing`). For a new one: answers the rendezvous' punch requests while it lasts, and
    /// returns what the rendezvous observed of this node.
    pub async fn stand_on(&self, peer: PeerAddr) -> Result<Option<SeenByRendezvous>, ConnectError> {
        let connection = self.inner.connections.connect(peer, REACH_ALPN).await?;
        let id = connection.stable_id();
        if !lock(&self.inner.standing).insert(id) {
            return Ok(None);
        }
        let this = self.clone();
        let dial = move |key, addr| {
            let this = this.clone();
            if !this.inner.connections.may_send_to(&addr) {
                this.inner
                    .metrics
                    .count_rejection(Rejection::PeerAddressNotGlobal);
                tracing::info!(%addr, "a rendezvous named an address this node does not send to");
                return;
            }
            let Ok(permit) = this.inner.punch_dials.clone().try_acquire_owned() else {
                this.inner.metrics.count_rejection(Rejection::PunchLimit);
                tracing::debug!(%addr, "too many punch dials under way; one refused");
                return;
            };
            this.inner.metrics.punches.inc();
            this.inner.tasks.clone().spawn(async move {
                let _permit = permit;
                let peer = PeerAddr { key, addr };
                if let Err(error) = this.inner.connections.punch_toward(peer).await {
                    tracing::debug!(%error, "a punched dial failed");
                }
            });
        };
        let (metrics, tasks, this) = (
            self.inner.metrics.clone(),
            self.inner.tasks.clone(),
            self.clone(),
        );
        let answering = connection.clone();
        self.inner.tasks.spawn(async move {
            reach::answer_punches(answering, metrics, tasks, dial).await;
            lock(&this.inner.standing).remove(&id);
        });
        let seen = match reach::observe(&connection).await {
            Ok(seen) => seen,
            Err(error) => {
                tracing::debug!(%error, rendezvous = %peer.addr, "no observation from a rendezvous");
                return Ok(None);
            }
        };
        let dialed_back = reach::dial_back(&connection).await;
        if let Err(error) = &dialed_back {
            tracing::debug!(%error, rendezvous = %peer.addr, "no dial back from a rendezvous");
        }
        Ok(Some(SeenByRendezvous {
            seen,
            dialed_back: dialed_back.ok(),
        }))
    }

    /// Asks `peer` for the chunk group `group` of the blob `hash` of `size` bytes and checks it
    /// against the hash: whether the peer showed it holds the blob (see [`possession`]).
    pub async fn prove_possession(
        &self,
        peer: PeerAddr,
        hash: ContentHash,
        size: u64,
        group: u64,
    ) -> Result<(), FetchError> {
        possession::prove(&self.inner.connections, peer, hash, size, group).await
    }

    /// Fetches the blob `hash` of `size` bytes from `provider` into `store`, verifying it.
    pub async fn fetch_blob(
        &self,
        provider: PeerAddr,
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<FetchReport, FetchError> {
        self.fetch_from_any(&[provider], hash, size, store)
            .await
            .map_err(|failures| {
                failures.into_iter().next().map_or(
                    FetchError::Protocol("the blob is already being fetched".into()),
                    |(_, error)| error,
                )
            })
    }

    /// Fetches the blob from the first [`MAX_PROVIDERS`] of `providers` at once, in verified
    /// ranges, resuming from what an earlier attempt left (see [`blob_fetch`]). Fails with
    /// each provider's failure if the blob could not be completed.
    pub async fn fetch_from_any(
        &self,
        providers: &[PeerAddr],
        hash: ContentHash,
        size: u64,
        store: &Store,
    ) -> Result<FetchReport, Vec<(PeerAddr, FetchError)>> {
        self.inner
            .fetcher
            .fetch(&self.inner.connections, providers, hash, size, store)
            .await
    }
}
