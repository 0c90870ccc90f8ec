//! The report of a scenario run: JSON for machines (`--json`), a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Latency percentiles in milliseconds (nearest rank).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values` (all 0 when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            round3(sorted[index])
        };
        Self {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// Rounds to 3 decimals (microseconds, for milliseconds), so reports stay readable.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Requests from one entry node that ran on one node.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    /// Entry node.
    pub entry: usize,
    /// Its place.
    pub entry_place: String,
    /// Executing node (`None`: the request failed).
    pub executed: Option<usize>,
    /// Its place.
    pub executed_place: String,
    /// Round trip between them (injected), milliseconds.
    pub rtt_ms: f64,
    /// Requests.
    pub requests: usize,
    /// Median latency seen by the client.
    pub p50_ms: f64,
    /// Of them, how many ran where the oracle says.
    pub oracle_hits: usize,
    /// When the first and the last of them were sent, ms since the load began.
    pub sent_ms: (f64, f64),
}

/// Something that happened on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Milliseconds since the load began (negative: during setup).
    pub at_ms: f64,
    /// What.
    pub what: String,
}

/// One expectation and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Which.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Measured against wanted.
    pub detail: String,
}

/// Relay packet counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Packets {
    /// Delivered.
    pub delivered: u64,
    /// Dropped by partitions and killed nodes.
    pub dropped_by_fault: u64,
    /// From unknown senders.
    pub unroutable: u64,
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name (its file stem).
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Real nodes.
    pub nodes: usize,
    /// Place of each node.
    pub places: Vec<String>,
    /// Requests sent.
    pub requests: usize,
    /// Answered with the module's output.
    pub ok: usize,
    /// Failed.
    pub failed: usize,
    /// `ok / requests` (1 when there were none).
    pub success_rate: f64,
    /// Failure reasons and their counts.
    pub failures: BTreeMap<String, usize>,
    /// Client-side latency of successful requests.
    pub latency_ms: Percentiles,
    /// Share of successful requests that ran on the holder with the lowest injected round trip
    /// from their entry (local counting as zero).
    pub oracle_fraction: f64,
    /// Per module, per holder: milliseconds from publish until ready there.
    pub propagation_ms: BTreeMap<String, BTreeMap<usize, f64>>,
    /// Milliseconds from the last heal until every holder had every module published before it
    /// (when the scenario heals).
    pub ready_after_heal_ms: Option<f64>,
    /// Modules a running node lacks at the end (`node N: module`), or holders where it is not
    /// ready.
    pub missing: Vec<String>,
    /// Where requests went.
    pub routes: Vec<RouteRow>,
    /// The timeline.
    pub events: Vec<Event>,
    /// Relay counts.
    pub packets: Packets,
    /// What each node sent and received while the load ran.
    pub traffic: crate::traffic::TrafficReport,
    /// Whether the nodes hedged slow forwards.
    pub hedging: bool,
    /// Forwards hedged (a copy sent to the next candidate), summed over the nodes.
    pub hedges: u64,
    /// Expectations of the scenario.
    pub checks: Vec<Check>,
    /// Whether every check held.
    pub passed: bool,
    /// Wall-clock duration of the run.
    pub wall_ms: u64,
}

impl Report {
    /// A readable summary: totals, routes, propagation and checks.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} (seed {}, {} nodes): {} requests, {} ok, {} failed; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; oracle fraction {:.3}",
            self.scenario,
            self.seed,
            self.nodes,
            self.requests,
            self.ok,
            self.failed,
            self.latency_ms.p50,
            self.latency_ms.p95,
            self.latency_ms.p99,
            self.oracle_fraction
        );
        let _ = writeln!(
            out,
            "hedging {}: {} forwards hedged",
            if self.hedging { "on" } else { "off" },
            self.hedges
        );
        out.push_str(&self.traffic.table());
        if !self.routes.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<22} {:<22} {:>8} {:>9} {:>9} {:>7}",
                "entry", "executed on", "requests", "rtt ms", "p50 ms", "oracle"
            );
            for row in &self.routes {
                let executed = match row.executed {
                    Some(i) => format!("{i} {}", row.executed_place),
                    None => "(failed)".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<22} {:<22} {:>8} {:>9.1} {:>9.1} {:>7}",
                    format!("{} {}", row.entry, row.entry_place),
                    executed,
                    row.requests,
                    row.rtt_ms,
                    row.p50_ms,
                    format!("{}/{}", row.oracle_hits, row.requests)
                );
            }
        }
        for (module, holders) in &self.propagation_ms {
            let list: Vec<String> = holders
                .iter()
                .map(|(node, ms)| format!("{node}: {ms:.0} ms"))
                .collect();
            let _ = writeln!(out, "\n{module} ready after publish on {}", list.join(", "));
        }
        if let Some(ms) = self.ready_after_heal_ms {
            let _ = writeln!(out, "every holder ready {ms:.0} ms after the heal");
        }
        for reason in self.failures.iter() {
            let _ = writeln!(out, "failure x{}: {}", reason.1, reason.0);
        }
        for missing in &self.missing {
            let _ = writeln!(out, "missing: {missing}");
        }
        if !self.checks.is_empty() {
            let _ = writeln!(out);
        }
        for check in &self.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "{mark} {}: {}", check.name, check.detail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
