//! A count per peer key with a ceiling: how many of something (connections, forwarded requests)
//! each peer holds now. A place is a [`PeerPlace`] guard that gives it back when dropped, so a
//! peer that vanishes at any point leaks nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use wasmesh_protocol::PublicKey;

/// Places per peer, at most `max` each.
#[derive(Debug)]
pub(crate) struct PerPeer {
    counts: Arc<Mutex<HashMap<PublicKey, usize>>>,
    max: usize,
}

/// One place of one peer.
#[derive(Debug)]
pub(crate) struct PeerPlace {
    peer: PublicKey,
    counts: Arc<Mutex<HashMap<PublicKey, usize>>>,
}

impl PerPeer {
    /// At most `max` places per peer.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            counts: Arc::default(),
            max,
        }
    }

    /// A place for `peer`; `None` when it holds `max` already.
    pub(crate) fn try_take(&self, peer: PublicKey) -> Option<PeerPlace> {
        self.try_take_up_to(peer, self.max)
    }

    /// A place for `peer`; `None` when it holds `max` (or `limit`, if lower) already.
    pub(crate) fn try_take_up_to(&self, peer: PublicKey, limit: usize) -> Option<PeerPlace> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(peer).or_default();
        if *count >= self.max.min(limit) {
            if *count == 0 {
                counts.remove(&peer);
            }
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            peer,
            counts: self.counts.clone(),
        })
    }

    /// Places `peer` holds now.
    pub(crate) fn held_by(&self, peer: &PublicKey) -> usize {
        lock(&self.counts).get(peer).copied().unwrap_or(0)
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_max_places_and_gets_them_back_on_drop() {
        let places = PerPeer::new(2);
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let first = places.try_take(a).unwrap();
        let _second = places.try_take(a).unwrap();
        assert!(places.try_take(a).is_none());
        assert!(
            places.try_take(b).is_some(),
            "other peers have their own places"
        );
        drop(first);
        assert_eq!(places.held_by(&a), 1);
        assert!(places.try_take(a).is_some());
    }
}
