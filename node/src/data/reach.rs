//! The reach protocol (`wasmesh/reach/1`, see `wasmesh_protocol::wire`'s reach messages), both
//! sides.
//!
//! - A public node is a *rendezvous*: it keeps the reach connections NATed nodes open to it, by
//!   their key ([`Rendezvous`]), tells each where its packets come from, and introduces one to
//!   another: the target is told to send packets to the asker's mapping, and the asker learns
//!   the target's.
//! - A NATed node stands on a few rendezvous (`standing`): it asks each where it is seen
//!   ([`observe`]) and to dial it back there from a port it never sent to ([`dial_back`]: does
//!   its NAT let strangers in at its mapping?), answers their punch requests by dialing the
//!   address named
//!   ([`answer_punches`]), and before it dials a peer asks them to introduce it ([`introduce`]),
//!   so that both NATs have sent to each other when the handshake's packets arrive.
//!
//! Bounds: every message is at most [`MAX_REACH_MESSAGE_SIZE`] bytes and must arrive within
//! [`REACH_TIMEOUT`]; an introduction waits at most that long for the target's answer. A dial
//! back goes only where the asker's own connection comes from (never to an address it names),
//! at most [`MAX_DIAL_BACKS`] at once, the rest refused and counted. The
//! rendezvous keeps one connection per key (the newest), within the data plane's connection
//! limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::Connection;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use wasmesh_protocol::PublicKey;
use wasmesh_protocol::wire::{
    MAX_REACH_MESSAGE_SIZE, PunchAck, PunchRequest, ReachReply, ReachRequest,
};

use super::endpoint::{Connections, PeerAddr};
use super::framing::{read_framed, read_request, write_framed};
use super::relay::Relays;
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::rejection::Rejection;

/// How long one reach exchange may take (a request arriving, an answer coming back).
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(2);
/// Dial backs under way at once, at most: each binds a socket for a handshake.
pub const MAX_DIAL_BACKS: usize = 4;

/// Why a reach exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReachError {
    /// The stream could not be opened or written.
    #[error("the connection failed: {0}")]
    Connection(String),
    /// No answer came in time, or it was not one.
    #[error("no valid answer within {REACH_TIMEOUT:?}")]
    NoAnswer,
}

/// The reach connections NATed nodes keep to this node, by their key, and the relay sessions it
/// opens for them.
pub(crate) struct Rendezvous {
    standing: Mutex<HashMap<PublicKey, Connection>>,
    relays: Relays,
    /// The IP the data plane is bound to (relay sessions bind to it too).
    own_ip: IpAddr,
    /// This node's connections (dial backs are made with its identity).
    connections: Arc<Connections>,
    /// Places for dial backs under way (at most [`MAX_DIAL_BACKS`] at once).
    dial_backs: Semaphore,
    metrics: Arc<Metrics>,
}

impl Rendezvous {
    /// A rendezvous whose data plane is bound to `own_ip`, of the node whose connections are
    /// `connections`.
    pub(crate) fn new(
        own_ip: IpAddr,
        connections: Arc<Connections>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            standing: Mutex::default(),
            relays: Relays::new(metrics.clone()),
            own_ip,
            connections,
            dial_backs: Semaphore::new(MAX_DIAL_BACKS),
            metrics,
        }
    }

    /// Serves the reach connection `connection` of the node `from` until it closes.
    pub(crate) async fn serve(
        self: Arc<Self>,
        connection: Connection,
        from: PublicKey,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
    ) {
        lock(&self.standing).insert(from, connection.clone());
        while let Ok((send, recv)) = connection.accept_bi().await {
            let (this, asker, metrics) = (self.clone(), connection.clone(), metrics.clone());
            let relay_tasks = tasks.clone();
            tasks.spawn(async move {
                if let Err(error) = this.answer(send, recv, from, &asker, &relay_tasks).await {
                    metrics.count_rejection(Rejection::ReachRequest);
                    tracing::debug!(%error, "refused a reach request");
                }
            });
        }
        let mut standing = lock(&self.standing);
        if standing
            .get(&from)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            standing.remove(&from);
        }
    }

    /// Answers one request of `from`, whose reach connection is `asker`.
    async fn answer(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        from: PublicKey,
        asker: &Connection,
        tasks: &TaskTracker,
    ) -> Result<(), super::RequestError> {
        let request = read_request(
            &mut recv,
            MAX_REACH_MESSAGE_SIZE,
            REACH_TIMEOUT,
            ReachRequest::decode,
        )
        .await?;
        let reply = match request {
            ReachRequest::Observe => ReachReply::Observed(asker.remote_address()),
            ReachRequest::Introduce { target } => self.introduce(from, asker, target).await,
            ReachRequest::Relay { target } => self.relay(from, asker, target, tasks).await,
            ReachRequest::DialBack => self.dial_back(from, asker).await,
        };
        // The asker may have gone: nothing is lost.
        let _ = write_framed(&mut send, &reply.encode()).await;
        let _ = send.finish();
        Ok(())
    }
}

impl Rendezvous {
    /// The target's reach connection, unless it keeps none here (or is the asker).
    fn standing(&self, target: PublicKey, from: PublicKey) -> Option<Connection> {
        (target != from)
            .then(|| lock(&self.standing).get(&target).cloned())
            .flatten()
    }

    /// Tells `target` (if it stands here) to send packets to `addr` for `from`: whether it
    /// said it would.
    async fn punch(&self, target: &Connection, from: PublicKey, addr: SocketAddr) -> bool {
        let punch = PunchRequest { peer: from, addr };
        match exchange(target, &punch.encode(), PunchAck::decode).await {
            Ok(PunchAck) => true,
            Err(error) => {
                tracing::debug!(%error, "a NATed node did not answer a punch request");
                false
            }
        }
    }

    /// Introduces `from` (reach connection `asker`) to `target`: the target punches toward the
    /// asker's mapping, and the asker learns the target's.
    async fn introduce(
        &self,
        from: PublicKey,
        asker: &Connection,
        target: PublicKey,
    ) -> ReachReply {
        match self.standing(target, from) {
            Some(to) if self.punch(&to, from, asker.remote_address()).await => {
                ReachReply::Introduced(to.remote_address())
            }
            _ => ReachReply::Unknown,
        }
    }

    /// Tries a handshake with `from` where its reach connection `asker` comes from, from a
    /// new port (see `Connections::dial_back`); refused when as many are under way as
    /// allowed.
    async fn dial_back(&self, from: PublicKey, asker: &Connection) -> ReachReply {
        let Ok(_place) = self.dial_backs.try_acquire() else {
            self.metrics.count_rejection(Rejection::DialBackFull);
            tracing::debug!("as many dial backs under way as allowed; one refused");
            return ReachReply::Unknown;
        };
        let peer = PeerAddr {
            key: from,
            addr: asker.remote_address(),
        };
        ReachReply::DialedBack(self.connections.dial_back(peer).await)
    }

    /// Opens a relay session between `from` (reach connection `asker`) and `target`, and tells
    /// the target to dial the asker through it.
    async fn relay(
        &self,
        from: PublicKey,
        asker: &Connection,
        target: PublicKey,
        tasks: &TaskTracker,
    ) -> ReachReply {
        let Some(to) = self.standing(target, from) else {
            return ReachReply::Unknown;
        };
        let ends = [asker.remote_address().ip(), to.remote_address().ip()];
        // The address each end reaches this node at (the session listens on every interface).
        let at = |connection: &Connection, port| {
            SocketAddr::new(connection.local_ip().unwrap_or(self.own_ip), port)
        };
        let port = match self.relays.open(from, self.own_ip, ends, tasks).await {
            Ok(session) => session.port(),
            Err(error) => {
                tracing::info!(%error, "no relay session for an asker");
                return ReachReply::Unknown;
            }
        };
        if self.punch(&to, from, at(&to, port)).await {
            ReachReply::Relayed(at(asker, port))
        } else {
            ReachReply::Unknown
        }
    }
}

/// Opens a stream on `connection`, writes `request` and reads the answer, within
/// [`REACH_TIMEOUT`].
async fn exchange<T, E>(
    connection: &Connection,
    request: &[u8],
    decode: fn(&[u8]) -> Result<T, E>,
) -> Result<T, ReachError> {
    let round = async {
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ReachError::Connection(e.to_string()))?;
        write_framed(&mut send, request)
            .await
            .map_err(|e| ReachError::Connection(e.to_string()))?;
        let _ = send.finish();
        let bytes = read_framed(&mut recv, MAX_REACH_MESSAGE_SIZE)
            .await
            .map_err(|_| ReachError::NoAnswer)?;
        decode(&bytes).map_err(|_| ReachError::NoAnswer)
    };
    tokio::time::timeout(REACH_TIMEOUT, round)
        .await
        .map_err(|_| ReachError::NoAnswer)?
}

/// Asks the rendezvous at the other end of `connection` where this node's packets come from.
pub(crate) async fn observe(connection: &Connection) -> Result<SocketAddr, ReachError> {
    match exchange(
        connection,
        &ReachRequest::Observe.encode(),
        ReachReply::decode,
    )
    .await?
    {
        ReachReply::Observed(addr) => Ok(addr),
        _ => Err(ReachError::NoAnswer),
    }
}

/// Asks the rendezvous at the other end of `connection` to dial this node back where it sees
/// the connection come from, from a port this node never sent to: whether that got through.
pub(crate) async fn dial_back(connection: &Connection) -> Result<bool, ReachError> {
    let request = ReachRequest::DialBack.encode();
    match exchange(connection, &request, ReachReply::decode).await? {
        ReachReply::DialedBack(reached) => Ok(reached),
        _ => Err(ReachError::NoAnswer),
    }
}

/// Asks each rendezvous in `rendezvous` at once to introduce this node to `target`; where the
/// first that could says the target's packets come from.
pub(crate) async fn introduce(
    rendezvous: Vec<Connection>,
    target: PublicKey,
) -> Option<SocketAddr> {
    let request = ReachRequest::Introduce { target };
    first_address(&rendezvous, &request, |reply| match reply {
        ReachReply::Introduced(addr) => Some(addr),
        _ => None,
    })
    .await
}

/// Asks each rendezvous in `rendezvous` at once for a relay session to `target`; the address
/// of the first session opened.
pub(crate) async fn relay(rendezvous: Vec<Connection>, target: PublicKey) -> Option<SocketAddr> {
    let request = ReachRequest::Relay { target };
    first_address(&rendezvous, &request, |reply| match reply {
        ReachReply::Relayed(addr) => Some(addr),
        _ => None,
    })
    .await
}

/// Sends `request` to each rendezvous at once; the address `pick` finds in the first reply
/// that has one.
async fn first_address(
    rendezvous: &[Connection],
    request: &ReachRequest,
    pick: fn(ReachReply) -> Option<SocketAddr>,
) -> Option<SocketAddr> {
    if rendezvous.is_empty() {
        return None;
    }
    let request = request.encode();
    let asks = rendezvous.iter().map(|connection| {
        let request = &request;
        Box::pin(async move {
            let reply = exchange(connection, request, ReachReply::decode).await;
            reply.ok().and_then(pick).ok_or(())
        })
    });
    futures::future::select_ok(asks)
        .await
        .ok()
        .map(|(addr, _)| addr)
}

/// Answers the punch requests the rendezvous at the other end of `connection` sends, until
/// the connection closes: each is acknowledged, then `dial` is called with the peer and the
/// address named.
pub(crate) async fn answer_punches(
    connection: Connection,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    dial: impl Fn(PublicKey, SocketAddr) + Send + Sync + 'static,
) {
    let dial = Arc::new(dial);
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let (dial, metrics) = (dial.clone(), metrics.clone());
        tasks.spawn(async move {
            match read_request(
                &mut recv,
                MAX_REACH_MESSAGE_SIZE,
                REACH_TIMEOUT,
                PunchRequest::decode,
            )
            .await
            {
                Ok(punch) => {
                    let _ = write_framed(&mut send, &PunchAck.encode()).await;
                    let _ = send.finish();
                    dial(punch.peer, punch.addr);
                }
                Err(error) => {
                    metrics.count_rejection(Rejection::ReachRequest);
                    tracing::debug!(%error, "refused a punch request");
                }
            }
        });
    }
}
