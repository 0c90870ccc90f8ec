//! The peer table: what this node knows of each peer, and the decisions about peers that need no
//! I/O. Times are arguments, nothing here locks or logs; the control task turns swarm events
//! into calls and what they return into dials and disconnections.
//!
//! - Bounds: at most [`MAX_TRACKED_PEERS`] entries, of which strangers (peers that connected to
//!   this node and have neither been chosen by it nor proved useful nor stayed long:
//!   [`PeerInfo::is_stranger`]) take at most [`MAX_STRANGERS`]: the rest is room strangers
//!   cannot take. A new stranger takes the place of the least recently heard stranger, first of
//!   those not connected, then of those connected (which are disconnected): an honest node can
//!   always join, and a table full of strangers cannot keep it out. A new peer this node chose
//!   takes a stranger's place first, then that of the least recently heard peer neither
//!   connected nor being dialed.
//! - Entries come only from connections and from neighbours' introductions ([`intake`]); a
//!   status, which comes from the peer itself over its connection, updates an entry and never
//!   makes one.
//! - Dialing: at most [`MAX_DIALED_PEERS`] connections are sought, and connected peers are kept
//!   as neighbours up to that many ([`PeerTable::to_keep`]); a lost peer that is not a stranger
//!   is dialed again after [`REDIAL_AFTER`], doubled per failed dial up to 8 s, and not at all
//!   after [`MAX_DIAL_FAILURES`] failures in a row (it can still connect to this node). A
//!   stranger is never dialed: the addresses it claimed are its word only.
//! - Statuses out: each connected peer gets this node's ready list once per version
//!   ([`PeerTable::status_for`]).
//! - Routing knowledge: round trips, coordinates, and what forwards to each peer showed (mean
//!   execution time and spread per blob, and a failure marking it down for a while).
//!
//! The table is a persistent map ordered by peer id (`imbl::OrdMap`): the control task clones
//! it into the view the request path reads at the cost of a few reference counts, and every
//! walk over it goes in the same order, so the same inputs give the same decisions (the scale
//! model relies on it).

pub mod data_path;
pub mod exchange;
mod feedback;
pub mod intake;
mod room;

pub use self::feedback::{
    FAILED_PROOF_WAIT, ForwardGuard, MAX_POSSESSIONS, PROOF_TIMEOUT, PROVEN_FOR, PeerFeedback,
    Possession,
};
pub use self::room::{LONG_STANDING, MAX_STRANGERS, Newcomer, Placed};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::routing::{self, Spread};
use wasmesh_protocol::wire::{MAX_PEER_ADDRS, MAX_SYNC_PEERS, PeerRecord, StatusMessage};
use wasmesh_protocol::{ContentHash, PublicKey};

/// Most peers this node dials on its own (bootstrap and peer exchange).
pub const MAX_DIALED_PEERS: usize = 32;

/// Failed dials in a row after which a peer is no longer dialed (it can still connect to this
/// node): made-up addresses must not keep a node dialing forever.
pub const MAX_DIAL_FAILURES: u32 = 6;

/// How long after losing a peer it is dialed again; doubled per failed dial, up to 8 s.
pub const REDIAL_AFTER: Duration = Duration::from_secs(1);

/// What this node knows of its peers, bounded (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct PeerTable {
    peers: imbl::OrdMap<PeerId, PeerInfo>,
}

impl PeerTable {
    /// What is known of `peer`.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(peer)
    }

    /// What is known of `peer`, to change.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerInfo> {
        self.peers.get_mut(peer)
    }

    /// Every peer known.
    pub fn values(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    /// Changes every peer known with `change`.
    pub fn update_each(&mut self, mut change: impl FnMut(&mut PeerInfo)) {
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if let Some(info) = self.peers.get_mut(&peer) {
                change(info);
            }
        }
    }

    /// Peers known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `peer` is known.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Makes connected `peer` a neighbour; true if it was not one.
    pub fn make_neighbour(&mut self, peer: &PeerId) -> bool {
        match self.peers.get_mut(peer).filter(|p| p.connected) {
            Some(info) if !info.neighbour => {
                info.neighbour = true;
                true
            }
            _ => false,
        }
    }

    /// This node's status as `peer` gets it: whole unless the peer was sent this version of the
    /// ready list already (then it is marked sent); otherwise without the list and the dial
    /// addresses, which travel with the list. `None` when the peer is not a connected
    /// neighbour.
    pub fn status_for(&mut self, peer: &PeerId, own: &StatusMessage) -> Option<StatusMessage> {
        let info = self
            .peers
            .get_mut(peer)
            .filter(|p| p.connected && p.neighbour)?;
        if info.ready_sent == Some(own.ready_version) {
            return Some(StatusMessage {
                ready: None,
                p2p_addrs: Vec::new(),
                ..own.clone()
            });
        }
        info.ready_sent = Some(own.ready_version);
        Some(own.clone())
    }

    /// A status to `peer` failed or the peer asked for the ready list: the next one carries it.
    pub fn resend_ready(&mut self, peer: &PeerId) {
        if let Some(info) = self.peers.get_mut(peer) {
            info.ready_sent = None;
        }
    }

    /// The connected neighbours.
    pub fn neighbours(&self) -> Vec<PeerId> {
        self.peers
            .values()
            .filter(|p| p.connected && p.neighbour)
            .map(|p| p.peer_id)
            .collect()
    }

    /// The last connection to `peer` closed: unless it is a stranger, it is dialed again after
    /// [`REDIAL_AFTER`].
    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(info) = self.peers.get_mut(peer) {
            info.long_standing |= info
                .connected_since
                .is_some_and(|since| now.saturating_duration_since(since) >= LONG_STANDING);
            info.connected = false;
            info.connected_since = None;
            info.neighbour = false;
            info.next_dial = Some(now + REDIAL_AFTER);
        }
    }

    /// A dial to `peer` failed: returns the back-off before the next one.
    pub fn dial_failed(&mut self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let info = self.peers.get_mut(peer)?;
        info.dialing = false;
        info.dial_failures = info.dial_failures.saturating_add(1);
        let backoff = REDIAL_AFTER.saturating_mul(1 << info.dial_failures.min(3));
        info.next_dial = Some(now + backoff);
        Some(backoff)
    }

    /// A dial to `peer` was started (`true`) or could not be (`false`).
    pub fn dial_started(&mut self, peer: &PeerId, started: bool, now: Instant) {
        if let Some(info) = self.peers.get_mut(peer) {
            match started {
                // Marked so that nothing dials it again while this dial is under way.
                true => info.dialing = true,
                false => info.next_dial = Some(now + REDIAL_AFTER),
            }
        }
    }

    /// The peers to dial now, with their addresses, given `connected` open connections: those
    /// neither connected nor being dialed, whose back-off is over and whose dials have not failed
    /// too often, up to [`MAX_DIALED_PEERS`] connections and dials under way in all, in the order
    /// [`spread_rank`] gives them from this node (`own`), so that the nodes of a mesh do not all
    /// dial the same peers.
    pub fn to_dial(
        &self,
        own: &PeerId,
        connected: usize,
        now: Instant,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let dialing = self.peers.values().filter(|p| p.dialing).count();
        let room = MAX_DIALED_PEERS.saturating_sub(connected + dialing);
        if room == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<&PeerInfo> = self
            .peers
            .values()
            .filter(|p| {
                !p.connected
                    && !p.dialing
                    && p.next_dial.is_none_or(|at| at <= now)
                    && p.dial_failures < MAX_DIAL_FAILURES
                    && p.peer_id != *own
                    && !p.addrs.is_empty()
                    && !p.is_stranger(now)
            })
            .collect();
        candidates.sort_by_cached_key(|p| spread_rank(own, &p.peer_id));
        candidates
            .into_iter()
            .take(room)
            .map(|p| (p.peer_id, p.addrs.clone()))
            .collect()
    }

    /// Connected peers that are not neighbours yet (a Kademlia lookup opened their connection,
    /// say) but that this node would dial (it knows dialable addresses of theirs), to keep as
    /// neighbours while it has fewer than [`MAX_DIALED_PEERS`]. Without this, a peer connected
    /// before anyone introduced it would never exchange statuses with this node, since dials
    /// skip connected peers.
    pub fn to_keep(&self) -> Vec<PeerId> {
        let neighbours = self
            .peers
            .values()
            .filter(|p| p.connected && p.neighbour)
            .count();
        self.peers
            .values()
            .filter(|p| p.connected && !p.neighbour && !p.addrs.is_empty())
            .take(MAX_DIALED_PEERS.saturating_sub(neighbours))
            .map(|p| p.peer_id)
            .collect()
    }

    /// Where to dial `peer` to measure it (routing asked), unless it is connected, being
    /// dialed, or a stranger.
    pub fn probe_addrs(&self, peer: &PeerId, now: Instant) -> Option<Vec<Multiaddr>> {
        self.peers
            .get(peer)
            .filter(|p| !p.connected && !p.dialing && !p.addrs.is_empty() && !p.is_stranger(now))
            .map(|p| p.addrs.clone())
    }

    /// Folds one ping round trip into the peer's smoothed one; returns the peer's coordinate,
    /// when known, for this node's coordinate to move.
    pub fn pinged(&mut self, peer: &PeerId, rtt_us: u64) -> Option<Coordinate> {
        let info = self.peers.get_mut(peer)?;
        info.rtt_us = Some(
            info.rtt_us
                .map_or(rtt_us, |old| routing::smooth(old, rtt_us)),
        );
        info.coordinate
    }

    /// Folds one answered forward into what is known of `peer` for the blob `hash`: its mean
    /// execution time (for routing) and how long the whole forward took (for hedging).
    pub fn forward_answered(&mut self, answer: ForwardAnswer) {
        let ForwardAnswer {
            peer,
            hash,
            exec_us,
            took_us,
        } = answer;
        let Some(info) = self.peers.get_mut(&peer) else {
            return;
        };
        info.useful = true;
        let mean = info.mean_exec_us.entry(hash).or_insert(exec_us);
        *mean = routing::smooth(*mean, exec_us);
        info.forward_us
            .entry(hash)
            .and_modify(|spread| spread.observe(took_us))
            .or_insert_with(|| Spread::first(took_us));
    }

    /// Records that this node asked `peer` for a sync while it reported `digest`.
    pub fn synced(&mut self, peer: &PeerId, digest: ContentHash, now: Instant) {
        if let Some(info) = self.peers.get_mut(peer) {
            info.synced_digest = Some(digest);
            info.synced_at = Some(now);
        }
    }

    /// Connected peers with known keys and addresses, to introduce to `requester`: those this
    /// node has a record with first (strangers' addresses are their word only), then in the
    /// order [`spread_rank`] gives them from the requester (so that a node's peers do not all
    /// hear of the same few), at most [`MAX_SYNC_PEERS`], each with at most [`MAX_PEER_ADDRS`]
    /// addresses.
    pub fn introductions(&self, requester: &PeerId, now: Instant) -> Vec<PeerRecord> {
        let mut connected: Vec<&PeerInfo> = self
            .peers
            .values()
            .filter(|p| p.connected && p.peer_id != *requester && !p.addrs.is_empty())
            .filter(|p| p.key.is_some())
            .collect();
        connected.sort_by_cached_key(|p| (p.is_stranger(now), spread_rank(requester, &p.peer_id)));
        connected
            .into_iter()
            .take(MAX_SYNC_PEERS)
            .filter_map(|p| {
                Some(PeerRecord {
                    node: p.key?,
                    addrs: p
                        .addrs
                        .iter()
                        .take(MAX_PEER_ADDRS)
                        .map(|a| a.to_string())
                        .filter(|a| a.len() <= 128)
                        .collect(),
                })
            })
            .collect()
    }

    /// Peers whose status says `hash` is ready there: their node key and data-plane address.
    pub fn providers_of(&self, hash: &ContentHash) -> Vec<(PublicKey, SocketAddr)> {
        self.peers
            .values()
            .filter(|p| p.ready.contains(hash))
            .filter_map(|p| Some((p.key?, p.data_addr()?)))
            .collect()
    }
}

/// What this node knows of one peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// libp2p identity.
    pub peer_id: PeerId,
    /// Node key (from its status; its QUIC certificate must carry it).
    pub key: Option<PublicKey>,
    /// QUIC data-plane address it advertised (if this node may dial it).
    pub quic_addr: Option<SocketAddr>,
    /// Where this node's data plane saw a connection from it come from, while one is open
    /// (see [`PeerInfo::data_addr`]).
    pub seen_quic_addr: Option<SocketAddr>,
    /// The nodes it keeps a reach connection to, when it is behind a NAT (see `data_path`).
    pub rendezvous: Vec<PeerId>,
    /// Blobs it reports ready.
    pub ready: HashSet<ContentHash>,
    /// The version of `ready` (`None` until its list arrived).
    pub ready_version: Option<u64>,
    /// Whether it is a neighbour: statuses go both ways. A peer is one when this node dialed it
    /// to keep (bootstrap, peer exchange, a routing probe) or when it sent a status; a
    /// connection opened only for a Kademlia lookup is not, and closes once idle.
    pub neighbour: bool,
    /// The version of this node's ready set last sent to it (its list is not sent again while
    /// the version holds); cleared when a connection opens or a status fails.
    pub ready_sent: Option<u64>,
    /// Its reported load.
    pub in_flight: u32,
    /// Its reported capacity.
    pub capacity: u32,
    /// Sequence number of its newest status.
    pub seq: u64,
    /// Addresses it can be dialed at.
    pub addrs: Vec<Multiaddr>,
    /// Whether a libp2p connection is open.
    pub connected: bool,
    /// Whether its open libp2p connections all go through a relay (no direct path yet).
    pub relayed: bool,
    /// Whether this node is dialing it now.
    pub dialing: bool,
    /// Dials that failed in a row (for the back-off).
    pub dial_failures: u32,
    /// Not dialed again before this time.
    pub next_dial: Option<Instant>,
    /// Its manifest digest when this node last asked it for a sync (not asked again for the
    /// same digest).
    pub synced_digest: Option<ContentHash>,
    /// When this node last asked it for a sync.
    pub synced_at: Option<Instant>,
    /// Smoothed round-trip time (libp2p ping), microseconds.
    pub rtt_us: Option<u64>,
    /// Its network coordinate, from its status.
    pub coordinate: Option<Coordinate>,
    /// Requests forwarded to it now, and until when it is down after a failed forward.
    pub feedback: PeerFeedback,
    /// Mean execution time per blob, as seen in replies to forwarded requests (microseconds).
    pub mean_exec_us: HashMap<ContentHash, u64>,
    /// How long forwarded requests per blob took, end to end (for hedging).
    pub forward_us: HashMap<ContentHash, Spread>,
    /// When it was last heard of.
    pub last_seen: Instant,
    /// Its gossipsub score here (below -80 it is graylisted: its messages are ignored).
    pub gossip_score: Option<f64>,
    /// It said it is stopping: nothing is routed to it.
    pub leaving: bool,
    /// This node chose it: dialed it, asked to be introduced to it, or looked it up.
    pub chosen: bool,
    /// It proved useful: it answered forwarded requests.
    pub useful: bool,
    /// Since when its connection is open.
    pub connected_since: Option<Instant>,
    /// A connection of its lasted [`LONG_STANDING`].
    pub long_standing: bool,
}

/// An answered forward: the guest ran `exec_us` on `peer`, and the whole forward took
/// `took_us`. (A failed forward marks the peer down at once, through its
/// [`PeerFeedback`].)
#[derive(Debug, Clone, Copy)]
pub struct ForwardAnswer {
    /// The peer.
    pub peer: PeerId,
    /// The blob run.
    pub hash: ContentHash,
    /// Execution time the peer reported, microseconds.
    pub exec_us: u64,
    /// The whole forward, microseconds.
    pub took_us: u64,
}

/// A rank of `peer` seen from `from`, the same for the same pair and unrelated across pairs:
/// walks over peers in this order (dials, introductions) differ from node to node, where walks in
/// id order would send every node of a mesh to the peers with the lowest ids.
pub fn spread_rank(from: &PeerId, peer: &PeerId) -> u64 {
    let tail = |id: &PeerId| {
        let digest = id.as_ref().digest();
        let mut bytes = [0u8; 8];
        let len = digest.len().min(8);
        bytes[..len].copy_from_slice(&digest[digest.len() - len..]);
        u64::from_le_bytes(bytes)
    };
    // SplitMix64's finaliser: every input bit reaches every output bit.
    let mut x = tail(from) ^ tail(peer);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Most peers a node keeps what it knows of. Connections from fresh keys cost an attacker
/// nothing, so the table must not grow with them (see the module docs).
pub const MAX_TRACKED_PEERS: usize = 512;

impl PeerInfo {
    /// A peer known only by id, first heard of at `now`.
    pub fn new(peer_id: PeerId, now: Instant) -> Self {
        Self {
            peer_id,
            key: None,
            quic_addr: None,
            seen_quic_addr: None,
            rendezvous: Vec::new(),
            ready: HashSet::new(),
            ready_version: None,
            neighbour: false,
            ready_sent: None,
            in_flight: 0,
            capacity: 0,
            seq: 0,
            addrs: Vec::new(),
            connected: false,
            relayed: false,
            dialing: false,
            dial_failures: 0,
            next_dial: None,
            synced_digest: None,
            synced_at: None,
            rtt_us: None,
            coordinate: None,
            feedback: PeerFeedback::default(),
            mean_exec_us: HashMap::new(),
            forward_us: HashMap::new(),
            last_seen: now,
            gossip_score: None,
            leaving: false,
            chosen: false,
            useful: false,
            connected_since: None,
            long_standing: false,
        }
    }
}

#[cfg(test)]
mod tests;
