//! The node's metrics (Prometheus text format at `GET /metrics`).
//!
//! One struct for the node; every rejection of outside input is counted here with its reason
//! (and logged where it happens). Names follow Prometheus' conventions: every name starts with
//! `wasmesh_`, counters end in `_total`, durations are histograms in `_seconds`, sizes in
//! `_bytes`; every label takes a small fixed set of values. The state gauges (slots, queue,
//! peers and modules by state) are set from the node's view when the page is read
//! (by the gateway). The node's traffic is counted by kind: libp2p's own metrics
//! (the transport's bytes, gossipsub's per topic) are registered in the same registry, and
//! [`Metrics::traffic`] sums them with the node's own counts (sync, blobs, invokes) per kind.

mod register;
mod traffic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use self::traffic::{Traffic, TrafficCount};
use crate::rejection::Rejection;

/// Label of a rejection: what was refused and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Short machine-readable reason ([`Rejection::as_str`]).
    pub reason: &'static str,
}

/// Label of a request outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` or a guest error kind.
    pub outcome: String,
    /// `local` or `forwarded`.
    pub route: String,
}

/// Label of a state gauge (peers or modules by state).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// One of a fixed set of states.
    pub state: &'static str,
}

/// Label of a request's latency: where it ran and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    /// `local`, `forwarded` or `none` (it ran nowhere).
    pub route: &'static str,
    /// `ok` or a failure kind.
    pub outcome: &'static str,
}

/// Label of an attempt that ends one of a fixed set of ways.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Ended {
    /// How it ended.
    pub outcome: &'static str,
}

/// A histogram family whose members share one set of buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets for durations of requests and their parts: 50 us to about 26 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Buckets for compile and fetch times: 1 ms to about 16 min, doubling.
fn slow_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Buckets for sizes: 1 KiB to 4 GiB, by fours.
fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 12))
}

/// The routes a request through the gateway can take, as the live page shows them.
pub const ROUTES: [&str; 3] = ["local", "forwarded", "none"];

/// Requests through the gateway since the node started, per route (see [`ROUTES`]): how many,
/// how many failed, and their summed latency.
#[derive(Debug, Default)]
pub struct RouteTotals {
    requests: [AtomicU64; 3],
    failed: [AtomicU64; 3],
    latency_us: [AtomicU64; 3],
}

/// One route's totals (see [`RouteTotals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteTotal {
    /// Requests.
    pub requests: u64,
    /// Requests that did not succeed.
    pub failed: u64,
    /// Their latencies, summed, in microseconds.
    pub latency_us: u64,
}

impl RouteTotals {
    fn observe(&self, route: &str, ok: bool, took: Duration) {
        let Some(i) = ROUTES.iter().position(|r| *r == route) else {
            return;
        };
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_us[i].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Each route with its totals so far.
    pub fn snapshot(&self) -> [(&'static str, RouteTotal); 3] {
        std::array::from_fn(|i| {
            (
                ROUTES[i],
                RouteTotal {
                    requests: self.requests[i].load(Ordering::Relaxed),
                    failed: self.failed[i].load(Ordering::Relaxed),
                    latency_us: self.latency_us[i].load(Ordering::Relaxed),
                },
            )
        })
    }
}

/// What moved: one of the node's protocols.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum TrafficKind {
    /// Statuses to and from connected peers, and their answers (libp2p request-response).
    Status,
    /// Manifest sync and peer exchange (libp2p request-response).
    Sync,
    /// Holder announcements and lookups to directory nodes (libp2p request-response).
    Holders,
    /// Blobs (QUIC data plane).
    Blob,
    /// Forwarded requests (their inputs) and their answers (QUIC data plane).
    Invoke,
}

/// Which way it moved.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum Direction {
    /// From this node.
    Sent,
    /// To this node.
    Received,
}

/// Label of the node's own traffic counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Flow {
    /// The protocol.
    pub kind: TrafficKind,
    /// Which way.
    pub direction: Direction,
}

/// Counters and gauges of one node.
#[derive(Debug)]
pub struct Metrics {
    /// Manifests accepted (gossip, sync, publish).
    pub manifests_accepted: Counter,
    /// Outside input refused, by reason.
    pub rejections: Family<Reason, Counter>,
    /// Blobs fetched and verified.
    pub blobs_fetched: Counter,
    /// Blob ranges (of at most 1 MiB) served to peers.
    pub blobs_served: Counter,
    /// Invocations, by outcome and route.
    pub invocations: Family<Outcome, Counter>,
    /// Modules compiled here.
    pub modules_compiled: Counter,
    /// Modules loaded from memory or the artifact cache (no compilation).
    pub modules_loaded: Counter,
    /// Modules by state here: ready, pending (fetching or compiling), not_runnable, remote.
    pub modules: Family<State, Gauge>,
    /// Peers by state: known, connected, neighbour, down (after a failed forward), leaving.
    pub peers: Family<State, Gauge>,
    /// Execution slots in use.
    pub slots_busy: Gauge,
    /// Requests waiting for a slot.
    pub queue_length: Gauge,
    /// Requests through the gateway, end to end, by route and outcome.
    pub request_duration: HistogramFamily<RouteOutcome>,
    /// Time requests waited for a slot (here, whoever sent them).
    pub queue_wait: Histogram,
    /// Guest execution time (here, whoever sent the request).
    pub execution_duration: Histogram,
    /// Compile time of modules compiled here.
    pub compile_duration: Histogram,
    /// Time to fetch and verify a blob.
    pub blob_fetch_duration: Histogram,
    /// Sizes of the blobs fetched.
    pub blob_fetch_size: Histogram,
    /// Forwards answered by a peer: from sending the request to its reply.
    pub forward_round_trip: Histogram,
    /// Forwards that got no reply (the peer was then marked down and the next one tried).
    pub forward_failures: Counter,
    /// Requests through the gateway per route, for the live page (not exported: the
    /// histogram holds the same).
    pub routes: RouteTotals,
    /// Forwards that were slow enough to get a copy sent to the next candidate.
    pub hedges: Counter,
    /// Forwarded answers run again elsewhere to check them (`request::verify`).
    pub spot_checks: Counter,
    /// Peer statuses taken (newer than the last one from the same peer).
    pub statuses: Counter,
    /// Holders of a blob that directory nodes named and this node did not know of.
    pub holders_found: Counter,
    /// Dials of peers this node started (bootstrap, redial, peer exchange, probes).
    pub dials: Counter,
    /// Introductions to peers behind NATs this node asked their rendezvous for, by outcome
    /// (`introduced`, `not_introduced`).
    pub introductions: Family<Ended, Counter>,
    /// Punch requests this node answered behind its NAT (dials toward a peer about to dial it).
    pub punches: Counter,
    /// New data-plane connections this node opened, by the path they took (`direct`,
    /// `punched`, `relayed`) or `failed`.
    pub data_dials: Family<Ended, Counter>,
    /// Relay sessions this node keeps open now, as a rendezvous.
    pub relay_sessions: Gauge,
    /// Bytes this node relayed between nodes behind NATs.
    pub relayed_bytes: Counter,
    /// The libp2p relay's work, by what happened (`reservation_accepted`, `circuit_accepted`,
    /// `circuit_closed`, `reserved` on a relay by this node, ...).
    pub control_relay: Family<Ended, Counter>,
    /// Relayed control connections this node upgraded to direct ones, by outcome
    /// (`direct`, `failed`).
    pub hole_punches: Family<Ended, Counter>,
    /// Bytes the node's own protocols moved (message bodies), by kind and direction.
    pub traffic_bytes: Family<Flow, Counter>,
    /// Messages the node's own protocols moved, by kind and direction.
    pub traffic_messages: Family<Flow, Counter>,
    /// Everything above, plus what libp2p registers (the swarm is built with it).
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            manifests_accepted: Counter::default(),
            rejections: Family::default(),
            blobs_fetched: Counter::default(),
            blobs_served: Counter::default(),
            invocations: Family::default(),
            modules_compiled: Counter::default(),
            modules_loaded: Counter::default(),
            modules: Family::default(),
            peers: Family::default(),
            slots_busy: Gauge::default(),
            queue_length: Gauge::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            queue_wait: latency_histogram(),
            execution_duration: latency_histogram(),
            compile_duration: slow_histogram(),
            blob_fetch_duration: slow_histogram(),
            blob_fetch_size: size_histogram(),
            forward_round_trip: latency_histogram(),
            forward_failures: Counter::default(),
            routes: RouteTotals::default(),
            hedges: Counter::default(),
            spot_checks: Counter::default(),
            statuses: Counter::default(),
            holders_found: Counter::default(),
            dials: Counter::default(),
            introductions: Family::default(),
            punches: Counter::default(),
            data_dials: Family::default(),
            relay_sessions: Gauge::default(),
            relayed_bytes: Counter::default(),
            control_relay: Family::default(),
            hole_punches: Family::default(),
            traffic_bytes: Family::default(),
            traffic_messages: Family::default(),
            registry: Mutex::new(Registry::with_prefix("wasmesh")),
        };
        metrics.register_own();
        metrics
    }
}

impl Metrics {
    /// Counts one refusal of outside input.
    pub fn count_rejection(&self, reason: Rejection) {
        self.rejections
            .get_or_create(&Reason {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one introduction asked for, and whether it was made.
    pub fn count_introduction(&self, introduced: bool) {
        let outcome = if introduced {
            "introduced"
        } else {
            "not_introduced"
        };
        self.introductions.get_or_create(&Ended { outcome }).inc();
    }

    /// Counts a new data-plane connection by the path it took.
    pub fn count_data_dial(&self, path: &'static str) {
        self.data_dials
            .get_or_create(&Ended { outcome: path })
            .inc();
    }

    /// How many refusals with `reason` were counted.
    pub fn rejections_of(&self, reason: Rejection) -> u64 {
        self.rejections
            .get_or_create(&Reason {
                reason: reason.as_str(),
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

    /// Observes one request through the gateway.
    pub fn observe_request(&self, route: &'static str, outcome: &'static str, took: Duration) {
        self.request_duration
            .get_or_create(&RouteOutcome { route, outcome })
            .observe(took.as_secs_f64());
        self.routes.observe(route, outcome == "ok", took);
    }

    /// Sets a state gauge of `family` to `count`.
    pub fn set_state(family: &Family<State, Gauge>, state: &'static str, count: usize) {
        family.get_or_create(&State { state }).set(count as i64);
    }

    /// Counts one message of the node's own protocols.
    pub fn count_traffic(&self, kind: TrafficKind, direction: Direction, bytes: usize) {
        let flow = Flow { kind, direction };
        self.traffic_bytes.get_or_create(&flow).inc_by(bytes as u64);
        self.traffic_messages.get_or_create(&flow).inc();
    }

    /// The registry, for libp2p to register its metrics in (see `control::build_swarm`).
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        crate::lock::lock(&self.registry)
    }

    /// The Prometheus text exposition of all metrics.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry());
        text
    }

    /// The exposition in Prometheus' classic text format (0.0.4), for scrapers and tools that
    /// do not take OpenMetrics (`curl`, `promtool check metrics`): the same samples, with the
    /// `HELP` and `TYPE` lines of counters naming the `_total` samples, and without the `UNIT`
    /// and `EOF` lines.
    pub fn encode_prometheus_text(&self) -> String {
        let open_metrics = self.encode();
        let counters: std::collections::HashSet<&str> = open_metrics
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut text = String::with_capacity(open_metrics.len());
        for line in open_metrics.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let described = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
            match described {
                Some((prefix, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let suffix = if counters.contains(name) {
                        "_total"
                    } else {
                        ""
                    };
                    text.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
                }
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}
