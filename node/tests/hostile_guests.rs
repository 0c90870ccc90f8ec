//! Hostile guests through a real `wasmesh node run` process, as a trusted but malicious
//! publisher would send them: bulk-operation bombs, host calls over the whole memory, call
//! chains without loops, start functions that never end. Each is published with a 100 ms
//! deadline and a 64 MiB memory cap and sent three requests at once. Every request must end
//! (not 200) within its deadline plus 250 ms, and meanwhile a sampler must see `GET /healthz`
//! and a well-behaved module on a free slot answer within 200 ms, every time.
//!
//! Run with `--nocapture` for the figures.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::Gateway;
use support::hostile::{self, Hostile};
use support::process::{self, NodeProcess};
use support::wait::{DEADLINE, wait_until};

/// The deadline every hostile module is published with.
const TIMEOUT_MS: u64 = 100;
/// How long after its deadline a hostile request may end.
const GRACE: Duration = Duration::from_millis(250);
/// The slowest answer the sampler may see from the node while hostile guests run.
const SAMPLE_BOUND: Duration = Duration::from_millis(200);
/// Concurrent requests per hostile module.
const CONCURRENT: usize = 3;

/// The slowest answers a sampler saw.
#[derive(Debug, Default, Clone, Copy)]
struct Worst {
    healthz: Duration,
    echo: Duration,
    samples: usize,
}

/// Asks the node for `/healthz` and runs `echo` in turn until stopped; keeps the slowest.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Worst>,
}

impl Sampler {
    fn start(url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_owned();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let gateway = Gateway::with_timeout(&url, Duration::from_secs(30));
            let mut worst = Worst::default();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let health = gateway.get("/healthz");
                assert!(health.is_ok_and(|a| a.status == 200), "healthz failed");
                worst.healthz = worst.healthz.max(sent.elapsed());
                let sent = Instant::now();
                let echo = gateway.invoke("echo", b"still here").unwrap();
                assert_eq!(echo.status, 200, "{}", String::from_utf8_lossy(&echo.body));
                worst.echo = worst.echo.max(sent.elapsed());
                worst.samples += 1;
                // Pacing, so the sampler itself does not load the node.
                std::thread::sleep(Duration::from_millis(5));
            }
            worst
        });
        Self { stop, thread }
    }

    fn stop(self) -> Worst {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

fn publish(dir: &std::path::Path, key: &std::path::Path, node: &NodeProcess, guest: &Hostile) {
    let path = dir.join(format!("{}.wat", guest.name));
    std::fs::write(&path, &guest.wat).unwrap();
    let timeout = TIMEOUT_MS.to_string();
    process::wasmesh(
        dir,
        &[
            "publish",
            path.to_str().unwrap(),
            "--name",
            guest.name,
            "--version",
            "1",
            "--key",
            key.to_str().unwrap(),
            "--node",
            &node.url,
            "--timeout-ms",
            &timeout,
            "--memory-mib",
            "64",
        ],
    );
}

/// Sends `CONCURRENT` requests to `name` at once; each answer's status, kind and time.
fn hammer(url: &str, name: &str) -> Vec<(u16, String, Duration)> {
    let threads: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (url, name) = (url.to_owned(), name.to_owned());
            std::thread::spawn(move || {
                let gateway = Gateway::with_timeout(&url, Duration::from_secs(60));
                let sent = Instant::now();
                let answer = gateway.invoke(&name, b"").unwrap();
                let took = sent.elapsed();
                let body: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or_default();
                let kind = body["error"].as_str().unwrap_or("(none)").to_owned();
                (answer.status, kind, took)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn no_hostile_guest_outlives_its_deadline_or_stalls_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), &public, &[], &[]);
    process::publish(
        dir.path(),
        &key,
        &node,
        &support::fixture_path("echo.wat"),
        "echo",
    );
    let suite = hostile::suite();
    for guest in &suite {
        publish(dir.path(), &key, &node, guest);
    }
    wait_until("every module is ready", DEADLINE, || {
        node.is_ready("echo") && suite.iter().all(|g| node.is_ready(g.name))
    });

    let bound = Duration::from_millis(TIMEOUT_MS) + GRACE;
    let mut failures = Vec::new();
    println!("| hostile guest | answers | slowest answer | worst healthz | worst echo | samples |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for guest in &suite {
        let sampler = Sampler::start(&node.url);
        let answers = hammer(&node.url, guest.name);
        let worst = sampler.stop();
        let slowest = answers.iter().map(|a| a.2).max().unwrap_or_default();
        let kinds: Vec<String> = answers.iter().map(|a| format!("{} {}", a.0, a.1)).collect();
        println!(
            "| {} | {} | {} ms | {} ms | {} ms | {} |",
            guest.what,
            kinds.join(", "),
            slowest.as_millis(),
            worst.healthz.as_millis(),
            worst.echo.as_millis(),
            worst.samples
        );
        if answers.iter().any(|a| a.0 == 200) {
            failures.push(format!("{}: answered 200: {kinds:?}", guest.name));
        }
        if slowest > bound {
            failures.push(format!("{}: a request took {slowest:?}", guest.name));
        }
        if worst.healthz > SAMPLE_BOUND || worst.echo > SAMPLE_BOUND {
            failures.push(format!("{}: the node stalled: {worst:?}", guest.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        node.status()["running"].as_u64(),
        Some(0),
        "no guest still runs"
    );
}
