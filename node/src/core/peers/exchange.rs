//! Peer exchange: every [`PEER_EXCHANGE_EVERY`], the connected peer asked least recently is
//! asked which peers it is connected to (a sync request without manifests). This, and the first
//! sync of every connection, is how a node learns of peers beyond its bootstrap peers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How often a node asks one neighbour for its peers.
pub const PEER_EXCHANGE_EVERY: Duration = Duration::from_secs(2);

/// Whom this node asked for peers, and when.
#[derive(Debug, Default, Clone)]
pub struct PeerExchange {
    asked: HashMap<PeerId, Instant>,
    last: Option<Instant>,
}

impl PeerExchange {
    /// The neighbour to ask now, among `connected`, if it is time to ask one: the one asked
    /// least recently (never asked first).
    pub fn next(&mut self, connected: &[PeerId], now: Instant) -> Option<PeerId> {
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < PEER_EXCHANGE_EVERY)
        {
            return None;
        }
        self.asked.retain(|peer, _| connected.contains(peer));
        let peer = connected
            .iter()
            .copied()
            .min_by_key(|peer| self.asked.get(peer).copied())?;
        self.asked.insert(peer, now);
        self.last = Some(now);
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::peers::tests::peer;

    #[test]
    fn neighbours_are_asked_in_turn_and_at_most_every_two_seconds() {
        let (a, b) = (peer(1), peer(2));
        let mut exchange = PeerExchange::default();
        let start = Instant::now();
        let first = exchange.next(&[a, b], start).unwrap();
        assert_eq!(exchange.next(&[a, b], start + Duration::from_secs(1)), None);
        let second = exchange.next(&[a, b], start + PEER_EXCHANGE_EVERY).unwrap();
        assert_ne!(first, second, "the one not asked yet comes next");
        let third = exchange
            .next(&[a, b], start + PEER_EXCHANGE_EVERY * 2)
            .unwrap();
        assert_eq!(third, first);
        assert_eq!(exchange.next(&[], start + PEER_EXCHANGE_EVERY * 3), None);
    }
}
