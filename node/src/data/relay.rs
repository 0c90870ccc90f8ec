//! Relay sessions a rendezvous keeps for two nodes whose NATs hole punching cannot get through
//! (a NAT that maps each destination apart, facing one that drops what it did not ask for).
//!
//! A session is one UDP socket of the rendezvous. Each of the two nodes dials the other at the
//! session's address, so the first packets from each end's IP tell the session where that end
//! is (behind a NAT that maps each destination apart, the port is not known before); from then
//! on every datagram from one end goes to the other, as it is. The first few datagrams of the
//! end seen first wait for the other end (a handshake's first packet is not lost to the order
//! the two ends arrive in, and the handshake does not wait for QUIC to send it again). The QUIC connection inside stays
//! end-to-end: the rendezvous sees only encrypted packets, and each end checks the other's key.
//!
//! Bounds: at most [`MAX_RELAY_SESSIONS`] sessions at once ([`MAX_RELAY_SESSIONS_PER_NODE`]
//! asked for by one node), each ending after
//! [`RELAY_LIFETIME`], after [`RELAY_IDLE`] without a packet, or once it has moved
//! [`RELAY_BYTES`]; datagrams from any other source are dropped. Each refusal and cut is
//! counted; the sessions open and the bytes relayed are in the metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use wasmesh_protocol::PublicKey;

use crate::metrics::Metrics;
use crate::per_peer::{PeerPlace, PerPeer};
use crate::rejection::Rejection;

/// Relay sessions open at once, at most.
pub const MAX_RELAY_SESSIONS: usize = 32;
/// Relay sessions one node may have asked for and hold at once, at most.
pub const MAX_RELAY_SESSIONS_PER_NODE: usize = 4;
/// Bytes one session moves, both ways together, at most.
pub const RELAY_BYTES: u64 = 256 << 20;
/// How long a session lasts, at most (the two ends then ask again, or go elsewhere).
pub const RELAY_LIFETIME: Duration = Duration::from_secs(600);
/// How long a session lasts without a packet.
pub const RELAY_IDLE: Duration = Duration::from_secs(30);
/// Largest datagram relayed (a QUIC packet is at most about 1,500 bytes on the links here).
const MAX_DATAGRAM: usize = 2048;
/// Datagrams of the end seen first kept until the other end is seen, at most.
const HELD_DATAGRAMS: usize = 8;

/// Why no session was opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// As many sessions as allowed are open, in all or for the asker.
    #[error("as many relay sessions as allowed are open")]
    Full,
    /// The session's socket could not be bound.
    #[error("cannot bind a relay socket: {0}")]
    Bind(std::io::Error),
}

/// The relay sessions of one node.
pub(crate) struct Relays {
    places: Arc<Semaphore>,
    /// Sessions per asker.
    per_asker: PerPeer,
    /// Bytes one session moves, at most.
    byte_cap: u64,
    metrics: Arc<Metrics>,
}

impl Relays {
    /// [`MAX_RELAY_SESSIONS`] sessions of at most [`RELAY_BYTES`] each.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_caps(MAX_RELAY_SESSIONS, RELAY_BYTES, metrics)
    }

    /// At most `sessions` sessions of at most `byte_cap` bytes each.
    fn with_caps(sessions: usize, byte_cap: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            places: Arc::new(Semaphore::new(sessions)),
            per_asker: PerPeer::new(MAX_RELAY_SESSIONS_PER_NODE),
            byte_cap,
            metrics,
        }
    }

    /// Opens a session that `asker` asked for between the nodes at `ends` (their IP
    /// addresses) on a new socket at `ip`, its task tracked by `tasks`; the socket's address.
    pub(crate) async fn open(
        &self,
        asker: PublicKey,
        ip: IpAddr,
        ends: [IpAddr; 2],
        tasks: &TaskTracker,
    ) -> Result<SocketAddr, RelayError> {
        let places = self
            .per_asker
            .try_take(asker)
            .zip(self.places.clone().try_acquire_owned().ok());
        let Some(place) = places else {
            self.metrics.count_rejection(Rejection::RelayFull);
            return Err(RelayError::Full);
        };
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(RelayError::Bind)?;
        let addr = socket.local_addr().map_err(RelayError::Bind)?;
        self.metrics.relay_sessions.inc();
        let (metrics, byte_cap) = (self.metrics.clone(), self.byte_cap);
        tasks.spawn(async move {
            let session = Session {
                socket,
                ends,
                seen: [None, None],
                held: Vec::new(),
                moved: 0,
                byte_cap,
            };
            session.run(&metrics, place).await;
            metrics.relay_sessions.dec();
        });
        Ok(addr)
    }
}

/// One session: its socket, the IPs of its two ends, and where each end's packets come from
/// once seen.
struct Session {
    socket: UdpSocket,
    ends: [IpAddr; 2],
    seen: [Option<SocketAddr>; 2],
    /// Datagrams of the end seen first, for the other end once it is seen.
    held: Vec<Vec<u8>>,
    moved: u64,
    byte_cap: u64,
}

impl Session {
    /// Forwards datagrams between the two ends until the session's bounds end it.
    async fn run(mut self, metrics: &Metrics, _place: (PeerPlace, OwnedSemaphorePermit)) {
        let lifetime = tokio::time::sleep(RELAY_LIFETIME);
        tokio::pin!(lifetime);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                () = &mut lifetime => return,
                received = tokio::time::timeout(RELAY_IDLE, self.socket.recv_from(&mut buf)) => received,
            };
            let Ok(Ok((len, from))) = received else {
                return;
            };
            let Some(side) = self.ends.iter().position(|ip| *ip == from.ip()) else {
                continue;
            };
            let first = self.seen[side].is_none();
            self.seen[side].get_or_insert(from);
            if self.seen[side] != Some(from) {
                // Another socket at that end's address: not the node the session is for.
                continue;
            }
            if first {
                // What the other end sent before this one was seen.
                for datagram in std::mem::take(&mut self.held) {
                    if !self.forward(&datagram, from, metrics).await {
                        return;
                    }
                }
            }
            let Some(to) = self.seen[1 - side] else {
                if self.held.len() < HELD_DATAGRAMS {
                    self.held.push(buf[..len].to_vec());
                }
                continue;
            };
            if !self.forward(&buf[..len], to, metrics).await {
                return;
            }
        }
    }

    /// Sends `datagram` on to `to`, counting its bytes: false once the session has moved its
    /// byte cap (it ends).
    async fn forward(&mut self, datagram: &[u8], to: SocketAddr, metrics: &Metrics) -> bool {
        self.moved += datagram.len() as u64;
        if self.moved > self.byte_cap {
            metrics.count_rejection(Rejection::RelayBytes);
            tracing::info!(
                bytes = self.moved,
                "a relay session reached its byte cap; closed"
            );
            return false;
        }
        metrics.relayed_bytes.inc_by(datagram.len() as u64);
        let _ = self.socket.send_to(datagram, to).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// A UDP socket on loopback address `127.0.0.<host>`, the end of a session.
    async fn end(host: u8) -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::new(127, 0, 0, host), 0))
            .await
            .unwrap()
    }

    fn asker() -> PublicKey {
        wasmesh_protocol::Keypair::from_seed([9; 32]).public()
    }

    async fn receive(socket: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        let wait = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf));
        let (len, _) = wait.await.ok()?.ok()?;
        Some(buf[..len].to_vec())
    }

    #[tokio::test]
    async fn a_session_carries_datagrams_between_its_two_ends_only() {
        let metrics = Arc::new(Metrics::default());
        let relays = Relays::new(metrics.clone());
        let (b, c, stranger) = (end(2).await, end(3).await, end(2).await);
        let ends = [
            Ipv4Addr::new(127, 0, 0, 2).into(),
            Ipv4Addr::new(127, 0, 0, 3).into(),
        ];
        let tasks = TaskTracker::new();
        let session = relays
            .open(asker(), Ipv4Addr::LOCALHOST.into(), ends, &tasks)
            .await
            .unwrap();
        assert_eq!(metrics.relay_sessions.get(), 1);
        // Each end's first datagram tells the session where it is; B's arrives before C is
        // known, and waits for C.
        b.send_to(b"early", session).await.unwrap();
        c.send_to(b"hello b", session).await.unwrap();
        assert_eq!(receive(&c).await.as_deref(), Some(&b"early"[..]));
        assert_eq!(receive(&b).await.as_deref(), Some(&b"hello b"[..]));
        b.send_to(b"hello c", session).await.unwrap();
        assert_eq!(receive(&c).await.as_deref(), Some(&b"hello c"[..]));
        // Another socket at B's address is not B.
        stranger.send_to(b"intruder", session).await.unwrap();
        b.send_to(b"still b", session).await.unwrap();
        assert_eq!(receive(&c).await.as_deref(), Some(&b"still b"[..]));
        assert_eq!(metrics.relayed_bytes.get(), 5 + 7 + 7 + 7);
    }

    #[tokio::test]
    async fn sessions_beyond_the_cap_are_refused_and_one_past_its_bytes_is_cut() {
        let metrics = Arc::new(Metrics::default());
        let relays = Relays::with_caps(2, 100, metrics.clone());
        let ends = [
            Ipv4Addr::new(127, 0, 0, 2).into(),
            Ipv4Addr::new(127, 0, 0, 3).into(),
        ];
        let tasks = TaskTracker::new();
        let loopback = Ipv4Addr::LOCALHOST.into();
        let session = relays.open(asker(), loopback, ends, &tasks).await.unwrap();
        relays.open(asker(), loopback, ends, &tasks).await.unwrap();
        assert!(matches!(
            relays.open(asker(), loopback, ends, &tasks).await,
            Err(RelayError::Full)
        ));
        assert_eq!(metrics.rejections_of(Rejection::RelayFull), 1);
        let (b, c) = (end(2).await, end(3).await);
        c.send_to(b"here", session).await.unwrap();
        let datagram = [7u8; 40];
        b.send_to(&datagram, session).await.unwrap();
        assert!(receive(&c).await.is_some());
        b.send_to(&datagram, session).await.unwrap();
        assert!(receive(&c).await.is_some());
        b.send_to(&datagram, session).await.unwrap();
        assert_eq!(
            receive(&c).await,
            None,
            "past 100 bytes the session is closed"
        );
        assert_eq!(metrics.rejections_of(Rejection::RelayBytes), 1);
        // Its place is free again.
        relays.open(asker(), loopback, ends, &tasks).await.unwrap();
    }

    #[tokio::test]
    async fn one_node_holds_at_most_its_share_of_the_sessions() {
        let metrics = Arc::new(Metrics::default());
        let relays = Relays::new(metrics.clone());
        let ends = [
            Ipv4Addr::new(127, 0, 0, 2).into(),
            Ipv4Addr::new(127, 0, 0, 3).into(),
        ];
        let (tasks, loopback) = (TaskTracker::new(), Ipv4Addr::LOCALHOST.into());
        for _ in 0..MAX_RELAY_SESSIONS_PER_NODE {
            relays.open(asker(), loopback, ends, &tasks).await.unwrap();
        }
        let more = relays.open(asker(), loopback, ends, &tasks).await;
        assert!(matches!(more, Err(RelayError::Full)));
        let other = wasmesh_protocol::Keypair::from_seed([10; 32]).public();
        relays.open(other, loopback, ends, &tasks).await.unwrap();
        assert_eq!(metrics.rejections_of(Rejection::RelayFull), 1);
    }
}
