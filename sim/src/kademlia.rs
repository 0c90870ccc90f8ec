//! A model of Kademlia closest-peer lookups over the scale model's nodes, to count what a
//! lookup costs as the mesh grows: random 64-bit ids, k-buckets of `K` entries, `ALPHA`
//! requests in flight, each answer naming the `K` closest peers the asked node knows; a lookup
//! ends once the `wanted` closest peers it knows have all answered (libp2p-kad's closest-peer
//! iterator, without time: the requests are counted, not timed).
//!
//! A node's table holds, per bucket (the peers whose XOR distance has its highest bit at `b`), up
//! to `K` peers of that bucket, picked from the node's id: the buckets of a well-populated table.

use std::collections::{BTreeMap, HashSet};

use rand::RngExt;
use rand_pcg::Pcg64;

/// Entries per bucket, and peers per answer (libp2p-kad's `K_VALUE`).
pub const K: usize = 20;
/// Requests in flight per lookup (libp2p-kad's default parallelism).
pub const ALPHA: usize = 3;

/// The nodes' ids, sorted.
#[derive(Debug)]
pub struct Dht {
    ids: Vec<u64>,
}

impl Dht {
    /// `nodes` random ids.
    pub fn new(nodes: usize, rng: &mut Pcg64) -> Self {
        let mut ids: Vec<u64> = (0..nodes).map(|_| rng.random::<u64>()).collect();
        ids.sort_unstable();
        ids.dedup();
        Self { ids }
    }

    /// A random node's id.
    pub fn random_node(&self, rng: &mut Pcg64) -> u64 {
        self.ids[rng.random_range(0..self.ids.len())]
    }

    /// The ids in `node`'s table.
    fn table(&self, node: u64) -> Vec<u64> {
        let mut table = Vec::new();
        for bit in 0..64u32 {
            // Peers sharing the bits above `bit` and differing at `bit`: one sorted range.
            let above = if bit == 63 {
                0
            } else {
                (node >> (bit + 1)) << (bit + 1)
            };
            let low = above | ((!node) & (1u64 << bit));
            let high = low | ((1u64 << bit) - 1);
            let start = self.ids.partition_point(|id| *id < low);
            let end = self.ids.partition_point(|id| *id <= high);
            let len = end - start;
            if len == 0 {
                continue;
            }
            // Up to K of them, spread over the range from an offset set by the node's id.
            let take = len.min(K);
            let offset = (node.rotate_left(bit) as usize) % len;
            table.extend((0..take).map(|i| self.ids[start + (offset + i * len / take) % len]));
        }
        table
    }

    /// The `K` ids of `node`'s table closest to `target`.
    fn answer(&self, node: u64, target: u64) -> Vec<u64> {
        let mut table = self.table(node);
        table.sort_by_key(|id| id ^ target);
        table.truncate(K);
        table
    }

    /// Requests a lookup from `from` for the `wanted` closest to `target` sends.
    pub fn lookup_requests(&self, from: u64, target: u64, wanted: usize) -> usize {
        // Known peers by distance: whether each was asked.
        let mut known: BTreeMap<u64, (u64, bool)> = self
            .answer(from, target)
            .into_iter()
            .map(|id| (id ^ target, (id, false)))
            .collect();
        let mut asked = HashSet::new();
        let mut requests = 0;
        loop {
            let done = known.values().take(wanted).all(|(_, asked)| *asked);
            if done {
                return requests;
            }
            let round: Vec<u64> = known
                .values()
                .filter(|(_, asked)| !asked)
                .take(ALPHA)
                .map(|(id, _)| *id)
                .collect();
            for id in round {
                known.insert(id ^ target, (id, true));
                if !asked.insert(id) {
                    continue;
                }
                requests += 1;
                for peer in self.answer(id, target) {
                    if peer != from {
                        known.entry(peer ^ target).or_insert((peer, false));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn mean_requests(nodes: usize) -> f64 {
        let mut rng = Pcg64::seed_from_u64(5);
        let dht = Dht::new(nodes, &mut rng);
        let lookups = 50;
        let total: usize = (0..lookups)
            .map(|_| dht.lookup_requests(dht.random_node(&mut rng), rng.random(), 4))
            .sum();
        total as f64 / lookups as f64
    }

    /// A lookup asks at least the closest peers it wants, and its cost grows slowly with the
    /// mesh: a hundred times more nodes costs far less than a hundred times more requests.
    #[test]
    fn lookups_cost_grows_slowly_with_the_mesh() {
        let small = mean_requests(100);
        let large = mean_requests(10_000);
        assert!(small >= 4.0, "{small}");
        assert!(large > small && large < 4.0 * small, "{small} -> {large}");
    }
}
