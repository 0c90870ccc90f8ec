//! Executor benchmark: per-request sandbox cost against native code, artifact load against
//! compile, and the thumbnail guest against the same code compiled natively.
//!
//! Run: `scripts/bench-executor.sh` (builds the guests and the native thumbnail baseline, then
//! this). Reports medians and p99 of per-iteration wall time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmesh_node::executor::{Executor, ExecutorConfig, Prepared, Request};
use wasmesh_protocol::{ContentHash, Limits};

fn fixture(name: &str) -> Vec<u8> {
    wasmesh_node::module_file::read_module(&support::fixture_path(name)).expect("fixture")
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations.min(100) {
        f();
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    Stats {
        median: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
    }
}

fn us(d: Duration) -> String {
    format!("{:.2} us", d.as_secs_f64() * 1e6)
}

fn row(name: &str, stats: &Stats) {
    println!("| {name} | {} | {} |", us(stats.median), us(stats.p99));
}

fn sandbox_cost(executor: &Executor, name: &str, wasm: &[u8], input: &[u8]) -> Stats {
    let (module, _) = executor
        .prepare(ContentHash::of(wasm), name, wasm)
        .expect("prepare");
    let request = Request {
        input: input.to_vec(),
        limits: Limits::default(),
    };
    measure(20_000, || {
        let out = executor.run_blocking(&module, &request).expect("run");
        black_box(out.bytes);
    })
}

#[inline(never)]
fn native_echo(input: &[u8]) -> Vec<u8> {
    input.to_vec()
}

fn main() {
    let executor = Executor::new(ExecutorConfig::default()).expect("executor");
    let input = [42u8; 64];

    println!("## Per-request sandbox cost (new store + instance + call + drop), 64-byte input\n");
    println!("| what | median | p99 |");
    println!("| --- | ---: | ---: |");
    row(
        "baseline: the same echo as a native Rust function",
        &measure(20_000, || {
            black_box(native_echo(black_box(&input)));
        }),
    );
    row(
        "raw echo, WAT fixture",
        &sandbox_cost(&executor, "echo-wat", &fixture("echo.wat"), &input),
    );
    row(
        "raw echo, Rust (wasmesh-guest SDK)",
        &sandbox_cost(&executor, "echo", &support::built_guest("echo"), &input),
    );
    row(
        "WASI echo, WAT fixture",
        &sandbox_cost(
            &executor,
            "wasi-echo-wat",
            &fixture("wasi_echo.wat"),
            &input,
        ),
    );
    row(
        "WASI echo, Rust std",
        &sandbox_cost(
            &executor,
            "wasi-echo",
            &support::built_guest("wasi-echo"),
            &input,
        ),
    );

    println!("\n## thumbnail.wasm: compile vs artifact-cache load\n");
    let thumbnail = support::built_guest("thumbnail");
    let hash = ContentHash::of(&thumbnail);
    let dir = tempfile::tempdir().expect("tempdir");
    let with_artifacts = || {
        Executor::new(ExecutorConfig {
            artifact_dir: Some(dir.path().to_owned()),
            ..ExecutorConfig::default()
        })
        .expect("executor")
    };
    let compile = measure(5, || {
        let fresh = Executor::new(ExecutorConfig::default()).expect("executor");
        let (_, how) = fresh
            .prepare(hash, "thumbnail", &thumbnail)
            .expect("compile");
        assert_eq!(how, Prepared::Compiled);
    });
    with_artifacts()
        .prepare(hash, "thumbnail", &thumbnail)
        .expect("compile");
    let load = measure(20, || {
        let (_, how) = with_artifacts()
            .prepare(hash, "thumbnail", &thumbnail)
            .expect("load");
        assert_eq!(how, Prepared::Artifact);
    });
    println!("| what | median | p99 |");
    println!("| --- | ---: | ---: |");
    row("compile (cranelift, metered)", &compile);
    row(
        "load from artifact cache (digest check + deserialize)",
        &load,
    );
    println!(
        "\nload is {:.0}x faster than compile",
        compile.median.as_secs_f64() / load.median.as_secs_f64()
    );

    println!("\n## thumbnail: 1-megapixel JPEG to 256 px wide\n");
    let (module, _) = executor
        .prepare(hash, "thumbnail", &thumbnail)
        .expect("thumbnail");
    let limits = Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 60_000,
        ..Limits::default()
    };
    let mut make_jpeg = b"1000\n".to_vec();
    make_jpeg.extend(support::gradient_png(1000, 1000));
    let jpeg = executor
        .run_blocking(
            &module,
            &Request {
                input: make_jpeg,
                limits,
            },
        )
        .expect("make the 1 MP JPEG")
        .bytes;
    let mut request = b"256\n".to_vec();
    request.extend(&jpeg);
    let sandboxed = measure(15, || {
        let out = executor
            .run_blocking(
                &module,
                &Request {
                    input: request.clone(),
                    limits,
                },
            )
            .expect("thumbnail");
        black_box(out.bytes);
    });
    println!("input: {} KiB JPEG, 1000x1000\n", jpeg.len() / 1024);
    println!("| what | median |");
    println!("| --- | ---: |");
    println!(
        "| in the sandbox (wasmer, metered) | {} |",
        us(sandboxed.median)
    );
    match std::env::var_os("WASMESH_NATIVE_THUMBNAIL") {
        Some(native) => {
            let mut child = Command::new(native)
                .args(["--bench", "15"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("native thumbnail");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&request)
                .expect("write request");
            let out = child.wait_with_output().expect("native thumbnail");
            let native_us: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("native median");
            println!("| baseline: the same code compiled natively | {native_us:.1} us |");
            println!(
                "\nsandbox / native = {:.2}x",
                sandboxed.median.as_secs_f64() * 1e6 / native_us
            );
        }
        None => {
            println!("(set WASMESH_NATIVE_THUMBNAIL to a native thumbnail build for the baseline)")
        }
    }
}
