//! Private meshes: which connected peers have proved membership (until when), and which have
//! not yet (since when). A peer is kept out of gossip until it is admitted; one that fails, that
//! does not prove membership within [`ADMISSION_TIMEOUT`], or whose membership expires, is
//! disconnected. Each peer that leaves or is refused without being admitted is counted once as
//! `not_admitted`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a peer of a private mesh has to prove membership (answer the sync request that
/// carries certificates) before it is disconnected.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is admitted, and who is still to prove membership.
#[derive(Debug, Default, Clone)]
pub struct AdmissionBook {
    /// Admitted peers, until their certificate expires (ms since the Unix epoch).
    admitted: HashMap<PeerId, u64>,
    /// Connected peers not yet admitted, since when.
    pending: HashMap<PeerId, Instant>,
}

/// What became of a peer that presented a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It was admitted before, or is now (`newly`).
    Admitted {
        /// Whether it was admitted by this certificate (its gossip can be let in).
        newly: bool,
    },
    /// It is refused: disconnect it. `counted` when it was pending (count `not_admitted`).
    Refused {
        /// Whether this is its first refusal since it connected.
        counted: bool,
    },
}

impl AdmissionBook {
    /// Whether `peer` is admitted.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.admitted.contains_key(peer)
    }

    /// Peers waiting to prove membership.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A first connection to `peer` opened: it waits for admission unless admitted already.
    /// Returns whether it must be kept out of gossip meanwhile.
    pub fn connected(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.admitted.contains_key(&peer) {
            return false;
        }
        self.pending.insert(peer, now);
        true
    }

    /// The last connection to `peer` closed. Returns whether it left without being admitted.
    pub fn disconnected(&mut self, peer: &PeerId) -> bool {
        self.admitted.remove(peer);
        self.pending.remove(peer).is_some()
    }

    /// `peer` presented a certificate valid until `until_ms` (`None`: no valid certificate).
    pub fn presented(&mut self, peer: PeerId, until_ms: Option<u64>) -> Verdict {
        if self.admitted.contains_key(&peer) {
            return Verdict::Admitted { newly: false };
        }
        match until_ms {
            Some(until_ms) => {
                self.pending.remove(&peer);
                self.admitted.insert(peer, until_ms);
                Verdict::Admitted { newly: true }
            }
            None => Verdict::Refused {
                counted: self.pending.remove(&peer).is_some(),
            },
        }
    }

    /// Peers whose membership has expired at `wall_ms` (ms since the Unix epoch); they are
    /// forgotten.
    pub fn expired(&mut self, wall_ms: u64) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self
            .admitted
            .iter()
            .filter(|(_, until)| **until <= wall_ms)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.admitted.remove(peer);
        }
        expired
    }

    /// Peers that have not proved membership within [`ADMISSION_TIMEOUT`] of connecting; they
    /// are forgotten.
    pub fn timed_out(&mut self, now: Instant) -> Vec<PeerId> {
        let silent: Vec<PeerId> = self
            .pending
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= ADMISSION_TIMEOUT)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &silent {
            self.pending.remove(peer);
        }
        silent
    }
}
