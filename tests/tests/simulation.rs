//! The simulation harness and the shipped scenarios, on real nodes (at most 8) behind latency
//! relays: round trips the nodes measure are the injected ones, requests run on the nearest
//! holder, crashes lose (almost) nothing, a partition heals, a late joiner catches up, a slow
//! holder is hedged.
//!
//! One scenario at a time: each starts its own mesh, and two at once on 2 cores would distort
//! each other's latencies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmesh_node::config::Replicate;
use wasmesh_sim::cluster::{Cluster, NodeSetup, wait_for};
use wasmesh_sim::report::Report;
use wasmesh_sim::runner::{self, Verbosity};
use wasmesh_sim::scenario::Scenario;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a busy 2-core machine may add to a ping: the links differ by at least 12 ms, so a
/// measurement within this of its link's round trip cannot belong to another link.
const SCHEDULING_SLACK_US: u64 = 8_000;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sim/scenarios")
        .join(format!("{name}.toml"))
}

async fn run_shipped(name: &str) -> Report {
    run_shipped_with(name, |_| {}).await
}

async fn run_shipped_with(name: &str, adjust: impl FnOnce(&mut Scenario)) -> Report {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = Scenario::load(&scenario_path(name)).unwrap();
    adjust(&mut scenario);
    let report = runner::run(&scenario, name, Verbosity::Quiet)
        .await
        .unwrap();
    eprintln!("{}", report.table());
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_measure_the_injected_round_trips() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let one_way = vec![
        vec![0.0, 10.0, 25.0],
        vec![10.0, 0.0, 4.0],
        vec![25.0, 4.0, 0.0],
    ];
    let setups = vec![
        NodeSetup {
            replicate: Replicate::None,
            ..NodeSetup::default()
        };
        3
    ];
    let mut cluster = Cluster::new(&one_way, &setups, &[]).unwrap();
    for i in 0..3 {
        cluster.start(i).await.unwrap();
    }
    wait_for(
        "the three nodes are connected and measured",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || cluster.is_meshed(),
    )
    .await
    .unwrap();
    // Each measurement is the injected round trip plus what scheduling adds: on a busy machine
    // a ping can come back late now and then, so the check waits for a quiet moment.
    let measured_within_slack = || {
        let mut all = true;
        for (i, row) in one_way.iter().enumerate() {
            let views = cluster.node(i).unwrap().peer_views();
            for view in views.iter().filter(|v| v.connected) {
                let j = cluster.index_of(&view.peer_id.to_string()).unwrap();
                let injected_us = ((row[j] + one_way[j][i]) * 1000.0) as u64;
                let measured_us = view.rtt_us.unwrap();
                eprintln!("node {i} -> {j}: injected {injected_us} us, measured {measured_us} us");
                // Below the injected delay would mean the relay does not delay.
                assert!(
                    measured_us >= injected_us,
                    "node {i} measures {measured_us} us to node {j}; injected {injected_us} us"
                );
                all &= measured_us <= injected_us + SCHEDULING_SLACK_US;
            }
        }
        all
    };
    wait_for(
        "every measured round trip within the slack of its injected one",
        Duration::from_secs(60),
        Duration::from_millis(500),
        measured_within_slack,
    )
    .await
    .unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_5_cities_runs_every_request_on_the_nearest_holder() {
    let report = run_shipped("routing-5-cities").await;
    assert_eq!(report.ok, report.requests, "{:?}", report.failures);
    assert!(report.oracle_fraction >= 0.95, "{}", report.oracle_fraction);
    // New York, Sao Paulo and Tokyo forward; Frankfurt and Singapore run locally.
    assert!(report.routes.iter().any(|r| r.executed != Some(r.entry)));
    assert!(report.passed, "{:?}", report.checks);
    // The traffic of the load: statuses from every node, forwarded requests, and the transport
    // carrying at least the gossip; the relays saw datagrams.
    let kind = |name: &str| {
        report
            .traffic
            .rows
            .iter()
            .find(|r| r.kind == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(report.traffic.nodes, 5);
    assert!(kind("status").received_messages_per_s > 0.0);
    assert!(kind("invoke").sent_messages_per_s > 0.0);
    assert!(kind("libp2p transport").received_bytes_per_s >= kind("status").received_bytes_per_s);
    assert!(report.traffic.relay_packets_per_node_s > 0.0);
}

/// The traffic scenarios (run by hand; larger than the tests' meshes) parse, and their nodes
/// gossip statuses at the pace of `wasmesh node run`.
#[test]
fn the_traffic_scenarios_parse_and_use_the_real_status_pace() {
    for nodes in [10, 20, 30, 50, 80] {
        let scenario = Scenario::load(&scenario_path(&format!("traffic-{nodes}"))).unwrap();
        assert_eq!(scenario.nodes, nodes);
        assert_eq!(
            scenario.status_interval_ms,
            Some(wasmesh_node::config::STATUS_INTERVAL.as_millis() as u64)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_loses_at_most_one_percent_when_a_third_of_the_holders_crash_and_one_returns() {
    let report = run_shipped("churn").await;
    assert!(report.success_rate >= 0.99, "{:?}", report.failures);
    let at = |what: &str| {
        report
            .events
            .iter()
            .find(|e| e.what.contains(what))
            .map(|e| e.at_ms)
            .unwrap()
    };
    let (killed, restarted) = (at("kill 2"), at("restart 2"));
    // After the crash, requests ran on the surviving holders...
    assert!(
        report
            .routes
            .iter()
            .any(|r| r.executed.is_some_and(|e| e >= 4) && r.sent_ms.1 > killed)
    );
    // ...and the restarted holder, back from its own store, served again.
    assert!(
        report
            .routes
            .iter()
            .any(|r| r.executed == Some(2) && r.sent_ms.1 > restarted),
        "{:?}",
        report.routes
    );
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert!(report.passed, "{:?}", report.checks);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_published_during_a_partition_reaches_the_other_side_after_the_heal() {
    let report = run_shipped("partition-heal").await;
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    let after_heal = report.ready_after_heal_ms.unwrap();
    assert!(after_heal > 0.0, "the far holder had it before the heal");
    assert!(report.propagation_ms["reverse@1"].contains_key(&4));
    assert!(report.passed, "{:?}", report.checks);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_joiner_gets_every_module() {
    let report = run_shipped("late-joiner").await;
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert!(report.propagation_ms["echo@1"].contains_key(&4));
    assert!(report.passed, "{:?}", report.checks);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_holder_is_hedged_and_every_request_succeeds_either_way() {
    let hedged = run_shipped("slow-holder").await;
    let unhedged = run_shipped_with("slow-holder", |s| s.hedging = false).await;
    eprintln!(
        "slow holder: p99 {:.1} ms with hedging ({} hedges), {:.1} ms without",
        hedged.latency_ms.p99, hedged.hedges, unhedged.latency_ms.p99
    );
    for report in [&hedged, &unhedged] {
        assert_eq!(report.ok, report.requests, "{:?}", report.failures);
        assert!(report.passed, "{:?}", report.checks);
    }
    assert!(hedged.hedges > 0, "no forward was hedged");
    assert!(
        hedged.hedges * 10 <= hedged.requests as u64 + 100,
        "{} hedges for {} requests: over the budget",
        hedged.hedges,
        hedged.requests
    );
    assert_eq!(unhedged.hedges, 0);
}
