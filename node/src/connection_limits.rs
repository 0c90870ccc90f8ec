//! Bounds on what peers may hold open on this node's QUIC endpoint: connections in total, and
//! connections per peer key. Each admitted connection holds a [`ConnectionPermit`] that gives its
//! place back when dropped, however the connection ends.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmesh_protocol::PublicKey;

use crate::per_peer::{PeerPlace, PerPeer};

/// Inbound connections at once, from all peers (a handshake in progress counts).
pub const MAX_INBOUND_CONNECTIONS: usize = 256;
/// Inbound connections at once from one peer key: one per protocol, and room for a reconnect
/// while the old connection times out.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// The places of inbound connections.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_peer: PerPeer,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new(MAX_INBOUND_CONNECTIONS, MAX_CONNECTIONS_PER_PEER)
    }
}

/// A place in the total, taken before the handshake.
#[derive(Debug)]
pub struct HandshakePermit(OwnedSemaphorePermit);

/// A connection's place, in the total and in its peer's share.
#[derive(Debug)]
pub struct ConnectionPermit {
    _total: OwnedSemaphorePermit,
    _peer: PeerPlace,
}

impl ConnectionLimits {
    /// Limits of `total` connections, at most `per_peer` from one key.
    pub fn new(total: usize, per_peer: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_peer: PerPeer::new(per_peer),
        }
    }

    /// A place for a connection about to shake hands; `None` when all are taken.
    pub fn try_handshake(&self) -> Option<HandshakePermit> {
        self.total
            .clone()
            .try_acquire_owned()
            .ok()
            .map(HandshakePermit)
    }

    /// Turns a handshake's place into the connection's, once the peer's key is known; `None`
    /// (and the place given back) when that peer already holds its share.
    pub fn admit(&self, handshake: HandshakePermit, peer: PublicKey) -> Option<ConnectionPermit> {
        Some(ConnectionPermit {
            _peer: self.per_peer.try_take(peer)?,
            _total: handshake.0,
        })
    }

    /// Connections held now by `peer`.
    pub fn held_by(&self, peer: &PublicKey) -> usize {
        self.per_peer.held_by(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_handshake_gives_its_place_in_the_total_back() {
        let limits = ConnectionLimits::new(3, 2);
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let first = limits.admit(limits.try_handshake().unwrap(), a).unwrap();
        let _second = limits.admit(limits.try_handshake().unwrap(), a).unwrap();
        assert!(limits.admit(limits.try_handshake().unwrap(), a).is_none());
        let _other = limits.admit(limits.try_handshake().unwrap(), b).unwrap();
        assert!(limits.try_handshake().is_none(), "the total is 3");
        drop(first);
        assert_eq!(limits.held_by(&a), 1);
        assert!(limits.admit(limits.try_handshake().unwrap(), a).is_some());
    }
}
