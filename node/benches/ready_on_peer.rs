//! Cold start of a large module across two processes: a 16 MiB module is published on one
//! `wasmesh node run` process (A) and the bench waits until a second (B) has it ready. From
//! "ready on A" to "ready on B" is gossip, the blob's fetch in verified ranges, the store, the
//! check before compiling, and the compile; its MiB/s is compared with raw quinn streams of the
//! same size between two processes (this binary, started again as the server), one stream before
//! each publish, so that both see the same state of a shared machine.
//!
//! Run: `cargo bench -p wasmesh-node --bench ready_on_peer` (it builds the `wasmesh` binary).
//! Prints a Markdown table of medians of 9. With `WASMESH_BENCH_PIN=1`, each end gets a core of
//! its own (`taskset`): A and the raw server on CPU 0, B and this process (the raw client) on
//! CPU 1, as two machines would have.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/raw_quinn.rs"]
mod raw_quinn;

use wasmesh_testkit::fixtures::large_module;
use wasmesh_testkit::process::{NodeProcess, histogram_sum, publisher_key, wasmesh};
use wasmesh_testkit::wait::{DEADLINE, wait_until};

/// Size of the module.
const SIZE: usize = 16 << 20;
/// Publishes (and raw streams) measured.
const RUNS: usize = 9;
/// Started with this argument, the binary is the raw quinn server of the baseline.
const RAW_SERVER: &str = "--raw-quinn-server";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn mib_per_s(time: Duration) -> f64 {
    SIZE as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

/// The raw quinn server: serves until its stdin closes.
fn raw_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let server = raw_quinn::serve(SIZE);
        println!("{}", server.local_addr().expect("addr"));
        std::io::stdout().flush().expect("stdout");
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().lines().count();
        })
        .await
        .expect("stdin");
    });
}

/// Raw quinn streams of `SIZE` bytes from a server in another process.
struct RawBetweenProcesses {
    server: std::process::Child,
    client: raw_quinn::RawClient,
    runtime: tokio::runtime::Runtime,
}

impl RawBetweenProcesses {
    fn start() -> Self {
        let mut server = Command::new(std::env::current_exe().expect("this binary"))
            .arg(RAW_SERVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the raw server starts");
        let mut line = String::new();
        BufReader::new(server.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's address");
        let addr = line.trim().parse().expect("an address");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let client = runtime.block_on(raw_quinn::RawClient::connect(addr));
        Self {
            server,
            client,
            runtime,
        }
    }

    fn time_stream(&self) -> Duration {
        self.runtime.block_on(self.client.time_stream(SIZE))
    }
}

impl Drop for RawBetweenProcesses {
    fn drop(&mut self) {
        drop(self.server.stdin.take());
        let _ = self.server.wait();
    }
}

/// Moves every thread of process `pid` to CPU `cpu`.
fn pin(pid: u32, cpu: u32) {
    let status = Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list"])
        .arg(cpu.to_string())
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("taskset runs");
    assert!(status.success(), "taskset could not pin {pid} to CPU {cpu}");
}

fn main() {
    if std::env::args().any(|arg| arg == RAW_SERVER) {
        return raw_server();
    }
    let raw_streams = RawBetweenProcesses::start();
    // A first stream warms the connection up.
    raw_streams.time_stream();
    let mut raw_samples = Vec::new();

    let dir = tempfile::tempdir().expect("dir");
    let (key, trust) = publisher_key(dir.path());
    let a = NodeProcess::start(&dir.path().join("a"), &trust, &[], &[]);
    let b = NodeProcess::start(&dir.path().join("b"), &trust, &[&a], &[]);
    wait_until("B is connected to A", DEADLINE, || {
        a.status()["peers"].as_u64().unwrap_or(0) >= 1
    });

    if std::env::var_os("WASMESH_BENCH_PIN").is_some() {
        for (pid, cpu) in [
            (a.pid(), 0),
            (raw_streams.server.id(), 0),
            (b.pid(), 1),
            (std::process::id(), 1),
        ] {
            pin(pid, cpu);
        }
    }
    let mut samples = Vec::new();
    for run in 0..RUNS {
        raw_samples.push(raw_streams.time_stream());
        let name = format!("large{run}");
        let path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, large_module(SIZE, run as u64)).expect("module file");
        let publishing = {
            let (dir, key, url, path, name) = (
                dir.path().to_owned(),
                key.clone(),
                a.url.clone(),
                path.clone(),
                name.clone(),
            );
            std::thread::spawn(move || {
                wasmesh(
                    &dir,
                    &[
                        "publish",
                        path.to_str().expect("utf-8"),
                        "--name",
                        &name,
                        "--version",
                        "1",
                        "--key",
                        key.to_str().expect("utf-8"),
                        "--node",
                        &url,
                    ],
                )
            })
        };
        let started = Instant::now();
        let mut ready_on_a = None;
        let ready_on_b = loop {
            let now = Instant::now();
            if ready_on_a.is_none() && a.is_ready(&name) {
                ready_on_a = Some(now);
            }
            if b.is_ready(&name) {
                break now;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{name} never became ready on B"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        publishing.join().expect("the publish ends");
        let ready_on_a = ready_on_a.unwrap_or(ready_on_b);
        samples.push(ready_on_b - ready_on_a);
    }
    let fetch = histogram_sum(&b.url, "wasmesh_blob_fetch_duration_seconds") / RUNS as f64;
    let compile = histogram_sum(&b.url, "wasmesh_compile_duration_seconds") / RUNS as f64;
    let ready = median(samples);
    let raw = median(raw_samples);

    println!(
        "## A 16 MiB module: ready on A to ready on B (two processes, loopback, median of {RUNS})\n"
    );
    println!("| what | time | MiB/s | / raw quinn |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| raw quinn stream, two processes | {:.1} ms | {:.0} | 1.00 |",
        raw.as_secs_f64() * 1e3,
        mib_per_s(raw)
    );
    println!(
        "| ready on A to ready on B | {:.1} ms | {:.0} | **{:.2}** |",
        ready.as_secs_f64() * 1e3,
        mib_per_s(ready),
        raw.as_secs_f64() / ready.as_secs_f64()
    );
    println!(
        "| of which B's fetch (mean) | {:.1} ms | {:.0} | |",
        fetch * 1e3,
        SIZE as f64 / (1 << 20) as f64 / fetch
    );
    println!(
        "| of which B's compile (mean) | {:.1} ms | | |",
        compile * 1e3
    );
}
