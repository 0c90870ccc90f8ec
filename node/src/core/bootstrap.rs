//! Bootstrap peers: the addresses an operator gave the node to join through, dialed again with
//! back-off for as long as the node has too few neighbours.
//!
//! A node that dials its bootstrap peers once, at start, never joins if that one dial is
//! refused (the peer's table was full of strangers at that moment, say) and has no other
//! address to try. So each bootstrap address is dialed again after [`FIRST_BACKOFF`], doubled
//! per failure up to [`MAX_BACKOFF`], while the node has fewer than [`ENOUGH_NEIGHBOURS`]
//! neighbours and is not connected to that peer. Nothing here does I/O: the control task dials
//! what [`Bootstrap::due`] names and reports back.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Neighbours from which on bootstrap peers are no longer dialed again.
pub const ENOUGH_NEIGHBOURS: usize = 4;
/// The wait before the second dial of a bootstrap address.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two dials of a bootstrap address.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One bootstrap address.
#[derive(Debug, Clone)]
struct Entry {
    addr: Multiaddr,
    /// Its peer, from the address or from the first connection a dial of it made.
    peer: Option<PeerId>,
    /// Not dialed before this.
    next_dial: Instant,
    /// The current wait after a dial.
    backoff: Duration,
}

/// The bootstrap addresses and when each is dialed next.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    entries: Vec<Entry>,
}

impl Bootstrap {
    /// Bootstrap addresses, all due at `now`.
    pub fn new(addrs: &[Multiaddr], now: Instant) -> Self {
        let entries = addrs
            .iter()
            .map(|addr| Entry {
                peer: peer_of(addr),
                addr: addr.clone(),
                next_dial: now,
                backoff: FIRST_BACKOFF,
            })
            .collect();
        Self { entries }
    }

    /// The addresses to dial now, given the node's `neighbours` and whether a peer is
    /// `connected`; each is due again after its back-off, which doubles.
    pub fn due(
        &mut self,
        neighbours: usize,
        connected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) -> Vec<Multiaddr> {
        if neighbours >= ENOUGH_NEIGHBOURS {
            return Vec::new();
        }
        let mut due = Vec::new();
        for entry in &mut self.entries {
            if entry.next_dial > now || entry.peer.as_ref().is_some_and(&connected) {
                continue;
            }
            due.push(entry.addr.clone());
            entry.next_dial = now + entry.backoff;
            entry.backoff = (entry.backoff * 2).min(MAX_BACKOFF);
        }
        due
    }

    /// A dial of `addr` connected to `peer`: if it is a bootstrap address (with or without its
    /// `/p2p/` part), its back-off starts over.
    pub fn connected(&mut self, addr: &Multiaddr, peer: PeerId) {
        let dialed = without_peer(addr);
        for entry in self
            .entries
            .iter_mut()
            .filter(|e| without_peer(&e.addr) == dialed)
        {
            entry.peer = Some(peer);
            entry.backoff = FIRST_BACKOFF;
        }
    }
}

/// `addr` without a trailing `/p2p/...`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|protocol| !matches!(protocol, Protocol::P2p(_)))
        .collect()
}

/// The peer an address names (`/p2p/...`), if it does.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|protocol| match protocol {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: &PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{peer}")
            .parse()
            .unwrap()
    }

    #[test]
    fn a_bootstrap_peer_is_dialed_again_with_back_off_until_there_are_enough_neighbours() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut bootstrap = Bootstrap::new(&[addr(&peer)], now);
        let never = |_: &PeerId| false;
        assert_eq!(bootstrap.due(0, never, now).len(), 1);
        assert!(bootstrap.due(0, never, now).is_empty(), "not again at once");
        let mut at = now;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let mut wait = Duration::ZERO;
            while bootstrap.due(0, never, at + wait).is_empty() {
                wait += Duration::from_millis(500);
            }
            at += wait;
            waits.push(wait);
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        // Connected, or with enough neighbours: not dialed.
        let later = at + MAX_BACKOFF;
        assert!(bootstrap.due(0, |p| *p == peer, later).is_empty());
        assert!(bootstrap.due(ENOUGH_NEIGHBOURS, never, later).is_empty());
        // A connection resets the back-off.
        bootstrap.connected(&addr(&peer), peer);
        assert_eq!(bootstrap.due(0, never, later).len(), 1);
        assert!(bootstrap.due(0, never, later + FIRST_BACKOFF).len() == 1);
    }
}
