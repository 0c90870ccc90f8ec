//! How a new data-plane connection gets through NATs, by the path it takes:
//!
//! - **direct**: a handshake with the peer's address (a public peer, a full-cone NAT, or a
//!   peer whose own connection to this node shows the way: `core::peers::data_path`);
//! - **punched**: the peer names rendezvous (it is behind a NAT), so one of them is asked to
//!   introduce this node first: the peer sends packets to this node's mapping while this node
//!   sends to the peer's, and both NATs let the handshake in (`reach`);
//! - **relayed**: the punched handshake failed (a NAT that maps each destination apart), or the
//!   peer advertises only its private address (its rendezvous saw it at different mappings, so
//!   no punch can reach it, and it is not tried), so a rendezvous opens a relay session and
//!   both dial through it (`relay`); the session's address is remembered for the peer's later
//!   connections.
//!
//! Each dial is counted by the path it took (`wasmesh_data_dials_total{outcome}`). A rendezvous
//! also dials a NATed node back from a new socket when asked (`dial_back`): whether its NAT
//! lets strangers in at its mapping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};
use wasmesh_protocol::PublicKey;
use wasmesh_protocol::wire::{BLOB_ALPN, REACH_ALPN};

use super::close_code::CloseCode;
use super::endpoint::{CONNECT_TIMEOUT, ConnectError, Connections, PeerAddr};
use super::reach;
use crate::lock::lock;

/// How long a dial to a peer behind a NAT waits for its introduction before the handshake.
pub const INTRODUCTION_WAIT: Duration = Duration::from_secs(2);
/// How long a punched handshake may take before a relay is asked for: both ends send at once,
/// so it completes within a few round trips or not at all.
pub const PUNCHED_HANDSHAKE: Duration = Duration::from_secs(3);
/// How long a dial back's handshake may take (within the asker's wait for the answer).
pub const DIAL_BACK_WAIT: Duration = Duration::from_secs(1);

impl Connections {
    /// A new connection to `peer` for `alpn`, by the first path that works (see the module
    /// docs); `introduce` false: straight to its address only (a dial that answers a punch
    /// request must not ask for an introduction in turn).
    pub(super) async fn dial(
        self: &Arc<Self>,
        peer: PeerAddr,
        alpn: &'static [u8],
        introduce: bool,
    ) -> Result<Connection, ConnectError> {
        if let Some(session) = self.relayed_path(peer.key) {
            let through = PeerAddr {
                key: peer.key,
                addr: session,
            };
            match self.handshake(through, alpn, CONNECT_TIMEOUT).await {
                Ok(connection) => return Ok(self.took("relayed", connection)),
                Err(_) => {
                    lock(&self.relayed).remove(&peer.key);
                }
            }
        }
        let rendezvous = if introduce {
            self.rendezvous_connections(peer.key).await
        } else {
            Vec::new()
        };
        if rendezvous.is_empty() {
            let connected = self.handshake(peer, alpn, CONNECT_TIMEOUT).await;
            if connected.is_err() {
                self.metrics.count_data_dial("failed");
            }
            return connected.map(|c| self.took("direct", c));
        }
        let punched = if self.may_send_to(&peer.addr) {
            match self.punch(&rendezvous, peer, alpn).await {
                Ok(connection) => return Ok(self.took("punched", connection)),
                Err(error) => error,
            }
        } else {
            // No mapping its rendezvous agree on (a NAT that maps each destination apart): no
            // punch can get through, and its private address is not for this node to try.
            ConnectError {
                addr: peer.addr,
                reason: "behind a NAT that no punch gets through".into(),
            }
        };
        tracing::debug!(peer = %peer.addr, %punched, rendezvous = rendezvous.len(), "no punched path; asking for a relay");
        let session = reach::relay(rendezvous, peer.key)
            .await
            .filter(|session| self.may_send_to(session));
        tracing::debug!(peer = %peer.addr, ?session, "relay session");
        let Some(session) = session else {
            self.metrics.count_data_dial("failed");
            return Err(punched);
        };
        let through = PeerAddr {
            key: peer.key,
            addr: session,
        };
        match self.handshake(through, alpn, CONNECT_TIMEOUT).await {
            Ok(connection) => {
                lock(&self.relayed).insert(peer.key, session);
                Ok(self.took("relayed", connection))
            }
            Err(error) => {
                self.metrics.count_data_dial("failed");
                Err(error)
            }
        }
    }

    /// Asks `rendezvous` to introduce this node to `peer`, then tries a handshake at its
    /// address while the peer sends toward this node's mapping.
    async fn punch(
        &self,
        rendezvous: &[Connection],
        peer: PeerAddr,
        alpn: &'static [u8],
    ) -> Result<Connection, ConnectError> {
        let introduction = reach::introduce(rendezvous.to_vec(), peer.key);
        let introduced = tokio::time::timeout(INTRODUCTION_WAIT, introduction).await;
        self.metrics
            .count_introduction(matches!(introduced, Ok(Some(_))));
        self.handshake(peer, alpn, PUNCHED_HANDSHAKE).await
    }

    /// Answers a punch request: a handshake toward `peer` at the address a rendezvous named,
    /// started at once rather than behind other dials to the peer. Its packets open this
    /// node's NAT toward the peer's mapping, or show a relay session where this node is; a
    /// connection it makes is kept for the blobs asked of the peer, unless one is open.
    pub(super) async fn punch_toward(&self, peer: PeerAddr) -> Result<(), ConnectError> {
        let connection = self.handshake(peer, BLOB_ALPN, PUNCHED_HANDSHAKE).await?;
        self.keep_unless_open((peer.key, BLOB_ALPN), connection);
        Ok(())
    }

    /// A handshake with `peer` at its address from a new socket, a port the peer never sent
    /// to, within [`DIAL_BACK_WAIT`]: whether it got through (the peer's NAT, if any, lets
    /// strangers in at that mapping). The connection is closed at once.
    pub(super) async fn dial_back(&self, peer: PeerAddr) -> bool {
        let Ok(config) = self.client_config(peer, BLOB_ALPN) else {
            return false;
        };
        let bound = self.endpoint().local_addr().map(|own| own.ip());
        let Ok(endpoint) = bound.and_then(|ip| Endpoint::client(SocketAddr::new(ip, 0))) else {
            return false;
        };
        let reached = match endpoint.connect_with(config, peer.addr, "wasmesh") {
            Ok(connecting) => matches!(
                tokio::time::timeout(DIAL_BACK_WAIT, connecting).await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        endpoint.close(CloseCode::Shutdown.code(), b"dialed back");
        reached
    }

    /// The relay session that reaches `peer`, if one did.
    pub(super) fn relayed_path(&self, peer: PublicKey) -> Option<SocketAddr> {
        lock(&self.relayed).get(&peer).copied()
    }

    /// Reach connections to the rendezvous `target` names (none for a public peer), opened as
    /// needed; those that could not be opened are left out.
    async fn rendezvous_connections(self: &Arc<Self>, target: PublicKey) -> Vec<Connection> {
        let Some(rendezvous) = self.reach.get().map(|reach| (reach.rendezvous_of)(target)) else {
            return Vec::new();
        };
        let reach = rendezvous
            .iter()
            .map(|rv| self.connect_introduced(*rv, REACH_ALPN, false));
        futures::future::join_all(reach)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Counts a dial by the path it took, and hands its connection on.
    fn took(&self, path: &'static str, connection: Connection) -> Connection {
        tracing::debug!(path, peer = %connection.remote_address(), "dialed");
        self.metrics.count_data_dial(path);
        connection
    }
}
