//! When this node announces its ready blobs to their directory nodes, and when it looks up the
//! holders of a blob (see `wasmesh_protocol::holders`). Times are arguments; the control task
//! runs the Kademlia lookups and sends the messages.
//!
//! - Announcements: a blob is announced when it becomes ready here, then every
//!   [`ANNOUNCE_EVERY`] (well within the directories' `HOLDER_TTL`).
//! - Lookups: a request or an ingest that knows no current holder asks for one, at most once
//!   per [`FIND_AGAIN_AFTER`] per blob; a blob wanted lately is looked up again every
//!   [`HOLDER_REFRESH`], so the holders it routes to stay current.
//! - Bounds: at most [`MAX_LOOKUPS_IN_FLIGHT`] lookups at once (announcements wait for the next
//!   tick) and [`MAX_SEARCHED_BLOBS`] blobs remembered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wasmesh_protocol::ContentHash;

/// How often a ready blob is announced again.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(30 * 60);
/// The shortest time between two lookups of one blob's holders.
pub const FIND_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// How often the holders of a blob wanted lately are looked up again.
pub const HOLDER_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Most Kademlia lookups under way at once.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 8;
/// Most blobs whose lookups are remembered.
pub const MAX_SEARCHED_BLOBS: usize = 4096;
/// Directory nodes each blob is announced to (the closest to its hash).
pub const DIRECTORY_REPLICAS: usize = 3;
/// Directory nodes asked per lookup (the closest to the hash).
pub const DIRECTORIES_ASKED: usize = 2;
/// Holders asked for per lookup.
pub const HOLDERS_WANTED: u8 = 8;

/// What the node looks up and announces, and when (see the module docs).
#[derive(Debug, Default)]
pub struct HolderSearch {
    /// This node's ready blobs, and when each was last announced.
    announced: HashMap<ContentHash, Instant>,
    /// Blobs whose holders were looked up: when last, and when last wanted.
    searched: HashMap<ContentHash, Search>,
    in_flight: usize,
}

#[derive(Debug, Clone, Copy)]
struct Search {
    looked_up: Instant,
    wanted: Instant,
}

impl HolderSearch {
    /// This node's ready blobs due for announcement at `now` (newly ready ones, and those
    /// announced [`ANNOUNCE_EVERY`] ago), as many as lookups may start; they count as announced.
    /// Blobs no longer ready are forgotten.
    pub fn announcements_due(&mut self, ready: &[ContentHash], now: Instant) -> Vec<ContentHash> {
        self.announced.retain(|blob, _| ready.contains(blob));
        let mut due = Vec::new();
        for blob in ready {
            if self.in_flight >= MAX_LOOKUPS_IN_FLIGHT {
                break;
            }
            let stale = self
                .announced
                .get(blob)
                .is_none_or(|at| now.saturating_duration_since(*at) >= ANNOUNCE_EVERY);
            if stale {
                self.announced.insert(*blob, now);
                self.in_flight += 1;
                due.push(*blob);
            }
        }
        due
    }

    /// This node's holder record changed (its addresses): every ready blob is announced again
    /// at the next round, so directories stop handing out the old record.
    pub fn announce_again(&mut self) {
        self.announced.clear();
    }

    /// A request or an ingest wants holders of `blob`: whether a lookup starts now (then it
    /// counts as started).
    pub fn want(&mut self, blob: ContentHash, now: Instant) -> bool {
        if let Some(search) = self.searched.get_mut(&blob) {
            search.wanted = now;
            if now.saturating_duration_since(search.looked_up) < FIND_AGAIN_AFTER {
                return false;
            }
        }
        if self.in_flight >= MAX_LOOKUPS_IN_FLIGHT {
            return false;
        }
        if !self.searched.contains_key(&blob) && self.searched.len() >= MAX_SEARCHED_BLOBS {
            self.forget_least_wanted();
        }
        self.searched.insert(
            blob,
            Search {
                looked_up: now,
                wanted: now,
            },
        );
        self.in_flight += 1;
        true
    }

    /// Blobs wanted within the last [`HOLDER_REFRESH`] whose last lookup is at least that old:
    /// they are looked up again now (as many as may start). Blobs not wanted for that long are
    /// forgotten.
    pub fn refreshes_due(&mut self, now: Instant) -> Vec<ContentHash> {
        self.searched
            .retain(|_, s| now.saturating_duration_since(s.wanted) < HOLDER_REFRESH);
        let mut due = Vec::new();
        for (blob, search) in &mut self.searched {
            if self.in_flight >= MAX_LOOKUPS_IN_FLIGHT {
                break;
            }
            if now.saturating_duration_since(search.looked_up) >= HOLDER_REFRESH {
                search.looked_up = now;
                self.in_flight += 1;
                due.push(*blob);
            }
        }
        due
    }

    /// A lookup started by this search ended (found or not).
    pub fn lookup_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    fn forget_least_wanted(&mut self) {
        if let Some(blob) = self
            .searched
            .iter()
            .min_by_key(|(_, s)| s.wanted)
            .map(|(blob, _)| *blob)
        {
            self.searched.remove(&blob);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_announced_when_ready_and_again_after_the_period() {
        let mut search = HolderSearch::default();
        let blob = ContentHash::of(b"a");
        let start = Instant::now();
        assert_eq!(search.announcements_due(&[blob], start), [blob]);
        search.lookup_done();
        assert!(search.announcements_due(&[blob], start).is_empty());
        assert_eq!(
            search.announcements_due(&[blob], start + ANNOUNCE_EVERY),
            [blob]
        );
    }

    #[test]
    fn lookups_are_spaced_bounded_and_refreshed_while_wanted() {
        let mut search = HolderSearch::default();
        let blob = ContentHash::of(b"a");
        let start = Instant::now();
        assert!(search.want(blob, start));
        search.lookup_done();
        assert!(!search.want(blob, start + Duration::from_secs(1)));
        assert!(search.want(blob, start + FIND_AGAIN_AFTER));
        search.lookup_done();
        // Wanted lately: looked up again once the refresh period has passed.
        let later = start + FIND_AGAIN_AFTER + Duration::from_secs(1);
        assert!(!search.want(blob, later));
        assert_eq!(
            search.refreshes_due(start + FIND_AGAIN_AFTER + HOLDER_REFRESH),
            [blob]
        );
        search.lookup_done();
        // Not wanted for a whole period: forgotten.
        assert!(search.refreshes_due(later + 3 * HOLDER_REFRESH).is_empty());
        // No more than MAX_LOOKUPS_IN_FLIGHT at once.
        let started = (0..20u8)
            .filter(|i| search.want(ContentHash::of(&[*i]), later))
            .count();
        assert_eq!(started, MAX_LOOKUPS_IN_FLIGHT);
    }
}
