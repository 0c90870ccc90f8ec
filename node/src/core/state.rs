//! The control plane's state machine: what the node knows of its peers (the table, its own
//! network coordinate, peer exchange, private-mesh admission) and what it decides about them.
//! [`NodeState::handle`] takes one [`Input`] at a time, with the time, and returns the
//! [`Effect`]s the control task carries out on the swarm: no sockets, no clock, no locks.
//!
//! What peers say goes through it too, as calls that return their effects: a neighbour's
//! status ([`NodeState::take_status`]: the table, neighbour choice, whether to sync, whom to
//! dial), the peers a neighbour introduces ([`NodeState::take_introductions`]), the holders a
//! directory names ([`NodeState::take_holders`]), and keeping a connected peer as a neighbour
//! ([`NodeState::keep`]).

use std::time::Instant;

use libp2p::{Multiaddr, PeerId};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::coordinates::{Coordinate, DIMENSIONS, Observation};
use wasmesh_protocol::holders::SignedHolder;
use wasmesh_protocol::wire::{PeerRecord, StatusMessage};

use super::admission::{AdmissionBook, Verdict};
use super::bootstrap::Bootstrap;
use super::peers::exchange::PeerExchange;
use super::peers::intake::{StatusRefusal, StatusTaken};
use super::peers::{ForwardAnswer, PeerTable};
use crate::rejection::Rejection;

/// Something that happened, as the control task saw it.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A connection to `peer` opened; `first` when no other was open.
    ConnectionOpened {
        /// The peer.
        peer: PeerId,
        /// Whether it is the only connection to the peer.
        first: bool,
        /// The address this node dialed, when it dialed (`None`: the peer connected to it).
        dialed: Option<&'a Multiaddr>,
    },
    /// The last connection to `peer` closed.
    ConnectionClosed {
        /// The peer.
        peer: PeerId,
    },
    /// A dial to `peer` failed, or could not start.
    DialFailed {
        /// The peer.
        peer: PeerId,
    },
    /// A ping to `peer` came back after `rtt_us`.
    Pinged {
        /// The peer.
        peer: PeerId,
        /// The round trip, microseconds.
        rtt_us: u64,
    },
    /// Routing wants the round trip to `peer` measured: connect to it.
    ProbeWanted {
        /// The peer.
        peer: PeerId,
    },
    /// In a private mesh, `peer` presented a membership certificate valid until `until_ms`
    /// (ms since the Unix epoch), or none that is valid.
    Membership {
        /// The peer.
        peer: PeerId,
        /// Until when its membership holds; `None` when it has no valid certificate.
        until_ms: Option<u64>,
    },
    /// News that may have made peers dialable (a gossip message, an introduction).
    MaybeDial {
        /// Peers with an open connection.
        connected: usize,
    },
    /// A forwarded request was answered.
    ForwardAnswered(ForwardAnswer),
    /// The periodic tick ([`super::peers::REDIAL_AFTER`]).
    Tick {
        /// Peers with an open connection.
        connected: &'a [PeerId],
        /// The wall clock, ms since the Unix epoch (membership certificates expire by it).
        wall_ms: u64,
    },
}

/// What the control task is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Dial a bootstrap address, keeping the connection it makes.
    DialBootstrap {
        /// The address.
        addr: Multiaddr,
    },
    /// Dial `peer` at `addrs` (it is marked as being dialed; report a failure as
    /// [`Input::DialFailed`]).
    Dial {
        /// The peer.
        peer: PeerId,
        /// Its dialable addresses.
        addrs: Vec<Multiaddr>,
    },
    /// Close every connection to `peer`, counting the rejection `count` if named.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// The rejection to count and log.
        count: Option<Rejection>,
    },
    /// Count (and log) the rejection `reason` of `peer`.
    Count {
        /// The peer.
        peer: PeerId,
        /// The reason.
        reason: Rejection,
    },
    /// Send this node's status to `peer`, which just became a neighbour.
    SendStatus {
        /// The peer.
        peer: PeerId,
    },
    /// Ask `peer` for the manifests it holds (the first page), with this node's membership.
    AskSync {
        /// The peer.
        peer: PeerId,
    },
    /// Ask `peer` which peers it is connected to.
    AskPeers {
        /// The peer.
        peer: PeerId,
    },
    /// Keep `peer` out of gossip (until it is admitted).
    ShutOut {
        /// The peer.
        peer: PeerId,
    },
    /// Let `peer` into gossip.
    LetIn {
        /// The peer.
        peer: PeerId,
    },
}

/// The control plane's state (see the module docs).
#[derive(Debug, Clone)]
pub struct NodeState {
    /// What is known of each peer.
    pub peers: PeerTable,
    /// This node's network coordinate, moved by every ping to a peer whose coordinate is known.
    pub coordinate: Coordinate,
    exchange: PeerExchange,
    admission: AdmissionBook,
    bootstrap: Bootstrap,
    own: PeerId,
    private_mesh: bool,
    /// Whether peers' loopback, private and link-local addresses are dialed.
    allow_private_addrs: bool,
}

/// What the node does about a status it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusVerdict {
    /// The answer asks for the peer's ready list.
    pub want_ready: bool,
    /// What taking it changed.
    pub taken: StatusTaken,
    /// What to do: the peer kept as a neighbour, a sync asked for, peers dialed.
    pub effects: Vec<Effect>,
}

/// What a status is taken against: this node's manifests and connections.
#[derive(Clone, Copy)]
pub struct StatusContext<'a> {
    /// This node's manifest digest: a peer's that differs is synced.
    pub own_digest: ContentHash,
    /// Whether a blob is one this node holds a manifest of.
    pub known: &'a dyn Fn(&ContentHash) -> bool,
    /// Peers with an open connection.
    pub connected: usize,
}

impl std::fmt::Debug for StatusContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusContext")
            .field("own_digest", &self.own_digest)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    /// The state of node `own`; `private_mesh` when peers must prove membership.
    pub fn new(own: PeerId, private_mesh: bool) -> Self {
        Self {
            peers: PeerTable::default(),
            coordinate: Coordinate::default(),
            exchange: PeerExchange::default(),
            admission: AdmissionBook::default(),
            bootstrap: Bootstrap::default(),
            own,
            private_mesh,
            allow_private_addrs: false,
        }
    }

    /// Whether peers' loopback, private and link-local addresses are taken and dialed.
    pub fn allowing_private_addrs(mut self, allow: bool) -> Self {
        self.allow_private_addrs = allow;
        self
    }

    /// Takes a status `from` sent on its connection (in a private mesh, only once it is
    /// admitted): the peer table takes it (see `PeerTable::take_status`), the peer is kept as
    /// a neighbour (it keeps this node as one), a sync is asked for when its manifests differ
    /// from this node's and it was not asked at that digest lately, and peers it made worth
    /// dialing are dialed.
    pub fn take_status(
        &mut self,
        from: PeerId,
        status: StatusMessage,
        context: StatusContext<'_>,
        now: Instant,
    ) -> Result<StatusVerdict, StatusRefusal> {
        if !self.admits(&from) {
            return Err(StatusRefusal::NotAdmitted);
        }
        let taken =
            self.peers
                .take_status(from, status, now, self.allow_private_addrs, context.known)?;
        let mut effects = self.keep(from);
        if let Some(digest) = taken.unsynced_digest.filter(|d| *d != context.own_digest) {
            self.peers.synced(&from, digest, now);
            effects.push(Effect::AskSync { peer: from });
        }
        effects.extend(self.dials(context.connected, now));
        Ok(StatusVerdict {
            want_ready: taken.want_ready,
            taken,
            effects,
        })
    }

    /// Takes the peers a neighbour introduced; the new ones become dial targets.
    pub fn take_introductions(
        &mut self,
        records: &[PeerRecord],
        connected: usize,
        now: Instant,
    ) -> Vec<Effect> {
        self.peers
            .take_introductions(records, self.own, now, self.allow_private_addrs);
        self.dials(connected, now)
    }

    /// Takes the holders of `blob` a directory named (their records verified by the caller):
    /// how many this node did not know held it.
    pub fn take_holders(
        &mut self,
        blob: ContentHash,
        records: &[SignedHolder],
        now: Instant,
    ) -> u64 {
        records
            .iter()
            .map(|record| {
                let fresh =
                    self.peers
                        .take_holder(record, blob, self.own, now, self.allow_private_addrs);
                u64::from(fresh)
            })
            .sum()
    }

    /// Keeps connected `peer` as a neighbour: statuses go both ways from now on. It gets this
    /// node's status if it was not a neighbour.
    pub fn keep(&mut self, peer: PeerId) -> Vec<Effect> {
        match self.peers.make_neighbour(&peer) {
            true => vec![Effect::SendStatus { peer }],
            false => Vec::new(),
        }
    }

    /// Joins through `addrs`: they are dialed at the first tick, and again with back-off while
    /// the node has too few neighbours (see `core::bootstrap`).
    pub fn with_bootstrap(mut self, addrs: &[Multiaddr], now: Instant) -> Self {
        self.bootstrap = Bootstrap::new(addrs, now);
        self
    }

    /// Whether what `peer` sends is taken: always in an open mesh, once it is admitted in a
    /// private one.
    pub fn admits(&self, peer: &PeerId) -> bool {
        !self.private_mesh || self.admission.is_admitted(peer)
    }

    /// Peers of a private mesh that have not proved membership yet.
    pub fn pending_admission(&self) -> usize {
        self.admission.pending()
    }

    /// Takes one input at `now`; returns what to do.
    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Effect> {
        match input {
            Input::ConnectionOpened {
                peer,
                first,
                dialed,
            } => self.connection_opened(peer, first, dialed, now),
            Input::ConnectionClosed { peer } => {
                self.peers.disconnected(&peer, now);
                match self.admission.disconnected(&peer) {
                    true => vec![Effect::Count {
                        peer,
                        reason: Rejection::NotAdmitted,
                    }],
                    false => Vec::new(),
                }
            }
            Input::DialFailed { peer } => {
                self.peers.dial_failed(&peer, now);
                Vec::new()
            }
            Input::Pinged { peer, rtt_us } => {
                let Some(theirs) = self.peers.pinged(&peer, rtt_us) else {
                    return Vec::new();
                };
                let direction = tie_breaker(&peer);
                let rtt_ms = rtt_us as f64 / 1000.0;
                match self.coordinate.observe(&theirs, rtt_ms, &direction) {
                    Observation::Implausible => vec![Effect::Count {
                        peer,
                        reason: Rejection::CoordinateImplausible,
                    }],
                    Observation::Taken | Observation::Invalid => Vec::new(),
                }
            }
            Input::ProbeWanted { peer } => match self.peers.probe_addrs(&peer, now) {
                Some(addrs) => vec![self.dial(peer, addrs, now)],
                None => Vec::new(),
            },
            Input::Membership { peer, until_ms } => self.membership(peer, until_ms),
            Input::ForwardAnswered(answer) => {
                self.peers.forward_answered(answer);
                Vec::new()
            }
            Input::MaybeDial { connected } => self.dials(connected, now),
            Input::Tick { connected, wall_ms } => self.tick(connected, wall_ms, now),
        }
    }

    fn connection_opened(
        &mut self,
        peer: PeerId,
        first: bool,
        dialed: Option<&Multiaddr>,
        now: Instant,
    ) -> Vec<Effect> {
        if let Some(addr) = dialed {
            self.bootstrap.connected(addr, peer);
        }
        let mut effects = Vec::new();
        match self.peers.connected(peer, dialed.is_some(), now) {
            // Every tracked peer is one this node chose and is connected or being dialed: no
            // room for one more.
            None => {
                return vec![Effect::Disconnect {
                    peer,
                    count: Some(Rejection::PeerTableFull),
                }];
            }
            // The least recently heard stranger made room.
            Some(Some(evicted)) => effects.push(Effect::Disconnect {
                peer: evicted,
                count: Some(Rejection::StrangerEvicted),
            }),
            Some(None) => {}
        }
        if first {
            if self.private_mesh && self.admission.connected(peer, now) {
                effects.push(Effect::ShutOut { peer });
            }
            effects.push(Effect::AskSync { peer });
        }
        effects
    }

    fn membership(&mut self, peer: PeerId, until_ms: Option<u64>) -> Vec<Effect> {
        if !self.private_mesh {
            return Vec::new();
        }
        match self.admission.presented(peer, until_ms) {
            Verdict::Admitted { newly: true } => vec![Effect::LetIn { peer }],
            Verdict::Admitted { newly: false } => Vec::new(),
            Verdict::Refused { counted } => vec![Effect::Disconnect {
                peer,
                count: counted.then_some(Rejection::NotAdmitted),
            }],
        }
    }

    fn tick(&mut self, connected: &[PeerId], wall_ms: u64, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for peer in self.admission.expired(wall_ms) {
            effects.push(Effect::ShutOut { peer });
            effects.push(Effect::Disconnect {
                peer,
                count: Some(Rejection::MembershipExpired),
            });
        }
        for peer in self.admission.timed_out(now) {
            effects.push(Effect::Disconnect {
                peer,
                count: Some(Rejection::AdmissionTimeout),
            });
        }
        if let Some(peer) = self.exchange.next(connected, now) {
            effects.push(Effect::AskPeers { peer });
        }
        for peer in self.peers.to_keep() {
            effects.extend(self.keep(peer));
        }
        effects.extend(self.dials(connected.len(), now));
        let neighbours = self.peers.neighbours().len();
        let is_connected = |peer: &PeerId| connected.contains(peer);
        effects.extend(
            self.bootstrap
                .due(neighbours, is_connected, now)
                .into_iter()
                .map(|addr| Effect::DialBootstrap { addr }),
        );
        effects
    }

    fn dials(&mut self, connected: usize, now: Instant) -> Vec<Effect> {
        self.peers
            .to_dial(&self.own, connected, now)
            .into_iter()
            .map(|(peer, addrs)| self.dial(peer, addrs, now))
            .collect()
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: Instant) -> Effect {
        self.peers.dial_started(&peer, true, now);
        Effect::Dial { peer, addrs }
    }
}

/// Where two coordinates coincide, a direction to move apart in that differs per peer.
fn tie_breaker(peer: &PeerId) -> [f64; DIMENSIONS] {
    let bytes = peer.to_bytes();
    let mut direction = [0.0; DIMENSIONS];
    for (d, b) in direction.iter_mut().zip(bytes.iter().rev()) {
        *d = f64::from(*b) - 127.5;
    }
    direction
}
