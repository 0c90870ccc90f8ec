//! Nodes reaching each other across real NATs (`wasmesh_testkit::nat`: network namespaces,
//! nftables NAT), against the same three nodes with no NAT, measured in one run. A is public
//! and replicates nothing; B holds echo and a 16 MiB module; C replicates the large module only,
//! so its echo requests run on B. Per path:
//!
//! - first answer: from C's first echo request until one is answered by B (C looks up who holds
//!   echo, then opens the path: for the punched one an introduction by A, a punch by B and the
//!   handshake; for the relayed one a failed punch, then a relay session);
//! - control plane direct: from C's start until its libp2p connection to B is direct (C dials
//!   B through A's relay, and both punch with DCUtR; behind two symmetric NATs it stays
//!   relayed, shown as `-`);
//! - forwarded latency: 200 echo requests entering at C, median and p90;
//! - blob: C fetching the 16 MiB module from B (its fetch time, from C's metrics).
//!
//! The namespaces are joined by veth pairs with no delay, so the paths differ only by what
//! NAT traversal costs. Needs root (as CI runs); prints why it skips otherwise.
//! Run: `cargo bench -p wasmesh-node --bench reach`. Prints a Markdown table of medians.

use std::time::{Duration, Instant};

use wasmesh_testkit::fixtures::{bundle, fixture, large_module, publisher};
use wasmesh_testkit::nat::{Internet, NatKind};
use wasmesh_testkit::process::{NodeProcess, get_json, histogram_sum};
use wasmesh_testkit::wait::{DEADLINE, wait_until};

const RUNS: usize = 3;
const REQUESTS: usize = 200;
const BLOB: usize = 16 << 20;

/// What one run of one path measured.
struct Run {
    first: Duration,
    control_direct: Option<Duration>,
    latencies: Vec<Duration>,
    blob_fetch: Duration,
}

/// One run: A public, B behind `b_nat`, C behind `c_nat`.
fn run(b_nat: NatKind, c_nat: NatKind, seed: u64) -> Option<Run> {
    let mut internet = Internet::create()?;
    let (a_host, b_host, c_host) = (
        internet.host(NatKind::None),
        internet.verified_host(b_nat),
        internet.verified_host(c_nat),
    );
    let dirs = tempfile::tempdir().expect("dir");
    let keys = publisher(1);
    let trust = keys.public().to_string();
    let a = NodeProcess::start_on(
        &a_host,
        &dirs.path().join("a"),
        &trust,
        &[],
        &["--replicate", "none"],
    );
    let b = NodeProcess::start_on(&b_host, &dirs.path().join("b"), &trust, &[&a], &[]);
    let c_started = Instant::now();
    let c = NodeProcess::start_on(
        &c_host,
        &dirs.path().join("c"),
        &trust,
        &[&a],
        &["--replicate", "big"],
    );
    let publish = |wasm: Vec<u8>, name: &str| {
        let answer = b.within(|| {
            b.gateway(DEADLINE)
                .publish(&bundle(&keys, wasm, name, 1))
                .expect("publish")
        });
        assert_eq!(answer.status, 201, "{}", answer.text());
    };
    // The control path is watched while echo is published and first asked for.
    let (control_direct, (first, latencies)) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| control_direct_after(&c, &b.peer_id, c_started));
        publish(fixture("echo.wat"), "echo");
        let first = first_requests(&b, &c);
        (watcher.join().expect("the control path watcher"), first)
    });
    publish(large_module(BLOB, seed), "big");
    wait_until("the large module is ready at C", 2 * DEADLINE, || {
        c.is_ready("big")
    });
    let fetch_s = c.within(|| histogram_sum(&c.url, "wasmesh_blob_fetch_duration_seconds"));
    Some(Run {
        first,
        control_direct,
        latencies,
        blob_fetch: Duration::from_secs_f64(fetch_s),
    })
}

/// Asks C for echo until B answers (C learns who holds echo when it is first asked for it: the
/// first answer includes the holder lookup, and the path's opening: an introduction, a punch,
/// a relay session), then 200 requests more.
fn first_requests(b: &NodeProcess, c: &NodeProcess) -> (Duration, Vec<Duration>) {
    c.within(|| {
        let gateway = c.gateway(DEADLINE);
        let started = Instant::now();
        loop {
            let answer = gateway.invoke("echo", b"first").expect("first request");
            if answer.status == 200 && answer.executed_by() == b.peer_id {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no answer from B: {}",
                answer.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = started.elapsed();
        let latencies: Vec<Duration> = (0..REQUESTS)
            .map(|_| {
                let started = Instant::now();
                let answer = gateway.invoke("echo", b"ping").expect("request");
                assert_eq!(answer.status, 200, "{}", answer.text());
                started.elapsed()
            })
            .collect();
        (first, latencies)
    })
}

/// How long it watches for a direct control connection.
const CONTROL_WATCH: Duration = Duration::from_secs(20);

/// How long after `started` node `c`'s libp2p connection to `b` is direct; `None` if it is not
/// within [`CONTROL_WATCH`].
fn control_direct_after(c: &NodeProcess, b: &str, started: Instant) -> Option<Duration> {
    while started.elapsed() < CONTROL_WATCH {
        let peers = c.within(|| get_json(&format!("{}/v1/peers", c.url)));
        let direct = peers.as_array().is_some_and(|list| {
            list.iter()
                .any(|p| p["peer_id"] == b && p["control_path"] == "direct")
        });
        if direct {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    if Internet::create().is_none() {
        return;
    }
    let paths = [
        ("direct (no NAT)", NatKind::None, NatKind::None),
        ("through B's full cone", NatKind::FullCone, NatKind::None),
        (
            "punched (both port-restricted)",
            NatKind::PortRestricted,
            NatKind::PortRestricted,
        ),
        (
            "relayed by A (both symmetric)",
            NatKind::Symmetric,
            NatKind::Symmetric,
        ),
    ];
    println!(
        "| path from C to B | control plane direct | first answer | forwarded p50 | forwarded p90 | 16 MiB fetch | MiB/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, b_nat, c_nat) in paths {
        let runs: Vec<Run> = (0..RUNS)
            .filter_map(|seed| run(b_nat, c_nat, seed as u64))
            .collect();
        let first = median(runs.iter().map(|r| r.first).collect());
        let direct: Vec<Duration> = runs.iter().filter_map(|r| r.control_direct).collect();
        let control = if direct.len() == runs.len() {
            format!("{:.0} ms", median(direct).as_secs_f64() * 1e3)
        } else {
            format!("- ({} of {} runs)", direct.len(), runs.len())
        };
        let p50 = median(runs.iter().map(|r| percentile(&r.latencies, 0.5)).collect());
        let p90 = median(runs.iter().map(|r| percentile(&r.latencies, 0.9)).collect());
        let fetch = median(runs.iter().map(|r| r.blob_fetch).collect());
        let mib_s = (BLOB as f64 / (1 << 20) as f64) / fetch.as_secs_f64();
        println!(
            "| {name} | {control} | {:.1} ms | {} us | {} us | {:.0} ms | {mib_s:.0} |",
            first.as_secs_f64() * 1e3,
            p50.as_micros(),
            p90.as_micros(),
            fetch.as_secs_f64() * 1e3,
        );
    }
}
