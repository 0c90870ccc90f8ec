//! What every service of a node shares, built once at start and handed out in constructors.

use std::sync::Arc;

use libp2p::PeerId;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use wasmesh_protocol::Keypair;

use crate::clock::NodeClock;
use crate::executor::Executor;
use crate::local_run::LocalLoad;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::refusal_log::Refusals;
use crate::store::Store;
use crate::view::Views;

/// What every service shares: built once, handed out in constructors.
pub(super) struct Shared {
    pub(super) keys: Keypair,
    pub(super) peer_id: PeerId,
    pub(super) policy: Arc<Policy>,
    pub(super) store: Store,
    pub(super) executor: Executor,
    pub(super) metrics: Arc<Metrics>,
    pub(super) refusals: Arc<Refusals>,
    pub(super) views: Arc<Views>,
    pub(super) load: Arc<LocalLoad>,
    pub(super) clock: NodeClock,
    pub(super) tasks: TaskTracker,
    pub(super) providers_changed: Arc<Notify>,
}
