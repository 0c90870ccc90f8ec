//! What the scale model's transport carries: the deliveries waiting for their time, in order,
//! and the count of what the control plane carried.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use wasmesh_protocol::wire::{PeerRecord, StatusMessage};

use super::node::NodeId;

/// What arrives at a node.
pub(crate) enum Delivery {
    /// Its periodic tick.
    Tick,
    /// A connection that `from` dialed at `addr` opened; `kept` when the dialer keeps it.
    Connected {
        from: NodeId,
        addr: Multiaddr,
        kept: bool,
    },
    /// `from` asks for a sync (manifests and introductions) or a peer exchange.
    SyncAsked { from: NodeId },
    /// The peers a neighbour introduced.
    Introduced { records: Vec<PeerRecord> },
    /// `from`'s status.
    Status {
        from: NodeId,
        status: Box<StatusMessage>,
    },
    /// `from` answered a status asking for the ready list.
    WantReady { from: NodeId },
}

/// A delivery at `at` microseconds; `seq` keeps equal times in order.
pub(crate) struct Queued {
    pub(crate) at: u64,
    pub(crate) seq: u64,
    pub(crate) to: NodeId,
    pub(crate) delivery: Delivery,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Messages and bytes the control plane carried while the mesh formed, by kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carried {
    pub(crate) messages: BTreeMap<&'static str, u64>,
    pub(crate) bytes: BTreeMap<&'static str, u64>,
}

impl Carried {
    pub(crate) fn add(&mut self, kind: &'static str, bytes: usize) {
        *self.messages.entry(kind).or_default() += 1;
        *self.bytes.entry(kind).or_default() += bytes as u64;
    }
}
