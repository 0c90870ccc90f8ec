//! Registering the node's own metrics, by what they are about: intake (manifests, blobs,
//! modules), requests, and the mesh.

use prometheus_client::registry::{Registry, Unit};

use super::Metrics;

impl Metrics {
    /// Registers every metric of the struct (libp2p registers its own later).
    pub(super) fn register_own(&mut self) {
        let registry = self
            .registry
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut registry = std::mem::take(registry);
        self.register_intake(&mut registry);
        self.register_requests(&mut registry);
        self.register_mesh(&mut registry);
        *self
            .registry
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = registry;
    }

    /// Manifests, blobs and modules.
    fn register_intake(&self, registry: &mut Registry) {
        registry.register(
            "manifests_accepted",
            "Manifests accepted",
            self.manifests_accepted.clone(),
        );
        registry.register(
            "rejections",
            "Outside input refused, by reason",
            self.rejections.clone(),
        );
        registry.register(
            "blobs_fetched",
            "Blobs fetched and verified",
            self.blobs_fetched.clone(),
        );
        registry.register(
            "blobs_served",
            "Blob ranges (of at most 1 MiB) served to peers",
            self.blobs_served.clone(),
        );
        registry.register(
            "modules_compiled",
            "Modules compiled here",
            self.modules_compiled.clone(),
        );
        registry.register(
            "modules_loaded",
            "Modules loaded without compiling (memory or artifact cache)",
            self.modules_loaded.clone(),
        );
        registry.register(
            "modules",
            "Modules by state here (ready, pending, not_runnable, remote)",
            self.modules.clone(),
        );
        registry.register_with_unit(
            "compile_duration",
            "Compile time of modules compiled here",
            Unit::Seconds,
            self.compile_duration.clone(),
        );
        registry.register_with_unit(
            "blob_fetch_duration",
            "Time to fetch and verify a blob",
            Unit::Seconds,
            self.blob_fetch_duration.clone(),
        );
        registry.register_with_unit(
            "blob_fetch_size",
            "Sizes of the blobs fetched",
            Unit::Bytes,
            self.blob_fetch_size.clone(),
        );
    }

    /// Requests: how they ended, where they waited and ran, forwards.
    fn register_requests(&self, registry: &mut Registry) {
        registry.register(
            "invocations",
            "Invocations by outcome and route",
            self.invocations.clone(),
        );
        registry.register(
            "slots_busy",
            "Execution slots in use",
            self.slots_busy.clone(),
        );
        registry.register(
            "queue_length",
            "Requests waiting for an execution slot",
            self.queue_length.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Requests through the gateway, end to end, by route and outcome",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "Time requests waited for an execution slot",
            Unit::Seconds,
            self.queue_wait.clone(),
        );
        registry.register_with_unit(
            "execution_duration",
            "Guest execution time",
            Unit::Seconds,
            self.execution_duration.clone(),
        );
        registry.register_with_unit(
            "forward_round_trip",
            "Forwards answered by a peer, from sending the request to its reply",
            Unit::Seconds,
            self.forward_round_trip.clone(),
        );
        registry.register(
            "forward_failures",
            "Forwards that got no reply (the peer was marked down, the next one tried)",
            self.forward_failures.clone(),
        );
        registry.register(
            "hedges",
            "Slow forwards copied to the next candidate",
            self.hedges.clone(),
        );
        registry.register(
            "spot_checks",
            "Forwarded answers run again elsewhere to check them",
            self.spot_checks.clone(),
        );
    }

    /// Peers, statuses, holders, dials and the traffic of the node's own protocols.
    fn register_mesh(&self, registry: &mut Registry) {
        registry.register(
            "peers",
            "Peers by state (known, connected, neighbour, down, leaving)",
            self.peers.clone(),
        );
        registry.register("statuses", "Peer statuses taken", self.statuses.clone());
        registry.register(
            "holders_found",
            "Holders of a blob that directory nodes named and this node did not know of",
            self.holders_found.clone(),
        );
        registry.register(
            "dials",
            "Dials of peers this node started",
            self.dials.clone(),
        );
        registry.register(
            "introductions",
            "Introductions to peers behind NATs asked of their rendezvous, by outcome",
            self.introductions.clone(),
        );
        registry.register(
            "punches",
            "Punch requests answered behind a NAT (dials toward a peer about to dial this node)",
            self.punches.clone(),
        );
        registry.register(
            "data_dials",
            "New data-plane connections by the path they took (direct, punched, relayed) or failed",
            self.data_dials.clone(),
        );
        registry.register(
            "relay_sessions",
            "Relay sessions open on this node for nodes behind NATs",
            self.relay_sessions.clone(),
        );
        registry.register(
            "relayed_bytes",
            "Bytes relayed between nodes behind NATs",
            self.relayed_bytes.clone(),
        );
        registry.register(
            "control_relay",
            "Reservations and circuits of the libp2p relay, by what happened",
            self.control_relay.clone(),
        );
        registry.register(
            "hole_punches",
            "Relayed control connections upgraded to direct ones (DCUtR), by outcome",
            self.hole_punches.clone(),
        );
        registry.register(
            "traffic_bytes",
            "Bytes of the node's own protocols, by kind and direction",
            self.traffic_bytes.clone(),
        );
        registry.register(
            "traffic_messages",
            "Messages of the node's own protocols, by kind and direction",
            self.traffic_messages.clone(),
        );
    }
}
