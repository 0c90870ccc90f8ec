//! `wasmesh-sim demo`: a mesh of real nodes in real cities (geographic latency), a module
//! published in one and replicated to some, requests sent to every node, and what happened,
//! as a table and a paragraph.

use std::fmt::Write as _;

use anyhow::Context;

use crate::report::Report;
use crate::runner::{self, Verbosity};
use crate::scenario::{Entry, Expectations, LatencySpec, LoadSpec, PublishSpec, Scenario};

/// Where the demo's nodes are, in order.
pub const DEMO_CITIES: &[&str] = &[
    "Frankfurt",
    "New York",
    "Singapore",
    "Sao Paulo",
    "Sydney",
    "Tokyo",
    "London",
    "San Francisco",
    "Mumbai",
    "Johannesburg",
];

/// The raw-ABI echo module the demo publishes.
const ECHO_WAT: &str = include_str!("../../guests/fixtures/echo.wat");

/// Requests sent to each node.
const REQUESTS_PER_NODE: u32 = 20;

/// The demo's scenario for `nodes` nodes: holders are nodes 0 and 2 of every 5 (Frankfurt and
/// Singapore for 5 nodes), every node takes the same number of requests.
pub fn scenario(nodes: usize, seed: u64, module_dir: &std::path::Path) -> Scenario {
    let holders: Vec<usize> = (0..nodes).filter(|i| i % 5 == 0 || i % 5 == 2).collect();
    Scenario {
        seed,
        nodes,
        latency: LatencySpec {
            model: Some("geo".into()),
            cities: Some(
                (0..nodes)
                    .map(|i| DEMO_CITIES[i % DEMO_CITIES.len()].to_owned())
                    .collect(),
            ),
            ..LatencySpec::default()
        },
        late: Vec::new(),
        hedging: true,
        status_interval_ms: None,
        settle_ms: 0,
        publish: vec![PublishSpec {
            module: "echo.wat".into(),
            name: "echo".into(),
            version: 1,
            holders,
            via: None,
            at_ms: None,
        }],
        load: (0..nodes)
            .map(|i| LoadSpec {
                module: "echo".into(),
                entry: Entry::Node(i),
                requests: REQUESTS_PER_NODE,
                concurrency: 2,
                input_bytes: 64,
                echo: true,
                rate: None,
            })
            .collect(),
        fault: Vec::new(),
        expect: Expectations {
            success_rate: Some(1.0),
            ..Expectations::default()
        },
        base_dir: module_dir.to_owned(),
    }
}

/// Runs the demo; returns the report and its text (table and summary).
pub async fn run(nodes: usize, seed: u64) -> anyhow::Result<(Report, String)> {
    anyhow::ensure!(
        (2..=crate::relay::MAX_NODES).contains(&nodes),
        "the demo needs 2..={} nodes",
        crate::relay::MAX_NODES
    );
    let dir = tempfile::tempdir().context("cannot create a folder for the demo module")?;
    std::fs::write(dir.path().join("echo.wat"), ECHO_WAT)
        .context("cannot write the demo module")?;
    let scenario = scenario(nodes, seed, dir.path());
    let report = runner::run(&scenario, "demo", Verbosity::Progress).await?;
    let text = describe(&report, &scenario);
    Ok((report, text))
}

/// The demo's table and paragraph.
fn describe(report: &Report, scenario: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<16} {:<20} {:>9} {:>13} {:>12} {:>9}",
        "entry", "executed in", "requests", "round trip", "latency p50", "overhead"
    );
    let mut overheads = Vec::new();
    for row in &report.routes {
        let executed = match row.executed {
            Some(_) if row.executed == Some(row.entry) => format!("{} (local)", row.executed_place),
            Some(_) => row.executed_place.clone(),
            None => "(failed)".to_owned(),
        };
        let overhead = row.p50_ms - row.rtt_ms;
        overheads.push(overhead);
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:>9} {:>10.1} ms {:>9.1} ms {:>6.2} ms",
            row.entry_place, executed, row.requests, row.rtt_ms, row.p50_ms, overhead
        );
    }
    let holders = &scenario.publish[0].holders;
    let holder_places: Vec<&str> = holders
        .iter()
        .filter_map(|&h| report.places.get(h).map(String::as_str))
        .collect();
    let spread_ms = report
        .propagation_ms
        .values()
        .flat_map(|m| m.values())
        .fold(0.0f64, |a, b| a.max(*b));
    overheads.sort_by(f64::total_cmp);
    let median_overhead = overheads.get(overheads.len() / 2).copied().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "\n{} real nodes ({}) ran with the round trips of their cities injected beneath QUIC. \
         The module `echo` was signed, published in {} and ready on every holder ({}) {:.0} ms later. \
         {} of {} requests succeeded; {:.0}% ran on the holder the oracle picks (the lowest \
         injected round trip from the entry, local counting as zero). Requests entering at a \
         holder ran there; the others were forwarded to the nearest holder the node measured. \
         The median client latency was {:.1} ms; a route's median latency exceeded its round \
         trip by {:.2} ms at the median (HTTP, forwarding over QUIC, a fresh sandbox per \
         request, and the relays that inject the delays).",
        report.nodes,
        report.places.join(", "),
        holder_places.first().copied().unwrap_or("?"),
        holder_places.join(", "),
        spread_ms,
        report.ok,
        report.requests,
        report.oracle_fraction * 100.0,
        report.latency_ms.p50,
        median_overhead
    );
    out
}
