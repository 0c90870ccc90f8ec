//! Room in the peer table: who may take a place, and who gives one up (see the parent module's
//! docs). Strangers, peers that connected to this node and have neither been chosen by it nor
//! proved useful nor stayed long, take at most [`MAX_STRANGERS`] places.

use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{MAX_TRACKED_PEERS, PeerInfo, PeerTable};

/// Places of the table strangers may take; the other [`MAX_TRACKED_PEERS`] - this are kept for
/// peers this node chose, peers that proved useful and long-standing ones.
pub const MAX_STRANGERS: usize = 384;

/// How long a connection must last before its peer is no longer a stranger.
pub const LONG_STANDING: Duration = Duration::from_secs(600);

/// What a new entry may displace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newcomer {
    /// A peer that connected to this node: it may displace another stranger, connected or not.
    Stranger,
    /// A peer this node chose (dialed, asked to be introduced, looked up): it may displace a
    /// stranger, connected or not, or anyone neither connected nor being dialed.
    Chosen,
    /// A peer this node chose without dialing it yet (an introduction it asked for, a holder
    /// it looked up): it displaces only peers neither connected nor being dialed.
    Named,
}

/// A place made in the table: the entry, and a connected stranger that gave up its place (the
/// caller disconnects it).
#[derive(Debug)]
pub struct Placed<'a> {
    /// The entry.
    pub info: &'a mut PeerInfo,
    /// The connected peer evicted to make room.
    pub evicted: Option<PeerId>,
}

impl PeerTable {
    /// The entry of `peer`, made if there is room for a `newcomer` of its kind (see the module
    /// docs); `None` when there is none.
    pub fn track(&mut self, peer: PeerId, newcomer: Newcomer, now: Instant) -> Option<Placed<'_>> {
        let mut evicted = None;
        if !self.peers.contains_key(&peer) {
            let victim = self.victim(newcomer, now)?;
            if let Some(victim) = victim {
                if self.peers.get(&victim).is_some_and(|p| p.connected) {
                    evicted = Some(victim);
                }
                self.peers.remove(&victim);
            }
        }
        let info = self
            .peers
            .entry(peer)
            .or_insert_with(|| PeerInfo::new(peer, now));
        if newcomer != Newcomer::Stranger {
            info.chosen = true;
        }
        Some(Placed { info, evicted })
    }

    /// Who gives up a place for a `newcomer`: `Some(None)` when there is room, `Some(Some(p))`
    /// when `p` must go, `None` when nobody may.
    fn victim(&self, newcomer: Newcomer, now: Instant) -> Option<Option<PeerId>> {
        let strangers = || self.peers.values().filter(|p| p.is_stranger(now));
        let full = self.peers.len() >= MAX_TRACKED_PEERS;
        // Only a stranger is limited below a full table: nobody else needs the count.
        let strangers_full = newcomer == Newcomer::Stranger && strangers().count() >= MAX_STRANGERS;
        if !full && !strangers_full {
            return Some(None);
        }
        let idle = |p: &&PeerInfo| !p.connected && !p.dialing;
        // Strangers go first, those not connected before those connected.
        let stranger = strangers()
            .filter(|p| newcomer != Newcomer::Named || idle(p))
            .min_by_key(|p| (p.connected, p.last_seen))
            .map(|p| p.peer_id);
        if stranger.is_some() || newcomer == Newcomer::Stranger {
            return stranger.map(Some);
        }
        self.peers
            .values()
            .filter(idle)
            .min_by_key(|p| p.last_seen)
            .map(|p| Some(p.peer_id))
    }

    /// A connection to `peer` opened (`dialed`: this node dialed it). `None` when the table
    /// has no room for it (the caller closes the connection); otherwise the connected peer
    /// evicted to make room, if any (the caller disconnects it).
    pub fn connected(
        &mut self,
        peer: PeerId,
        dialed: bool,
        now: Instant,
    ) -> Option<Option<PeerId>> {
        let newcomer = if dialed {
            Newcomer::Chosen
        } else {
            Newcomer::Stranger
        };
        let placed = self.track(peer, newcomer, now)?;
        let info = placed.info;
        info.connected = true;
        info.connected_since = Some(now);
        info.dialing = false;
        info.dial_failures = 0;
        info.ready_sent = None;
        Some(placed.evicted)
    }
}

impl PeerInfo {
    /// Whether it is a stranger at `now`: it connected to this node, which neither chose it nor
    /// saw it answer, and it has not been connected for [`LONG_STANDING`].
    pub fn is_stranger(&self, now: Instant) -> bool {
        let standing = self.long_standing
            || self
                .connected_since
                .is_some_and(|since| now.saturating_duration_since(since) >= LONG_STANDING);
        !(self.chosen || self.useful || standing)
    }
}
