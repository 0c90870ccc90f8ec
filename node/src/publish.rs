//! Publishing through this node: the bundle (signed manifest and module) is checked as any
//! manifest is, and the module too (valid Wasm, the manifest's ABI, the blob quota, room on
//! disk); then the blob is stored, the manifest accepted and gossiped, and the module compiled
//! here before the answer, so that a publish answered means "ready here".

use std::sync::Arc;

use wasmesh_protocol::{PublishBundle, SignedManifest};

use crate::control::handle::NodeHandle;
use crate::core::manifests::{self, Origin, Refusal};
use crate::disk_budget::DiskBudget;
use crate::executor::GuestError;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::refusal_log::Refusals;
use crate::rejection::Rejection;
use crate::store::Store;
use crate::store_writer::StoreWriter;
use crate::view::Views;

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PublishError {
    /// The manifest was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The module is not valid Wasm, or uses imports the ABI does not provide.
    #[error(transparent)]
    Module(#[from] GuestError),
    /// Storing the blob would exceed this node's blob quota.
    #[error("the module's {size} bytes exceed this node's blob quota of {quota_mib} MiB")]
    OverQuota {
        /// The blob's size.
        size: u64,
        /// The quota.
        quota_mib: u64,
    },
    /// The blob would not leave this node's disk reserve free (or the disk is full).
    #[error("no room on this node's disk: {shortfall}")]
    DiskFull {
        /// What is missing, in words.
        shortfall: String,
    },
    /// The node stopped before the publish was taken.
    #[error("the node is stopping")]
    Stopping,
    /// The ABI in the manifest is not the module's.
    #[error("the manifest says ABI {manifest}, the module is {module}")]
    AbiMismatch {
        /// ABI in the manifest.
        manifest: wasmesh_protocol::Abi,
        /// ABI detected.
        module: wasmesh_protocol::Abi,
    },
}

impl PublishError {
    /// A short machine-readable reason.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PublishError::Refused(refusal) => refusal.kind(),
            PublishError::Module(error) => error.kind().as_str(),
            PublishError::AbiMismatch { .. } => "abi_mismatch",
            PublishError::OverQuota { .. } => "over_quota",
            PublishError::DiskFull { .. } => "disk_full",
            PublishError::Stopping => "node_stopping",
        }
    }
}

/// Publishing through this node (see the module docs).
pub(crate) struct Publisher {
    pub(crate) policy: Arc<Policy>,
    pub(crate) views: Arc<Views>,
    pub(crate) store: Store,
    pub(crate) store_writer: StoreWriter,
    pub(crate) disk: DiskBudget,
    pub(crate) control: NodeHandle,
    pub(crate) ingestor: Arc<Ingestor>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) refusals: Arc<Refusals>,
}

impl Publisher {
    /// Publishes a bundle: verify, store the blob, accept the manifest, announce it, and compile
    /// it here before answering.
    pub(crate) async fn publish(
        &self,
        bundle: PublishBundle,
    ) -> Result<SignedManifest, PublishError> {
        let signed = bundle.manifest;
        let manifest = &signed.manifest;
        let refused = |refusal: Refusal| {
            self.refusals.manifest(manifest, Origin::Publish, &refusal);
            refusal
        };
        let verified = manifests::verify(&signed, &self.policy.trust).map_err(refused)?;
        manifest
            .verify_blob(&bundle.module)
            .map_err(|e| refused(e.into()))?;
        let info = wasmesh_protocol::wasm::inspect(&bundle.module).map_err(|e| {
            self.metrics
                .count_rejection(Rejection::PublishInvalidModule);
            GuestError::from(e)
        })?;
        if info.abi != manifest.abi {
            self.metrics.count_rejection(Rejection::PublishAbiMismatch);
            return Err(PublishError::AbiMismatch {
                manifest: manifest.abi,
                module: info.abi,
            });
        }
        manifests::check_against_held(&self.views.load().registry, manifest, &self.policy.trust)
            .map_err(refused)?;
        if let Some(quota) = self.disk.exceeded_quota(&manifest.blob, manifest.size) {
            self.metrics.count_rejection(Rejection::PublishOverQuota);
            return Err(PublishError::OverQuota {
                size: manifest.size,
                quota_mib: quota >> 20,
            });
        }
        self.store_blob(manifest, bundle.module).await?;
        self.control
            .offer(verified, Origin::Publish)
            .await
            .map_err(|_| PublishError::Stopping)??;
        // A publish is answered once its manifest is on disk.
        self.store_writer.flush().await;
        let _ = self.control.publish_manifest(signed.encode()).await;
        self.ingestor.ingest(signed.clone()).await;
        Ok(signed)
    }

    /// Stores the module's blob, if it fits.
    async fn store_blob(
        &self,
        manifest: &wasmesh_protocol::manifest::Manifest,
        module: Vec<u8>,
    ) -> Result<(), PublishError> {
        let disk_full = |shortfall: String| {
            self.metrics.count_rejection(Rejection::PublishDiskFull);
            PublishError::DiskFull { shortfall }
        };
        if !self.store.has_blob(&manifest.blob) {
            self.disk.room_for(manifest.size).map_err(disk_full)?;
        }
        let store = self.store.clone();
        let hash = manifest.blob;
        tokio::task::spawn_blocking(move || store.put_blob(hash, &module))
            .await
            .map_err(|e| Refusal::Store(e.to_string()))?
            .map_err(|e| match e.is_disk_full() {
                true => disk_full(e.to_string()),
                false => Refusal::Store(e.to_string()).into(),
            })
    }
}
