//! How much of this node's execution capacity (slots and queue places) requests that peers
//! forward may hold: all peers together at most [`FORWARDED_PERCENT`] of it, so local clients
//! always keep the rest; a peer this node has no record with (a stranger: see
//! `core::peers::PeerInfo::is_stranger`) at most [`STRANGER_DIVISOR`]th of it, one it chose or
//! that proved useful or stayed long up to half. Two throwaway keys cannot take the node from
//! its own clients, and a new key's share grows with its record.
//!
//! A share is a guard: dropping it, wherever the request stops, gives its places back.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmesh_protocol::PublicKey;

use crate::per_peer::{PeerPlace, PerPeer};

/// The share of the capacity that forwarded requests from all peers may hold together.
pub(crate) const FORWARDED_PERCENT: usize = 75;
/// A stranger's forwards may hold this fraction of the capacity (and at least one place).
pub(crate) const STRANGER_DIVISOR: usize = 16;

/// The places of forwarded requests.
#[derive(Debug)]
pub(crate) struct ForwardShares {
    all: Arc<Semaphore>,
    per_peer: PerPeer,
    stranger_max: usize,
}

/// The places one forwarded request holds.
#[derive(Debug)]
pub(crate) struct ForwardShare {
    _all: OwnedSemaphorePermit,
    _peer: PeerPlace,
}

/// Why a forwarded request got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoShare {
    /// Its peer holds its own share.
    Peer,
    /// Forwarded requests hold their whole share of the capacity.
    Forwarded,
}

impl ForwardShares {
    /// Shares of a node that runs or queues `capacity` requests at once.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new((capacity * FORWARDED_PERCENT / 100).max(1))),
            per_peer: PerPeer::new((capacity / 2).max(1)),
            stranger_max: (capacity / STRANGER_DIVISOR).max(1),
        }
    }

    /// A place for one forwarded request of `peer` (`stranger`: this node has no record with it).
    pub(crate) fn try_take(
        &self,
        peer: PublicKey,
        stranger: bool,
    ) -> Result<ForwardShare, NoShare> {
        let limit = if stranger {
            self.stranger_max
        } else {
            usize::MAX
        };
        let place = self
            .per_peer
            .try_take_up_to(peer, limit)
            .ok_or(NoShare::Peer)?;
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| NoShare::Forwarded)?;
        Ok(ForwardShare {
            _all: all,
            _peer: place,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_get_little_peers_together_never_all_and_places_come_back() {
        let shares = ForwardShares::new(64);
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let strangers: Vec<_> = (0..4).map(|_| shares.try_take(a, true).unwrap()).collect();
        assert_eq!(shares.try_take(a, true).unwrap_err(), NoShare::Peer);
        // The same key with a record: up to half.
        let known: Vec<_> = (0..28)
            .map(|_| shares.try_take(a, false).unwrap())
            .collect();
        assert_eq!(shares.try_take(a, false).unwrap_err(), NoShare::Peer);
        // All forwards together: 48 of 64.
        let other: Vec<_> = (0..16)
            .map(|_| shares.try_take(b, false).unwrap())
            .collect();
        assert_eq!(shares.try_take(b, false).unwrap_err(), NoShare::Forwarded);
        drop(other);
        assert!(shares.try_take(b, false).is_ok());
        drop((strangers, known));
    }
}
