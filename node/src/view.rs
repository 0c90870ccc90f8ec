//! The node's view: a read-only snapshot of what the control task knows (the modules, the peer
//! table, this node's coordinate), published by that task after every change.
//!
//! The request path, the gateway, the QUIC server and ingests read it without a lock
//! (`arc-swap`). They never change it: what they learn goes to the control task through the
//! node's handle on that task, which folds it into its state and
//! publishes the next view. The one exception is what each forward must show the next request
//! at once (requests forwarded to a peer now, a peer marked down after a failure): atomics that
//! every view shares (the peer table's `PeerFeedback`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::{ContentHash, PublicKey};

use crate::core::peers::PeerTable;
use crate::core::registry::Registry;
use crate::data::PeerAddr;
use crate::own_addresses::AddressReport;

/// What the node knows, as of one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// The modules held and their state here.
    pub registry: Registry,
    /// What is known of each peer.
    pub peers: PeerTable,
    /// This node's network coordinate.
    pub coordinate: Coordinate,
    /// This node's advertised addresses and reachability (`None` before the first view).
    pub addresses: Option<AddressReport>,
}

impl View {
    /// Peers whose status says the blob is ready there, with their data-plane address.
    pub(crate) fn providers_of(&self, hash: &ContentHash) -> Vec<PeerAddr> {
        self.peers
            .providers_of(hash)
            .into_iter()
            .map(|(key, addr)| PeerAddr { key, addr })
            .collect()
    }
}

impl View {
    /// The rendezvous the peer with node key `key` stands on behind its NAT, where this node
    /// can reach them (see `core::peers::data_path`); none for a public peer.
    pub(crate) fn rendezvous_of(&self, key: PublicKey) -> Vec<PeerAddr> {
        let Some(peer) = wasmesh_keys::identity::peer_id(&key).and_then(|id| self.peers.get(&id))
        else {
            return Vec::new();
        };
        peer.rendezvous
            .iter()
            .filter_map(|id| self.peers.get(id))
            .filter_map(|rv| {
                Some(PeerAddr {
                    key: rv.key?,
                    addr: rv.data_addr()?,
                })
            })
            .collect()
    }
}

/// Where the control task publishes views and everyone else reads the newest.
#[derive(Debug, Default)]
pub(crate) struct Views(ArcSwap<View>);

impl Views {
    /// The newest view. Cheap and lock-free; hold it briefly (not across an `.await`).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<View>> {
        self.0.load()
    }

    /// The newest view, to keep.
    pub(crate) fn load_full(&self) -> Arc<View> {
        self.0.load_full()
    }

    /// Replaces the view.
    pub(crate) fn publish(&self, view: View) {
        self.0.store(Arc::new(view));
    }
}
