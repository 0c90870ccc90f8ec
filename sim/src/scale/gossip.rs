//! Manifest gossip at scale: gossipsub (libp2p's, so the model follows its parameters rather
//! than running it) over the connections the nodes' cores made. A symmetric mesh of `mesh_n`
//! (at most `mesh_n_high`) per node is drawn from those connections; the origin floods its
//! connections, the mesh forwards eagerly, and at each heartbeat IHAVE goes to
//! `max(gossip_lazy, gossip_factor x others)` non-mesh peers for the messages of the last
//! `history_gossip` heartbeats, answered by IWANT and the message. Each receipt costs a
//! signature check before forwarding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::RngExt;
use rand_pcg::Pcg64;

use super::figures::GossipParams;
use super::mesh::Mesh;

/// The gossip overlay: each node's connections and its gossipsub mesh.
pub(crate) struct Overlay {
    connections: Vec<Vec<u32>>,
    mesh: Vec<Vec<u32>>,
    /// Heartbeat phase per node, microseconds.
    phase: Vec<u64>,
    /// One-way delays, microseconds, by node pair (computed on demand).
    positions: Vec<crate::latency::UnitVector>,
}

impl Overlay {
    /// The overlay over `mesh`'s connections.
    pub(crate) fn new(mesh: &Mesh, gossip: &GossipParams, rng: &mut Pcg64) -> Self {
        let connections: Vec<Vec<u32>> = mesh
            .nodes
            .iter()
            .map(|node| node.connected.iter().copied().collect())
            .collect();
        let n = connections.len();
        let mut overlay: Vec<Vec<u32>> = vec![Vec::new(); n];
        for u in 0..n {
            let mut attempts = 0;
            while overlay[u].len() < gossip.mesh_n && attempts < gossip.mesh_n * 8 {
                attempts += 1;
                let Some(&v) = connections[u].get(rng.random_range(0..connections[u].len().max(1)))
                else {
                    break;
                };
                let vi = v as usize;
                if overlay[u].contains(&v) || overlay[vi].len() >= gossip.mesh_n_high {
                    continue;
                }
                overlay[u].push(v);
                overlay[vi].push(u as u32);
            }
        }
        let heartbeat_us = gossip.heartbeat_ms * 1000;
        let phase = (0..n).map(|_| rng.random_range(0..heartbeat_us)).collect();
        Self {
            connections,
            mesh: overlay,
            phase,
            positions: mesh.nodes.iter().map(|node| node.position).collect(),
        }
    }

    fn one_way_us(&self, a: u32, b: u32) -> u64 {
        (self.positions[a as usize].one_way_ms(&self.positions[b as usize]) * 1000.0).round() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A full copy arrives at `to` from `from`.
    Copy,
    /// `from`'s heartbeat: gossip what it got recently.
    Heartbeat,
    /// An IHAVE from `from` arrives at `to`.
    Ihave,
}

/// Something that happens at `at` (microseconds); `seq` keeps equal times in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: u64,
    seq: u64,
    kind: Kind,
    from: u32,
    to: u32,
}

/// The event queue, earliest first.
#[derive(Default)]
struct Events {
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
}

impl Events {
    fn push(&mut self, at: u64, kind: Kind, from: u32, to: u32) {
        self.seq += 1;
        self.heap.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
            from,
            to,
        }));
    }

    fn pop(&mut self) -> Option<Event> {
        self.heap.pop().map(|Reverse(event)| event)
    }

    /// Queues the heartbeats at which `node` gossips a message it got at `at`.
    fn heartbeats(&mut self, world: &Overlay, gossip: &GossipParams, node: u32, at: u64) {
        let heartbeat = gossip.heartbeat_ms * 1000;
        let phase = world.phase[node as usize];
        let next = if at <= phase {
            phase
        } else {
            phase + (at - phase).div_ceil(heartbeat) * heartbeat
        };
        for k in 0..gossip.history_gossip as u64 {
            self.push(next + k * heartbeat, Kind::Heartbeat, node, node);
        }
    }
}

/// One publish: who got it when, and the message counts.
pub(crate) struct Spread {
    pub(crate) arrival: Vec<Option<u64>>,
    pub(crate) copies: Vec<u32>,
    pub(crate) ihaves: Vec<u32>,
    pub(crate) via_gossip: usize,
}

pub(crate) fn spread(
    world: &Overlay,
    gossip: &GossipParams,
    origin: u32,
    rng: &mut Pcg64,
) -> Spread {
    let n = world.connections.len();
    let mut arrival: Vec<Option<u64>> = vec![None; n];
    let mut copies = vec![0u32; n];
    let mut ihaves = vec![0u32; n];
    let mut via_gossip = 0;
    let mut wanted = vec![false; n];
    let mut events = Events::default();
    // The origin has it at 0 and floods it to every connection.
    arrival[origin as usize] = Some(0);
    for &v in &world.connections[origin as usize] {
        events.push(world.one_way_us(origin, v), Kind::Copy, origin, v);
    }
    events.heartbeats(world, gossip, origin, 0);
    while let Some(Event {
        at, kind, from, to, ..
    }) = events.pop()
    {
        match kind {
            Kind::Copy => {
                let t = to as usize;
                copies[t] += 1;
                if arrival[t].is_some() {
                    continue;
                }
                if wanted[t] {
                    via_gossip += 1;
                }
                let ready = at + super::costs::VALIDATE_US;
                arrival[t] = Some(ready);
                for &v in &world.mesh[t] {
                    if v != from {
                        events.push(ready + world.one_way_us(to, v), Kind::Copy, to, v);
                    }
                }
                events.heartbeats(world, gossip, to, ready);
            }
            Kind::Heartbeat => {
                let u = from as usize;
                let others: Vec<u32> = world.connections[u]
                    .iter()
                    .copied()
                    .filter(|v| !world.mesh[u].contains(v))
                    .collect();
                let count = gossip
                    .gossip_lazy
                    .max((gossip.gossip_factor * others.len() as f64) as usize)
                    .min(others.len());
                for _ in 0..count {
                    let v = others[rng.random_range(0..others.len())];
                    events.push(at + world.one_way_us(from, v), Kind::Ihave, from, v);
                }
            }
            Kind::Ihave => {
                let t = to as usize;
                ihaves[t] += 1;
                if arrival[t].is_none() && !wanted[t] {
                    // IWANT back, then the copy.
                    wanted[t] = true;
                    let back = world.one_way_us(to, from) + world.one_way_us(from, to);
                    events.push(at + back, Kind::Copy, from, to);
                }
            }
        }
    }
    Spread {
        arrival,
        copies,
        ihaves,
        via_gossip,
    }
}
