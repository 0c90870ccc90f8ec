//! The services a node is made of, each built with what it needs: the event loop (with the
//! verifier it screens manifests through), the forward server behind the QUIC server, the
//! ingestor, and the gateway's facade over the request path and publishing.

use std::sync::Arc;

use libp2p::Swarm;
use tokio::sync::watch;
use tracing::Instrument;

use super::shared::Shared;
use crate::config::NodeConfig;
use crate::control::handle::NodeHandle;
use crate::control::owner::Owner;
use crate::control::verifier::Verifier;
use crate::control::{self, Behaviour, EventLoop};
use crate::data::DataPlane;
use crate::disk_budget::DiskBudget;
use crate::forward_shares::ForwardShares;
use crate::forwarded::ForwardServer;
use crate::gateway::Api;
use crate::ingest::Ingestor;
use crate::local_run::LocalRunner;
use crate::possession::PossessionChecks;
use crate::publish::Publisher;
use crate::request::Router;
use crate::store_writer::StoreWriter;

/// What the request services share once the planes are up.
pub(super) struct Planes {
    pub(super) data_plane: DataPlane,
    pub(super) control: NodeHandle,
    pub(super) store_writer: StoreWriter,
    pub(super) local: LocalRunner,
    pub(super) possession: Arc<PossessionChecks>,
    pub(super) shutdown: watch::Receiver<bool>,
}

pub(super) fn spawn_event_loop(
    config: &NodeConfig,
    shared: &Shared,
    planes: &Planes,
    swarm: Swarm<Behaviour>,
    owner: Owner,
    commands: tokio::sync::mpsc::Receiver<control::ControlCommand>,
) {
    let verifier = Verifier::new(
        shared.policy.clone(),
        shared.views.clone(),
        planes.control.clone(),
        shared.metrics.clone(),
    );
    let event_loop = EventLoop::new(
        swarm,
        owner,
        verifier,
        shared.metrics.clone(),
        shared.refusals.clone(),
        shared.keys.clone(),
        config.status_interval,
    );
    shared.tasks.spawn(
        event_loop
            .run(commands, planes.shutdown.clone())
            .in_current_span(),
    );
}

/// Serves blobs and, through the forward server, the requests peers forward here.
pub(super) fn spawn_forward_server(config: &NodeConfig, shared: &Shared, planes: &Planes) {
    let forward_server = Arc::new(ForwardServer {
        keys: shared.keys.clone(),
        views: shared.views.clone(),
        local: planes.local.clone(),
        shares: ForwardShares::new(config.executor.max_concurrent + config.executor.max_queued),
        metrics: shared.metrics.clone(),
    });
    shared.tasks.spawn(
        crate::standing::keep(
            shared.views.clone(),
            planes.data_plane.clone(),
            planes.control.clone(),
            planes.shutdown.clone(),
        )
        .in_current_span(),
    );
    let views = shared.views.clone();
    planes.data_plane.enable_reach(crate::data::ReachSettings {
        rendezvous_of: Arc::new(move |key| views.load().rendezvous_of(key)),
        allow_private_addrs: shared.policy.allow_private_addrs,
    });
    let control = planes.control.clone();
    planes
        .data_plane
        .on_peer_seen(Arc::new(move |key, addr, open| {
            control.data_plane_seen(key, addr, open);
        }));
    shared.tasks.spawn(
        planes
            .data_plane
            .clone()
            .serve(
                shared.store.clone(),
                Some(forward_server as Arc<dyn crate::data::InvokeHandler>),
            )
            .in_current_span(),
    );
}

pub(super) fn ingestor(shared: &Shared, planes: &Planes) -> Ingestor {
    Ingestor {
        store: shared.store.clone(),
        disk: disk_budget(shared),
        executor: shared.executor.clone(),
        data_plane: planes.data_plane.clone(),
        views: shared.views.clone(),
        control: planes.control.clone(),
        metrics: shared.metrics.clone(),
        providers_changed: shared.providers_changed.clone(),
        possession: planes.possession.clone(),
        shutdown: planes.shutdown.clone(),
        tasks: shared.tasks.clone(),
    }
}

/// The gateway's facade, with the request path and publishing behind it.
pub(super) fn api(
    shared: &Shared,
    planes: &Planes,
    ingestor: Arc<Ingestor>,
) -> anyhow::Result<Api> {
    let router = Arc::new(Router {
        peer_id: shared.peer_id,
        clock: shared.clock,
        views: shared.views.clone(),
        control: planes.control.clone(),
        providers_changed: shared.providers_changed.clone(),
        local: planes.local.clone(),
        data_plane: planes.data_plane.clone(),
        metrics: shared.metrics.clone(),
        hedging: shared.policy.hedging,
        hedge_budget: Default::default(),
        possession: planes.possession.clone(),
        spot_check_rate: shared.policy.spot_check_rate,
        spot_checks: Arc::new(tokio::sync::Semaphore::new(crate::request::MAX_SPOT_CHECKS)),
        tasks: shared.tasks.clone(),
        searched_at_ms: Default::default(),
    });
    let publisher = Arc::new(Publisher {
        policy: shared.policy.clone(),
        views: shared.views.clone(),
        store: shared.store.clone(),
        store_writer: planes.store_writer.clone(),
        disk: disk_budget(shared),
        control: planes.control.clone(),
        ingestor,
        metrics: shared.metrics.clone(),
        refusals: shared.refusals.clone(),
    });
    Ok(Api {
        router,
        publisher,
        views: shared.views.clone(),
        local: planes.local.clone(),
        metrics: shared.metrics.clone(),
        peer_id: shared.peer_id,
        peer_id_header: axum::http::HeaderValue::from_str(&shared.peer_id.to_string())?,
        public_key: shared.keys.public(),
        clock: shared.clock,
        private_mesh: shared.policy.is_private(),
    })
}

fn disk_budget(shared: &Shared) -> DiskBudget {
    DiskBudget::new(
        shared.store.clone(),
        shared.policy.blob_quota,
        shared.policy.min_free_disk,
    )
}
