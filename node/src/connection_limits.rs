//! Bounds on what peers may hold open on this node's QUIC endpoint: handshakes in progress,
//! connections established (in total and per peer key), and when a handshake must first prove
//! its source address.
//!
//! A handshake costs nothing to start (one Initial packet, whose source address may be forged)
//! and, unchecked, holds its place until the idle timeout. So handshakes have places of their
//! own ([`MAX_HANDSHAKES`]), apart from the connections of peers already in, and each must
//! finish within [`HANDSHAKE_TIMEOUT`]; once more than [`RETRY_ABOVE`] are in progress, a
//! new one must first answer a QUIC `Retry` (proving it receives at its source address) before
//! it takes a place. Each admitted connection holds a [`ConnectionPermit`] that gives its place
//! back when dropped, however the connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmesh_protocol::PublicKey;

use crate::per_peer::{PeerPlace, PerPeer};

/// Inbound connections established at once, from all peers.
pub const MAX_INBOUND_CONNECTIONS: usize = 256;
/// Inbound connections at once from one peer key: one per protocol, and room for a reconnect
/// while the old connection times out.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// Inbound handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 64;
/// Handshakes in progress beyond which a new one must prove its source address first.
pub const RETRY_ABOVE: usize = 8;
/// How long an inbound handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The places of inbound handshakes and connections.
#[derive(Debug)]
pub struct ConnectionLimits {
    handshakes: Arc<Semaphore>,
    established: Arc<Semaphore>,
    per_peer: PerPeer,
    retry_above: usize,
    max_handshakes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new(
            MAX_HANDSHAKES,
            MAX_INBOUND_CONNECTIONS,
            MAX_CONNECTIONS_PER_PEER,
        )
    }
}

/// What to do with a new inbound handshake.
#[derive(Debug)]
pub enum Arrival {
    /// Go ahead, holding this place until the handshake ends.
    Proceed(HandshakePermit),
    /// Ask it to prove its source address first (a QUIC `Retry`).
    Validate,
    /// Refuse it: every place is taken.
    Refuse,
}

/// A place among the handshakes in progress, given back when dropped.
#[derive(Debug)]
pub struct HandshakePermit {
    _place: OwnedSemaphorePermit,
}

/// A connection's place, in the total and in its peer's share.
#[derive(Debug)]
pub struct ConnectionPermit {
    _total: OwnedSemaphorePermit,
    _peer: PeerPlace,
}

/// Why an established connection got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPlace {
    /// Its peer holds its share.
    PeerShare,
    /// Every place of the total is taken.
    Total,
}

impl ConnectionLimits {
    /// `handshakes` in progress, `total` connections, at most `per_peer` from one key.
    pub fn new(handshakes: usize, total: usize, per_peer: usize) -> Self {
        Self {
            handshakes: Arc::new(Semaphore::new(handshakes)),
            established: Arc::new(Semaphore::new(total)),
            per_peer: PerPeer::new(per_peer),
            retry_above: RETRY_ABOVE.min(handshakes),
            max_handshakes: handshakes,
        }
    }

    /// Handshakes in progress now.
    pub fn handshakes(&self) -> usize {
        self.max_handshakes - self.handshakes.available_permits()
    }

    /// What to do with a handshake that arrives now, from an address that has (`validated`) or
    /// has not yet proved it receives there.
    pub fn arrival(&self, validated: bool) -> Arrival {
        if !validated && self.handshakes() >= self.retry_above {
            return Arrival::Validate;
        }
        match self.handshakes.clone().try_acquire_owned() {
            Ok(permit) => Arrival::Proceed(HandshakePermit { _place: permit }),
            Err(_) => Arrival::Refuse,
        }
    }

    /// A place for the connection of `peer`, whose handshake (holding `handshake`) is done;
    /// the handshake's place is given back either way.
    pub fn admit(
        &self,
        handshake: HandshakePermit,
        peer: PublicKey,
    ) -> Result<ConnectionPermit, NoPlace> {
        drop(handshake);
        let peer_place = self.per_peer.try_take(peer).ok_or(NoPlace::PeerShare)?;
        let total = self
            .established
            .clone()
            .try_acquire_owned()
            .map_err(|_| NoPlace::Total)?;
        Ok(ConnectionPermit {
            _total: total,
            _peer: peer_place,
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

    fn proceed(limits: &ConnectionLimits, validated: bool) -> HandshakePermit {
        match limits.arrival(validated) {
            Arrival::Proceed(permit) => permit,
            other => panic!("expected to proceed, got {other:?}"),
        }
    }

    #[test]
    fn connections_have_places_apart_from_handshakes() {
        let limits = ConnectionLimits::new(4, 3, 2);
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let first = limits.admit(proceed(&limits, true), a).unwrap();
        let _second = limits.admit(proceed(&limits, true), a).unwrap();
        assert_eq!(
            limits.admit(proceed(&limits, true), a).unwrap_err(),
            NoPlace::PeerShare
        );
        let _other = limits.admit(proceed(&limits, true), b).unwrap();
        assert_eq!(limits.handshakes(), 0, "handshake places are given back");
        assert_eq!(
            limits
                .admit(proceed(&limits, true), PublicKey([3; 32]))
                .unwrap_err(),
            NoPlace::Total
        );
        drop(first);
        assert_eq!(limits.held_by(&a), 1);
        assert!(limits.admit(proceed(&limits, true), a).is_ok());
    }

    #[test]
    fn unproven_handshakes_beyond_the_threshold_must_validate_and_none_beyond_the_cap() {
        let limits = ConnectionLimits::new(RETRY_ABOVE + 2, 16, 4);
        let held: Vec<_> = (0..RETRY_ABOVE).map(|_| proceed(&limits, false)).collect();
        assert!(matches!(limits.arrival(false), Arrival::Validate));
        let _validated = proceed(&limits, true);
        let _validated_too = proceed(&limits, true);
        assert!(matches!(limits.arrival(true), Arrival::Refuse));
        drop(held);
        assert!(matches!(limits.arrival(false), Arrival::Proceed(_)));
    }
}
