//! Whether a blob may be stored here: within this node's blob quota (blobs, artifacts and
//! partial blobs counted together) and leaving its disk reserve free. Publishing and ingest
//! ask the same questions of the same store.

use crate::store::Store;

/// The store, with its quota and reserve.
#[derive(Debug, Clone)]
pub(crate) struct DiskBudget {
    store: Store,
    quota: Option<u64>,
    min_free: u64,
}

impl DiskBudget {
    /// `store` within `quota` bytes (if any), leaving `min_free` bytes of its disk free.
    pub(crate) fn new(store: Store, quota: Option<u64>, min_free: u64) -> Self {
        Self {
            store,
            quota,
            min_free,
        }
    }

    /// The quota `size` more bytes would exceed, if storing `blob` would exceed it (a blob
    /// stored already costs nothing).
    pub(crate) fn exceeded_quota(
        &self,
        blob: &wasmesh_protocol::ContentHash,
        size: u64,
    ) -> Option<u64> {
        let quota = self.quota?;
        let over =
            !self.store.has_blob(blob) && self.store.stored_bytes().saturating_add(size) > quota;
        over.then_some(quota)
    }

    /// Whether a blob of `size` bytes fits while leaving the disk reserve free; the shortfall
    /// otherwise, in words.
    pub(crate) fn room_for(&self, size: u64) -> Result<(), String> {
        match self.store.free_bytes() {
            Ok(free) if free >= size.saturating_add(self.min_free) => Ok(()),
            Ok(free) => Err(format!(
                "{free} bytes free, {size} needed and {} kept free",
                self.min_free
            )),
            // Unknown: let the write find out.
            Err(_) => Ok(()),
        }
    }
}
