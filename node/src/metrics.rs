//! The node's metrics (Prometheus text format at `GET /metrics`).
//!
//! One struct for the node; every rejection of outside input is counted here with its reason
//! (and logged where it happens).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of a rejection: what was refused and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Short machine-readable reason.
    pub reason: String,
}

/// Label of a request outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` or a guest error kind.
    pub outcome: String,
    /// `local` or `forwarded`.
    pub route: String,
}

/// Counters and gauges of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Manifests accepted (gossip, sync, publish).
    pub manifests_accepted: Counter,
    /// Outside input refused, by reason.
    pub rejections: Family<Reason, Counter>,
    /// Blobs fetched and verified.
    pub blobs_fetched: Counter,
    /// Blobs served to peers.
    pub blobs_served: Counter,
    /// Invocations, by outcome and route.
    pub invocations: Family<Outcome, Counter>,
    /// Modules compiled here.
    pub modules_compiled: Counter,
    /// Modules loaded from memory or the artifact cache (no compilation).
    pub modules_loaded: Counter,
    /// Modules ready to run here.
    pub modules_ready: Gauge,
    /// Connected libp2p peers.
    pub peers: Gauge,
    /// Forwards that were slow enough to get a copy sent to the next candidate.
    pub hedges: Counter,
    /// Peer statuses taken (newer than the last one from the same peer).
    pub statuses: Counter,
    /// Dials of peers this node started (bootstrap, redial, peer exchange, probes).
    pub dials: Counter,
}

impl Metrics {
    /// Counts one refusal of outside input.
    pub fn count_rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// How many refusals with `reason` were counted.
    pub fn rejections_of(&self, reason: &str) -> u64 {
        self.rejections
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// Counts one invocation.
    pub fn count_invocation(&self, outcome: &str, route: &str) {
        self.invocations
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
                route: route.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of all metrics.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("wasmesh");
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
            "Blobs served to peers",
            self.blobs_served.clone(),
        );
        registry.register(
            "invocations",
            "Invocations by outcome and route",
            self.invocations.clone(),
        );
        registry.register(
            "modules_ready",
            "Modules ready here",
            self.modules_ready.clone(),
        );
        registry.register("peers", "Connected peers", self.peers.clone());
        registry.register("statuses", "Peer statuses taken", self.statuses.clone());
        registry.register(
            "dials",
            "Dials of peers this node started",
            self.dials.clone(),
        );
        registry.register(
            "hedges",
            "Slow forwards copied to the next candidate",
            self.hedges.clone(),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
