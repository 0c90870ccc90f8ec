//! Logging refusals without letting one peer flood the log. Every refusal is counted in the
//! metrics; of one peer's refusals, the first in an interval is logged at once, and the rest
//! of that interval only as a count, carried by the peer's next line after it (`suppressed`).
//! The peers remembered are capped: a crowd of fresh identities cannot make the table grow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How often one peer's refusals are logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Peers remembered at most; past it, the ones whose interval has passed are forgotten, and
/// if none has, all are.
pub(crate) const MAX_PEERS: usize = 4096;

/// When each peer's refusals were last logged, and how many came since.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    peers: Mutex<HashMap<PeerId, Logged>>,
}

#[derive(Debug, Clone, Copy)]
struct Logged {
    at: Instant,
    suppressed: u64,
}

impl RefusalLog {
    /// A refusal of `peer`'s input at `now`: `Some(n)` if it is to be logged, with `n` of the
    /// peer's refusals left out of the log since its last line; `None` if it is only counted.
    pub(crate) fn admit(&self, peer: &PeerId, now: Instant) -> Option<u64> {
        let mut peers = crate::lock::lock(&self.peers);
        if let Some(logged) = peers.get_mut(peer) {
            if now.saturating_duration_since(logged.at) < LOG_EVERY {
                logged.suppressed += 1;
                return None;
            }
            let suppressed = logged.suppressed;
            *logged = Logged {
                at: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, logged| now.saturating_duration_since(logged.at) < LOG_EVERY);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        peers.insert(
            *peer,
            Logged {
                at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// Refusals of this node's input, counted and logged (see the module docs): the one place the
/// event loop, publishing and the holder directory report what they refused.
#[derive(Debug)]
pub(crate) struct Refusals {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    log: RefusalLog,
}

impl Refusals {
    /// Refusals counted in `metrics`.
    pub(crate) fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            log: RefusalLog::default(),
        }
    }

    /// Whether to log a refusal of `peer`'s input now: `Some` with the number of its refusals
    /// not logged since its last line, `None` to only count it.
    pub(crate) fn logged(&self, peer: &PeerId) -> Option<u64> {
        self.log.admit(peer, Instant::now())
    }

    /// Counts and logs a refused manifest (a peer's refusals once per interval, with a count).
    pub(crate) fn manifest(
        &self,
        manifest: &wasmesh_protocol::manifest::Manifest,
        origin: crate::core::manifests::Origin,
        refusal: &crate::core::manifests::Refusal,
    ) {
        use crate::core::manifests::Origin;
        self.metrics.count_rejection(refusal.rejection());
        let suppressed = match origin {
            Origin::Gossip(peer) | Origin::Sync(peer) => self.logged(&peer),
            Origin::Publish | Origin::Store => Some(0),
        };
        if let Some(suppressed) = suppressed {
            tracing::info!(module = %manifest.name, version = manifest.version, ?origin, %refusal, suppressed, "refused manifest");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carries_the_count_of_the_rest() {
        let log = RefusalLog::default();
        let peer = PeerId::random();
        let other = PeerId::random();
        let start = Instant::now();
        assert_eq!(log.admit(&peer, start), Some(0));
        for i in 1..=5 {
            assert_eq!(log.admit(&peer, start + Duration::from_millis(i)), None);
        }
        // Another peer is not held back by the first.
        assert_eq!(log.admit(&other, start), Some(0));
        assert_eq!(log.admit(&peer, start + LOG_EVERY), Some(5));
        assert_eq!(log.admit(&peer, start + LOG_EVERY), None);
    }

    #[test]
    fn a_crowd_of_peers_cannot_grow_the_table_past_its_cap() {
        let log = RefusalLog::default();
        let now = Instant::now();
        for _ in 0..MAX_PEERS * 2 + 3 {
            assert_eq!(log.admit(&PeerId::random(), now), Some(0));
        }
        assert!(crate::lock::lock(&log.peers).len() <= MAX_PEERS);
    }
}
