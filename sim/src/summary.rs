//! The figures of a scenario run: what was published and where it became ready, the records of
//! the load turned into the report (success, latency, routes against the oracle, propagation),
//! what running nodes still lack, and the scenario's expectations checked against it all.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use wasmesh_protocol::{ContentHash, ModuleRef};

use crate::cluster::Cluster;
use crate::latency::LatencyMatrix;
use crate::load::RequestRecord;
use crate::report::{Check, Percentiles, Report, RouteRow, round3};
use crate::scenario::Scenario;

/// A published module and where it became ready.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) blob: ContentHash,
    pub(crate) holders: Vec<usize>,
    pub(crate) at: Instant,
    pub(crate) ready_at: BTreeMap<usize, Instant>,
}

impl Published {
    pub(crate) fn module_ref(&self) -> ModuleRef {
        ModuleRef::Version {
            name: self.name.clone(),
            version: self.version,
        }
    }
}

/// What running nodes still lack: a module unknown to a node, or not ready on a holder.
pub(crate) fn missing(cluster: &Cluster, published: &[Published]) -> Vec<String> {
    let mut missing = Vec::new();
    for module in published {
        let module_ref = module.module_ref();
        for node in cluster.running() {
            let Some(running) = cluster.node(node) else {
                continue;
            };
            if running.blob_of(&module_ref) != Some(module.blob) {
                missing.push(format!("node {node} does not know {}", module.name));
            } else if module.holders.contains(&node) && !running.is_ready(&module_ref) {
                missing.push(format!(
                    "node {node} holds {} but it is not ready",
                    module.name
                ));
            }
        }
    }
    missing
}

/// Turns the records into the report's figures.
pub(crate) fn summarize(
    scenario: &Scenario,
    name: &str,
    matrix: &LatencyMatrix,
    cluster: &Cluster,
    records: &[RequestRecord],
    published: &[Published],
    last_heal: Option<Instant>,
) -> Report {
    let executed: Vec<Option<usize>> = records
        .iter()
        .map(|r| {
            r.outcome
                .as_ref()
                .ok()
                .and_then(|peer| cluster.index_of(peer))
        })
        .collect();
    let ok = records.iter().filter(|r| r.outcome.is_ok()).count();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for record in records {
        if let Err(reason) = &record.outcome {
            *failures.entry(reason.clone()).or_default() += 1;
        }
    }
    let latencies: Vec<f64> = records
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| r.latency_ms)
        .collect();
    let hits = records
        .iter()
        .zip(&executed)
        .filter(|(r, e)| ran_where_the_oracle_would(r, **e))
        .count();
    let routes = route_rows(matrix, records, &executed);
    let propagation_ms = propagation_ms(published);
    let ready_after_heal_ms = last_heal.map(|heal| ready_after_heal_ms(published, heal));
    Report {
        scenario: name.to_owned(),
        seed: scenario.seed,
        nodes: scenario.nodes,
        places: matrix.places.clone(),
        requests: records.len(),
        ok,
        failed: records.len() - ok,
        success_rate: if records.is_empty() {
            1.0
        } else {
            ok as f64 / records.len() as f64
        },
        failures,
        latency_ms: Percentiles::of(&latencies),
        oracle_fraction: if ok == 0 {
            0.0
        } else {
            round3(hits as f64 / ok as f64)
        },
        propagation_ms,
        ready_after_heal_ms,
        routes,
        ..Report::default()
    }
}

/// Whether a request executed on a node the oracle would have chosen.
fn ran_where_the_oracle_would(record: &RequestRecord, executed: Option<usize>) -> bool {
    executed.is_some_and(|e| record.oracle.contains(&e))
}

/// One row per route taken (entry node, executing node), with its requests' figures.
fn route_rows(
    matrix: &LatencyMatrix,
    records: &[RequestRecord],
    executed: &[Option<usize>],
) -> Vec<RouteRow> {
    // (entry, executed) -> the requests that took that route.
    let mut groups: HashMap<(usize, Option<usize>), Vec<&RequestRecord>> = HashMap::new();
    for (record, executed) in records.iter().zip(executed) {
        groups
            .entry((record.entry, *executed))
            .or_default()
            .push(record);
    }
    let place = |i: usize| matrix.places.get(i).cloned().unwrap_or_default();
    let mut routes: Vec<RouteRow> = groups
        .into_iter()
        .map(|((entry, executed), samples)| {
            let latencies: Vec<f64> = samples.iter().map(|r| r.latency_ms).collect();
            let sent = samples.iter().map(|r| r.sent_ms);
            RouteRow {
                entry,
                entry_place: place(entry),
                executed,
                executed_place: executed.map(place).unwrap_or_default(),
                rtt_ms: executed.map_or(0.0, |e| round3(matrix.rtt_ms(entry, e))),
                requests: samples.len(),
                p50_ms: Percentiles::of(&latencies).p50,
                oracle_hits: samples
                    .iter()
                    .filter(|r| ran_where_the_oracle_would(r, executed))
                    .count(),
                sent_ms: (
                    round3(sent.clone().fold(f64::INFINITY, f64::min)),
                    round3(sent.fold(0.0, f64::max)),
                ),
            }
        })
        .collect();
    routes.sort_by_key(|r| (r.entry, r.executed.map_or(usize::MAX, |e| e)));
    routes
}

/// When each published module became ready on each node, ms after its publish.
fn propagation_ms(published: &[Published]) -> BTreeMap<String, BTreeMap<usize, f64>> {
    published
        .iter()
        .map(|m| {
            let times = m
                .ready_at
                .iter()
                .map(|(node, at)| {
                    (
                        *node,
                        round3(at.duration_since(m.at).as_secs_f64() * 1000.0),
                    )
                })
                .collect();
            (format!("{}@{}", m.name, m.version), times)
        })
        .collect()
}

/// How long after the last heal the modules published before it were ready everywhere.
fn ready_after_heal_ms(published: &[Published], heal: Instant) -> f64 {
    let latest = published
        .iter()
        .filter(|m| m.at < heal)
        .flat_map(|m| m.ready_at.values())
        .map(|at| at.saturating_duration_since(heal))
        .max()
        .unwrap_or_default();
    round3(latest.as_secs_f64() * 1000.0)
}

/// The scenario's expectations against the report.
pub(crate) fn checks(scenario: &Scenario, report: &Report) -> Vec<Check> {
    let expect = &scenario.expect;
    let mut checks = Vec::new();
    if let Some(wanted) = expect.success_rate {
        checks.push(Check {
            name: "success_rate".into(),
            ok: report.success_rate >= wanted,
            detail: format!("{:.4} (wanted >= {wanted})", report.success_rate),
        });
    }
    if let Some(wanted) = expect.oracle_fraction {
        checks.push(Check {
            name: "oracle_fraction".into(),
            ok: report.oracle_fraction >= wanted,
            detail: format!("{:.3} (wanted >= {wanted})", report.oracle_fraction),
        });
    }
    if expect.every_module_everywhere {
        checks.push(Check {
            name: "every_module_everywhere".into(),
            ok: report.missing.is_empty(),
            detail: if report.missing.is_empty() {
                "every running node has every module".into()
            } else {
                report.missing.join("; ")
            },
        });
    }
    if let Some(wanted) = expect.ready_after_heal_ms {
        let measured = report.ready_after_heal_ms;
        checks.push(Check {
            name: "ready_after_heal_ms".into(),
            ok: report.missing.is_empty() && measured.is_some_and(|ms| ms <= wanted as f64),
            detail: match measured {
                Some(ms) if report.missing.is_empty() => format!("{ms:.0} ms (wanted <= {wanted})"),
                Some(_) => format!("not every holder got it: {}", report.missing.join("; ")),
                None => "the scenario never heals".into(),
            },
        });
    }
    checks
}
