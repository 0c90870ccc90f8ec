//! This node's status, made by the event loop itself: when its ready list or manifests change
//! (at once) and on the status interval (for its load and coordinate). Each status carries a
//! sequence number from the wall clock, so a restarted node's statuses are newer than its old
//! ones.

use std::sync::Arc;

use wasmesh_protocol::PublicKey;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{MAX_STATUS_BLOBS, StatusMessage, ready_version};

use crate::core::registry::Registry;
use crate::local_run::LocalLoad;
use crate::own_addresses::OwnAddresses;

/// Most libp2p addresses a status names.
pub(crate) const MAX_STATUS_ADDRS: usize = 8;

/// What this node's statuses are made of.
#[derive(Debug)]
pub(crate) struct StatusSource {
    key: PublicKey,
    /// Where peers reach this node (its data plane, and at most [`MAX_STATUS_ADDRS`] libp2p
    /// addresses).
    addresses: OwnAddresses,
    load: Arc<LocalLoad>,
    seq: u64,
    /// How many times what the addresses advertise changed.
    address_changes: u64,
}

impl StatusSource {
    /// Statuses of node `key`, reachable at `addresses`, reporting `load`.
    pub(crate) fn new(key: PublicKey, addresses: OwnAddresses, load: Arc<LocalLoad>) -> Self {
        Self {
            key,
            addresses,
            load,
            // From the clock, so a restarted node's statuses are newer than its old ones.
            seq: crate::clock::now_ms().saturating_mul(1000),
            address_changes: 0,
        }
    }

    /// This node's addresses.
    pub(crate) fn addresses(&self) -> &OwnAddresses {
        &self.addresses
    }

    /// Changes this node's addresses (the next status advertises them); whether `change`
    /// says what they advertise changed.
    pub(crate) fn change_addresses(
        &mut self,
        change: impl FnOnce(&mut OwnAddresses) -> bool,
    ) -> bool {
        let changed = change(&mut self.addresses);
        if changed {
            self.address_changes += 1;
        }
        changed
    }

    /// How many times what this node's addresses advertise changed.
    pub(crate) fn address_changes(&self) -> u64 {
        self.address_changes
    }

    /// The next status: what `registry` holds ready (nothing once the node is leaving), the
    /// load now, and `coordinate`.
    pub(crate) fn make(&mut self, registry: &Registry, coordinate: Coordinate) -> StatusMessage {
        let leaving = self.load.is_stopping();
        let mut ready = if leaving {
            Vec::new()
        } else {
            registry.ready_blobs()
        };
        // Past what peers accept, a status would be refused whole and this node would vanish
        // from routing: it names the first blobs only (the rest is found by sync and fetch).
        ready.truncate(MAX_STATUS_BLOBS);
        self.seq += 1;
        StatusMessage {
            node: self.key,
            quic_addr: self.addresses.quic().to_string(),
            ready_version: ready_version(&ready),
            ready: Some(ready),
            in_flight: self.load.in_flight(),
            capacity: self.load.capacity(),
            seq: self.seq,
            p2p_addrs: self
                .addresses
                .p2p()
                .iter()
                .take(MAX_STATUS_ADDRS)
                .map(ToString::to_string)
                .collect(),
            manifests: registry.manifest_digest(),
            coordinate,
            leaving,
        }
    }
}
