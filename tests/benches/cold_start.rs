//! Cold start across the demo's five cities: a module published on the Frankfurt node, timed
//! until its first request has run on the node farthest from it, and broken into parts:
//!
//! - gossip: from the publish until that node holds the manifest;
//! - fetch: its blob fetch (the node's histogram), in verified ranges from the nodes that hold it;
//! - compile: its compile (the node's histogram);
//! - the rest of ready: learning that a peer holds the blob (its status names a new ready list,
//!   which the node then asks it for), the check of the stored blob before compiling, and the
//!   hand-overs;
//! - first request: from ready until the first request through its gateway answers, run there
//!   (a fresh instance of the new module).
//!
//! Real nodes in this process, each behind the simulator's UDP relay with the cities' delays.
//! The module is the reverse fixture with a custom section of `SIZE` code-shaped bytes, so that
//! it crosses the wire compressed, as a real one would.
//!
//! Run: `cargo bench -p wasmesh-tests --bench cold_start`. Prints a Markdown table of medians.

use std::time::{Duration, Instant};

use wasmesh_protocol::{Keypair, Limits, ModuleRef};
use wasmesh_sim::cluster::{Cluster, NodeSetup, wait_for};
use wasmesh_sim::latency::{LatencyMatrix, LatencyModel};
use wasmesh_testkit::process::histogram_sum;
use wasmesh_tests::{Gateway, code_like_bytes, fixture};

const CITIES: [&str; 5] = ["Frankfurt", "New York", "Singapore", "Sao Paulo", "Tokyo"];
/// The module's size.
const SIZE: usize = 4 << 20;
/// Publishes measured.
const RUNS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_millis(1);

/// The reverse fixture with a custom section of about `SIZE` code-shaped bytes (a different
/// one per `seed`, so each publish is a new blob).
fn module(seed: u64) -> Vec<u8> {
    let mut module = fixture("reverse.wat");
    let name = format!("payload{seed}");
    let skip = 64 * seed as usize;
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(&code_like_bytes(SIZE + skip)[skip..]);
    module.push(0);
    let mut size = section.len();
    while size >= 0x80 {
        module.push((size & 0x7f) as u8 | 0x80);
        size >>= 7;
    }
    module.push(size as u8);
    module.extend_from_slice(&section);
    module
}

/// One cold start, in milliseconds: gossip, fetch, compile, rest of ready, first request.
struct Parts([f64; 5]);

async fn cold_start(
    cluster: &Cluster,
    publisher: &Keypair,
    from: usize,
    to: usize,
    run: u64,
) -> Parts {
    let name = format!("cold{run}");
    let module_ref: ModuleRef = name.parse().expect("a module name");
    let bytes = module(run);
    let bundle =
        wasmesh_node::module_file::bundle(bytes, name.clone(), 1, Limits::default(), publisher)
            .expect("sign");
    let far = cluster.node(to).expect("running");
    let far_url = cluster.url(to);
    let before = {
        let url = far_url.clone();
        tokio::task::spawn_blocking(move || {
            (
                histogram_sum(&url, "wasmesh_blob_fetch_duration_seconds"),
                histogram_sum(&url, "wasmesh_compile_duration_seconds"),
            )
        })
        .await
        .expect("metrics")
    };

    let origin = Gateway::new(&cluster.url(from));
    let started = Instant::now();
    let publishing = tokio::task::spawn_blocking(move || {
        origin
            .publish(&bundle)
            .and_then(|a| a.ok())
            .expect("publish");
    });
    let gossip = wait_for("the far node holds the manifest", DEADLINE, EVERY, || {
        far.held_version(&module_ref).is_some()
    })
    .await
    .expect("gossip");
    let ready = wait_for("the far node has the module ready", DEADLINE, EVERY, || {
        far.is_ready(&module_ref)
    })
    .await
    .expect("ready");
    let ready_at = started.elapsed();
    let far_gateway = Gateway::new(&far_url);
    let route = tokio::task::spawn_blocking(move || {
        let answer = far_gateway.invoke(&name, b"cold start").expect("invoke");
        assert_eq!(answer.status, 200);
        answer
            .header("x-wasmesh-route")
            .unwrap_or_default()
            .to_owned()
    })
    .await
    .expect("first request");
    let first_request = started.elapsed() - ready_at;
    assert_eq!(
        route, "local",
        "the first request did not run on the far node"
    );
    publishing.await.expect("the publish ends");

    let (fetch, compile) = tokio::task::spawn_blocking(move || {
        (
            histogram_sum(&far_url, "wasmesh_blob_fetch_duration_seconds") - before.0,
            histogram_sum(&far_url, "wasmesh_compile_duration_seconds") - before.1,
        )
    })
    .await
    .expect("metrics");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rest = ms(ready) - fetch * 1e3 - compile * 1e3;
    Parts([
        ms(gossip),
        fetch * 1e3,
        compile * 1e3,
        rest,
        ms(first_request),
    ])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cities = CITIES.iter().map(|c| c.to_string()).collect();
        let matrix = LatencyMatrix::build(&LatencyModel::Geo { cities }, CITIES.len(), 7)
            .expect("the cities");
        let publisher = Keypair::from_seed([7; 32]);
        let setups = vec![NodeSetup::default(); CITIES.len()];
        let mut cluster = Cluster::new(&matrix.one_way_ms, &setups, &[publisher.public()])
            .expect("the mesh");
        for node in 0..CITIES.len() {
            cluster.start(node).await.expect("a node starts");
        }
        wait_for("the mesh forms", DEADLINE, EVERY, || cluster.is_meshed())
            .await
            .expect("meshed");
        let from = 0;
        let to = (1..CITIES.len())
            .max_by(|&a, &b| matrix.rtt_ms(from, a).total_cmp(&matrix.rtt_ms(from, b)))
            .expect("a far node");
        let mut runs = Vec::new();
        for run in 0..RUNS {
            runs.push(cold_start(&cluster, &publisher, from, to, run as u64).await);
        }
        let median = |part: usize| {
            let mut values: Vec<f64> = runs.iter().map(|r| r.0[part]).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let total = {
            let mut values: Vec<f64> = runs.iter().map(|r| r.0.iter().sum()).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        println!(
            "## Cold start: {} MiB module published in {}, first request in {} ({:.0} ms round trip), median of {RUNS}\n",
            SIZE >> 20,
            CITIES[from],
            CITIES[to],
            matrix.rtt_ms(from, to)
        );
        println!("| part | time |");
        println!("| --- | ---: |");
        for (part, name) in [
            "gossip: publish until the far node holds the manifest",
            "fetch (verified ranges, compressed)",
            "compile",
            "rest of ready: learning who holds the blob, the stored blob checked, hand-overs",
            "first request, run on the far node",
        ]
        .iter()
        .enumerate()
        {
            println!("| {name} | {:.1} ms |", median(part));
        }
        println!("| **publish to first request** | **{total:.1} ms** |");
        cluster.shutdown().await;
    });
}
