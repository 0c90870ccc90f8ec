//! The load generator: HTTP requests to the nodes' gateways from plain threads (off the nodes'
//! runtime), each one recorded with where it entered, where it ran, how long it took, and
//! where the oracle would have run it at that moment.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

use crate::cluster::MeshView;
use crate::scenario::{Entry, LoadSpec};

/// How long one request may take before the client gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One request and what became of it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Which `[[load]]` it belongs to.
    pub load: usize,
    /// The node it entered at.
    pub entry: usize,
    /// When it was sent, in milliseconds since the load began.
    pub sent_ms: f64,
    /// How long until the answer.
    pub latency_ms: f64,
    /// The peer id that executed it, or why it failed.
    pub outcome: Result<String, String>,
    /// The holders with the lowest injected round trip from the entry when it was sent.
    pub oracle: Vec<usize>,
}

/// What a load needs besides its spec.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// The mesh.
    pub view: MeshView,
    /// Injected round trips, `rtt_ms[i][j]`.
    pub rtt_ms: Vec<Vec<f64>>,
    /// Nodes that replicate the module.
    pub holders: Vec<usize>,
    /// Per node: whether the module is ready there (kept current by the runner).
    pub ready: Arc<Vec<AtomicBool>>,
    /// Seeds entries and inputs.
    pub seed: u64,
    /// Time zero of the records.
    pub epoch: Instant,
}

/// Sends the requests of `spec` (number `index` of the scenario) and records each.
pub fn run_load(index: usize, spec: &LoadSpec, context: &LoadContext) -> Vec<RequestRecord> {
    let next = AtomicU32::new(0);
    let records = Mutex::new(Vec::with_capacity(spec.requests as usize));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..spec.concurrency.min(spec.requests.max(1)) {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(CLIENT_TIMEOUT))
                    .build()
                    .into();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= spec.requests {
                        break;
                    }
                    if let Some(rate) = spec.rate.filter(|r| *r > 0.0) {
                        let due = started + Duration::from_secs_f64(f64::from(k) / rate);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let record = one_request(&agent, index, k, spec, context);
                    records
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(record);
                }
            });
        }
    });
    let mut records = records.into_inner().unwrap_or_else(|e| e.into_inner());
    records.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    records
}

fn one_request(
    agent: &ureq::Agent,
    index: usize,
    k: u32,
    spec: &LoadSpec,
    context: &LoadContext,
) -> RequestRecord {
    let mut rng = Pcg64::seed_from_u64(context.seed ^ (u64::from(k) << 20) ^ index as u64);
    let links = &context.view.links;
    let up: Vec<usize> = match &spec.entry {
        Entry::Node(i) => vec![*i],
        Entry::Nodes(list) => list.iter().copied().filter(|&i| links.is_up(i)).collect(),
        Entry::Random(_) => (0..context.view.urls.len())
            .filter(|&i| links.is_up(i))
            .collect(),
    };
    let entry = if up.is_empty() {
        0
    } else {
        up[rng.random_range(0..up.len())]
    };
    let input: Vec<u8> = (0..spec.input_bytes).map(|_| rng.random()).collect();
    let oracle = oracle(entry, context);
    let url = format!("{}/v1/invoke/{}", context.view.urls[entry], spec.module);
    let sent = Instant::now();
    let answer = agent.post(&url).send(&input[..]);
    let latency = sent.elapsed();
    let outcome = match answer {
        Err(error) => Err(format!("transport: {error}")),
        Ok(response) => {
            let status = response.status().as_u16();
            let executed_by = response
                .headers()
                .get("x-wasmesh-executed-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .unwrap_or_default();
            match (status, executed_by) {
                (200, Some(peer)) if !spec.echo || body == input => Ok(peer),
                (200, Some(_)) => Err("wrong output".to_owned()),
                (200, None) => Err("no x-wasmesh-executed-by header".to_owned()),
                (status, _) => Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(80)]).trim()
                )),
            }
        }
    };
    RequestRecord {
        load: index,
        entry,
        sent_ms: sent.duration_since(context.epoch).as_secs_f64() * 1000.0,
        latency_ms: latency.as_secs_f64() * 1000.0,
        outcome,
        oracle,
    }
}

/// The up holders with the module ready and linked to `entry`, with the lowest round trip from it (the entry itself, if
/// it holds the module, at 0).
fn oracle(entry: usize, context: &LoadContext) -> Vec<usize> {
    let links = &context.view.links;
    let reachable: Vec<(usize, f64)> = context
        .holders
        .iter()
        .filter(|&&h| {
            links.is_up(h)
                && links.connected(entry, h)
                && context
                    .ready
                    .get(h)
                    .is_some_and(|r| r.load(Ordering::Relaxed))
        })
        .map(|&h| {
            (
                h,
                if h == entry {
                    0.0
                } else {
                    context.rtt_ms[entry][h]
                },
            )
        })
        .collect();
    let best = reachable
        .iter()
        .map(|(_, rtt)| *rtt)
        .fold(f64::INFINITY, f64::min);
    reachable
        .into_iter()
        .filter(|(_, rtt)| *rtt <= best + 0.001)
        .map(|(h, _)| h)
        .collect()
}
