//! What the gateway serves from, and all it reads: the request path, publishing, the node's
//! view, its load and metrics, and who it is.

use std::sync::Arc;

use axum::http::HeaderValue;
use libp2p::PeerId;
use wasmesh_protocol::PublicKey;

use crate::clock::NodeClock;
use crate::core::peers::PeerInfo;
use crate::core::registry::ModuleState;
use crate::local_run::LocalRunner;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::request::Router;
use crate::view::Views;

/// The gateway's view of the node (see the module docs).
pub(crate) struct Api {
    pub(crate) router: Arc<Router>,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) views: Arc<Views>,
    pub(crate) local: LocalRunner,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) peer_id: PeerId,
    /// The peer id as the `x-wasmesh-executed-by` header (encoded once).
    pub(crate) peer_id_header: HeaderValue,
    pub(crate) public_key: PublicKey,
    pub(crate) clock: NodeClock,
    pub(crate) private_mesh: bool,
}

impl Api {
    /// Sets the state gauges (slots, queue, peers and modules by state) from the executor and
    /// the node's view, before the metrics are read.
    pub(crate) fn refresh_gauges(&self) {
        let metrics = &self.metrics;
        let (running, queued) = self.local.executor_load();
        metrics.slots_busy.set(running as i64);
        metrics.queue_length.set(queued as i64);
        let view = self.views.load();
        let now_ms = self.clock.now_ms();
        let peers = || view.peers.values();
        let count_peers = |state, matches: &dyn Fn(&PeerInfo) -> bool| {
            Metrics::set_state(
                &metrics.peers,
                state,
                peers().filter(|p| matches(p)).count(),
            );
        };
        count_peers("known", &|_| true);
        count_peers("connected", &|p| p.connected);
        count_peers("neighbour", &|p| p.connected && p.neighbour);
        count_peers("leaving", &|p| p.leaving);
        count_peers("down", &|p| {
            p.feedback
                .down_until_ms()
                .is_some_and(|until| until > now_ms)
        });
        let modules = || view.registry.entries();
        let count_modules = |state, matches: &dyn Fn(&ModuleState) -> bool| {
            let count = modules().filter(|e| matches(&e.state)).count();
            Metrics::set_state(&metrics.modules, state, count);
        };
        count_modules("ready", &|s| matches!(s, ModuleState::Ready(_)));
        count_modules("pending", &|s| matches!(s, ModuleState::Pending));
        count_modules("not_runnable", &|s| {
            matches!(s, ModuleState::NotRunnable(_))
        });
        count_modules("remote", &|s| matches!(s, ModuleState::Remote));
    }
}
