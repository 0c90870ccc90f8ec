//! What the request path learns about a peer and every view must see at once, shared by the
//! peer table and the views cloned from it (atomics and a small lock, no message): requests
//! forwarded to the peer now, until when it is down, and which blobs it proved it holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use wasmesh_protocol::ContentHash;
use wasmesh_protocol::routing;

/// What the request path learns about a peer on every forward and the next request must see
/// at once: the requests forwarded to it now, until when it is down after a failed forward
/// (no answer, or an answer whose receipt does not verify), and which blobs it proved it holds
/// ([`Possession`]). Shared by the table and every view cloned from it, so that changing them
/// takes no message.
#[derive(Debug, Clone, Default)]
pub struct PeerFeedback(Arc<FeedbackCells>);

#[derive(Debug, Default)]
struct FeedbackCells {
    forwarding: AtomicU32,
    /// Ms on the node's routing clock; 0: not down; `u64::MAX`: never routed to again.
    down_until_ms: AtomicU64,
    /// What this node learned of the blobs the peer claims to hold, at most
    /// [`MAX_POSSESSIONS`] of them.
    possessions: std::sync::Mutex<HashMap<ContentHash, Possession>>,
}

/// How long a proof of possession lets a peer be routed to for a blob.
pub const PROVEN_FOR: Duration = Duration::from_secs(600);
/// How long after a failed proof a peer is asked again.
pub const FAILED_PROOF_WAIT: Duration = Duration::from_secs(60);
/// How long a proof may be under way before another may start.
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(30);
/// Blobs per peer whose proofs are remembered.
pub const MAX_POSSESSIONS: usize = 256;

/// What is known of a peer's claim to hold one blob (times in ms on the routing clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Possession {
    /// It served a random range of it that verified: a routing candidate until then.
    Proven {
        /// Until when.
        until_ms: u64,
    },
    /// A proof is under way since then.
    Checking {
        /// Since when.
        since_ms: u64,
    },
    /// Its proof failed: not asked again before then.
    Failed {
        /// Until when.
        until_ms: u64,
    },
}

impl PeerFeedback {
    /// The requests forwarded to the peer now.
    pub fn forwarding(&self) -> u32 {
        self.0.forwarding.load(Ordering::Relaxed)
    }

    /// Counts one more forwarded request until the returned guard drops.
    pub fn enter(&self) -> ForwardGuard {
        self.0.forwarding.fetch_add(1, Ordering::Relaxed);
        ForwardGuard(self.0.clone())
    }

    /// Until when the peer is not routed to (ms on the routing clock), if it failed lately.
    pub fn down_until_ms(&self) -> Option<u64> {
        match self.0.down_until_ms.load(Ordering::Relaxed) {
            0 => None,
            until => Some(until),
        }
    }

    /// A forward to the peer failed at `now_ms`: it is not routed to for a while
    /// ([`routing::down_after_failure`]).
    pub fn mark_down(&self, now_ms: u64) {
        let until = routing::down_after_failure(now_ms).max(1);
        self.0.down_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// The peer signed an answer that others contradicted: it is never routed to again.
    pub fn ban(&self) {
        self.0.down_until_ms.store(u64::MAX, Ordering::Relaxed);
    }

    /// Whether the peer is banned (see [`PeerFeedback::ban`]).
    pub fn is_banned(&self) -> bool {
        self.0.down_until_ms.load(Ordering::Relaxed) == u64::MAX
    }

    fn possessions(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Possession>> {
        crate::lock::lock(&self.0.possessions)
    }

    /// Whether the peer proved, within [`PROVEN_FOR`] of `now_ms`, that it holds `blob`.
    pub fn has_proven(&self, blob: &ContentHash, now_ms: u64) -> bool {
        matches!(
            self.possessions().get(blob),
            Some(Possession::Proven { until_ms }) if *until_ms > now_ms
        )
    }

    /// Whether a proof that the peer holds `blob` is under way at `now_ms`.
    pub fn proof_under_way(&self, blob: &ContentHash, now_ms: u64) -> bool {
        matches!(
            self.possessions().get(blob),
            Some(Possession::Checking { since_ms })
                if now_ms.saturating_sub(*since_ms) < PROOF_TIMEOUT.as_millis() as u64
        )
    }

    /// Whether a proof that the peer holds `blob` should start now; if so, it is marked as
    /// under way (report its end with [`PeerFeedback::proof_ended`]).
    pub fn start_proof(&self, blob: &ContentHash, now_ms: u64) -> bool {
        let mut possessions = self.possessions();
        let due = match possessions.get(blob) {
            None => true,
            Some(Possession::Proven { until_ms } | Possession::Failed { until_ms }) => {
                *until_ms <= now_ms
            }
            Some(Possession::Checking { since_ms }) => {
                now_ms.saturating_sub(*since_ms) >= PROOF_TIMEOUT.as_millis() as u64
            }
        };
        if due {
            remember(
                &mut possessions,
                *blob,
                Possession::Checking { since_ms: now_ms },
            );
        }
        due
    }

    /// A proof that the peer holds `blob` ended at `now_ms`, with `held`.
    pub fn proof_ended(&self, blob: &ContentHash, held: bool, now_ms: u64) {
        let possession = if held {
            Possession::Proven {
                until_ms: now_ms.saturating_add(PROVEN_FOR.as_millis() as u64),
            }
        } else {
            Possession::Failed {
                until_ms: now_ms.saturating_add(FAILED_PROOF_WAIT.as_millis() as u64),
            }
        };
        remember(&mut self.possessions(), *blob, possession);
    }
}

/// Records `possession` of `blob`, making room (the entry that expires first goes) when the
/// peer has [`MAX_POSSESSIONS`] already.
fn remember(
    possessions: &mut HashMap<ContentHash, Possession>,
    blob: ContentHash,
    possession: Possession,
) {
    if !possessions.contains_key(&blob) && possessions.len() >= MAX_POSSESSIONS {
        let first_due = possessions
            .iter()
            .min_by_key(|(_, p)| match p {
                Possession::Proven { until_ms } | Possession::Failed { until_ms } => *until_ms,
                Possession::Checking { since_ms } => *since_ms,
            })
            .map(|(blob, _)| *blob);
        if let Some(first_due) = first_due {
            possessions.remove(&first_due);
        }
    }
    possessions.insert(blob, possession);
}

/// One forwarded request, counted in its peer's [`PeerFeedback`] until dropped, wherever the
/// request's future stops.
#[derive(Debug)]
pub struct ForwardGuard(Arc<FeedbackCells>);

impl Drop for ForwardGuard {
    fn drop(&mut self) {
        self.0.forwarding.fetch_sub(1, Ordering::Relaxed);
    }
}
