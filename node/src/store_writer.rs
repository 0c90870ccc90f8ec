//! The one task that writes the node's store on behalf of manifest intake: a manifest accepted
//! from gossip or sync is taken in memory at once, and its file (written, fsynced, renamed, the
//! folder fsynced) follows on a blocking thread, in the order accepted. So a slow disk delays
//! nothing on the task that drives libp2p, which owns the registry, and nothing waits on an
//! fsync there.
//!
//! What it is sent is bounded by what intake accepts: manifests signed by trusted publishers,
//! each newer than the one it replaces.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use wasmesh_protocol::{ContentHash, SignedManifest};

use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::store::Store;

enum Write {
    Manifest(Box<SignedManifest>),
    RemoveBlob(ContentHash),
    Flush(oneshot::Sender<()>),
    /// Ends the task once what was sent before is written.
    Stop,
}

/// A handle to the writer task (cheap to clone). The task ends at [`StoreWriter::close`], or once
/// every handle is dropped, after what was sent is written.
#[derive(Debug, Clone)]
pub(crate) struct StoreWriter {
    writes: mpsc::UnboundedSender<Write>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Manifest(signed) => write!(f, "Manifest({})", signed.manifest.key()),
            Write::RemoveBlob(hash) => write!(f, "RemoveBlob({})", hash.short()),
            Write::Flush(_) => f.write_str("Flush"),
            Write::Stop => f.write_str("Stop"),
        }
    }
}

impl StoreWriter {
    /// Starts the writer task for `store`, on `tasks`. The node closes it when it stops.
    pub(crate) fn spawn(store: Store, metrics: Arc<Metrics>, tasks: &TaskTracker) -> Self {
        let (writes, mut queue) = mpsc::unbounded_channel();
        tasks.spawn(async move {
            while let Some(write) = queue.recv().await {
                if matches!(write, Write::Stop) {
                    return;
                }
                let store = store.clone();
                let done = tokio::task::spawn_blocking(move || apply(&store, write)).await;
                if let Ok(Err(error)) = done {
                    metrics.count_rejection(Rejection::StoreWriteFailed);
                    tracing::warn!(%error, "could not write the store");
                }
            }
        });
        Self { writes }
    }

    /// Writes `signed` as its module's manifest.
    pub(crate) fn put_manifest(&self, signed: SignedManifest) {
        let _ = self.writes.send(Write::Manifest(Box::new(signed)));
    }

    /// Removes the blob `hash` (no manifest uses it any more).
    pub(crate) fn remove_blob(&self, hash: ContentHash) {
        let _ = self.writes.send(Write::RemoveBlob(hash));
    }

    /// Waits until everything sent before is written.
    pub(crate) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.writes.send(Write::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// Writes everything sent before, then ends the task: what is sent afterwards is not
    /// written.
    pub(crate) async fn close(&self) {
        self.flush().await;
        let _ = self.writes.send(Write::Stop);
    }
}

fn apply(store: &Store, write: Write) -> std::io::Result<()> {
    match write {
        Write::Manifest(signed) => store.put_manifest(&signed),
        Write::RemoveBlob(hash) => store.remove_blob(&hash),
        Write::Flush(done) => {
            let _ = done.send(());
            Ok(())
        }
        Write::Stop => Ok(()),
    }
}
