//! Executor benchmark: per-request sandbox cost against native code, artifact load against
//! compile, and the thumbnail guest against the same code compiled natively.
//!
//! Run: `scripts/bench-executor.sh` (builds the guests and the native thumbnail baseline, then
//! this). Reports medians and p99 of per-iteration wall time. Arguments name the sections to run
//! (`sandbox`, `compile`, `thumbnail`; all when none is named):
//! `scripts/bench-executor.sh thumbnail`.

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

/// Whether the section `name` was asked for (every section when none is named).
fn wanted(name: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    named.is_empty() || named.iter().any(|n| n == name)
}

fn main() {
    let executor = Executor::new(ExecutorConfig::default()).expect("executor");
    if wanted("sandbox") {
        sandbox_section(&executor);
    }
    let thumbnail = support::built_guest("thumbnail");
    let hash = ContentHash::of(&thumbnail);
    if wanted("compile") {
        compile_section(hash, &thumbnail);
    }
    if wanted("thumbnail") {
        thumbnail_section(&executor, hash, &thumbnail);
    }
}

fn sandbox_section(executor: &Executor) {
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
        &sandbox_cost(executor, "echo-wat", &fixture("echo.wat"), &input),
    );
    row(
        "raw echo, Rust (wasmesh-guest SDK)",
        &sandbox_cost(executor, "echo", &support::built_guest("echo"), &input),
    );
    row(
        "WASI echo, WAT fixture",
        &sandbox_cost(executor, "wasi-echo-wat", &fixture("wasi_echo.wat"), &input),
    );
    row(
        "WASI echo, Rust std",
        &sandbox_cost(
            executor,
            "wasi-echo",
            &support::built_guest("wasi-echo"),
            &input,
        ),
    );
}

fn compile_section(hash: ContentHash, thumbnail: &[u8]) {
    println!("\n## thumbnail.wasm: compile vs artifact-cache load\n");
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
            .prepare(hash, "thumbnail", thumbnail)
            .expect("compile");
        assert_eq!(how, Prepared::Compiled);
    });
    with_artifacts()
        .prepare(hash, "thumbnail", thumbnail)
        .expect("compile");
    let load = measure(20, || {
        let (_, how) = with_artifacts()
            .prepare(hash, "thumbnail", thumbnail)
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
}

fn thumbnail_section(executor: &Executor, hash: ContentHash, thumbnail: &[u8]) {
    let (module, _) = executor
        .prepare(hash, "thumbnail", thumbnail)
        .expect("thumbnail");
    let megapixel = to_jpeg(executor, &module, 1000, support::gradient_png(1000, 1000));
    thumbnail_case(
        executor,
        &module,
        "a 1-megapixel JPEG (1000x1000, noisy) to 256 px wide",
        &megapixel,
    );
    let photo = to_jpeg(executor, &module, 1600, photo_png(1600, 1067));
    thumbnail_case(
        executor,
        &module,
        "a web photo (1600x1067, smooth with fine texture) to 256 px wide",
        &photo,
    );
}

/// Limits under which the thumbnail runs never stop for fuel or time.
fn generous() -> Limits {
    Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 60_000,
        ..Limits::default()
    }
}

/// A JPEG of `png` at `width`, made by the guest itself.
fn to_jpeg(
    executor: &Executor,
    module: &wasmesh_node::executor::CompiledModule,
    width: u32,
    png: Vec<u8>,
) -> Vec<u8> {
    let mut request = format!("{width}\n").into_bytes();
    request.extend(png);
    executor
        .run_blocking(
            module,
            &Request {
                input: request,
                limits: generous(),
            },
        )
        .expect("make the JPEG")
        .bytes
}

/// An image shaped like a photo: smooth gradients (sky, light) with a fine texture over them.
fn photo_png(width: u32, height: u32) -> Vec<u8> {
    support::rgb_png(width, height, |x, y| {
        let texture = ((x * 7 + y * 13) % 21) as u8;
        [
            (x * 200 / width) as u8 + texture,
            (y * 180 / height) as u8 + texture,
            (((x + y) * 150) / (width + height)) as u8 + 60,
        ]
    })
}

/// Times the thumbnail of `jpeg` in the sandbox, natively (`WASMESH_NATIVE_THUMBNAIL`) and under
/// wasmtime (`WASMESH_WASMTIME_BENCH`: the python script that runs it), and prints a table.
///
/// The runtimes take turns: each round times a few runs of each, and the ratios are taken per
/// round, so that the machine's drift over the minute this takes falls on all of them alike.
fn thumbnail_case(
    executor: &Executor,
    module: &wasmesh_node::executor::CompiledModule,
    label: &str,
    jpeg: &[u8],
) {
    const ROUNDS: usize = 9;
    const RUNS: usize = 5;
    println!("\n## thumbnail: {label}\n");
    let mut request = b"256\n".to_vec();
    request.extend(jpeg);
    let request_file = tempfile::NamedTempFile::new().expect("request file");
    std::fs::write(request_file.path(), &request).expect("write the request");
    let native = std::env::var_os("WASMESH_NATIVE_THUMBNAIL");
    let wasmtime = std::env::var_os("WASMESH_WASMTIME_BENCH");
    let mut fuel_used = 0;
    // Per round, in microseconds: sandbox, native, wasmtime without fuel, wasmtime with its fuel.
    let mut rounds: Vec<[Option<f64>; 4]> = Vec::new();
    for _ in 0..ROUNDS {
        let sandboxed = measure(RUNS, || {
            let out = executor
                .run_blocking(
                    module,
                    &Request {
                        input: request.clone(),
                        limits: generous(),
                    },
                )
                .expect("thumbnail");
            fuel_used = out.fuel_used;
            black_box(out.bytes);
        });
        let native_us = native.as_ref().map(|native| {
            median_us_printed_by(
                Command::new(native)
                    .args(["--bench", &RUNS.to_string()])
                    .stdin(std::fs::File::open(request_file.path()).expect("request")),
            )
        });
        let wasmtime_us = |flags: &[&str]| {
            wasmtime.as_ref().map(|script| {
                median_us_printed_by(
                    Command::new("python3")
                        .arg(script)
                        .arg(support::built_guest_path("thumbnail"))
                        .arg(request_file.path())
                        .arg(RUNS.to_string())
                        .args(flags)
                        .stdin(Stdio::null()),
                )
            })
        };
        rounds.push([
            Some(sandboxed.median.as_secs_f64() * 1e6),
            native_us,
            wasmtime_us(&[]),
            wasmtime_us(&["--fuel"]),
        ]);
    }
    println!(
        "input: {} KiB JPEG; fuel charged per request: {fuel_used}; {ROUNDS} rounds of {RUNS} runs \
         each, medians\n",
        jpeg.len() / 1024
    );
    // The median over rounds of `column`, and of its per-round ratio to `base`.
    let median_of = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let column = |c: usize| median_of(rounds.iter().filter_map(|r| r[c]).collect());
    let ratio = |c: usize, base: usize| {
        median_of(
            rounds
                .iter()
                .filter_map(|r| Some(r[c]? / r[base]?))
                .collect(),
        )
        .map_or(String::new(), |ratio| format!("{ratio:.2}"))
    };
    println!("| what | median | / native | wasmesh / this |");
    println!("| --- | ---: | ---: | ---: |");
    let names = [
        "in the sandbox (wasmer, metered)",
        "baseline: the same code compiled natively",
        "peer: wasmtime (Cranelift, no fuel), same module",
        "peer: wasmtime (Cranelift, its own fuel), same module",
    ];
    for (c, name) in names.iter().enumerate() {
        if let Some(median) = column(c) {
            println!(
                "| {name} | {median:.1} us | {} | {} |",
                ratio(c, 1),
                ratio(0, c)
            );
        }
    }
    let spread: Vec<String> = rounds
        .iter()
        .filter_map(|r| Some(format!("{:.2}", r[0]? / r[2]?)))
        .collect();
    if !spread.is_empty() {
        println!(
            "\nwasmesh / wasmtime without fuel, round by round: {}",
            spread.join(" ")
        );
    }
    if native.is_none() {
        println!("(set WASMESH_NATIVE_THUMBNAIL to a native thumbnail build for the baseline)");
    }
}

/// Runs `command` and parses the median in microseconds it prints.
fn median_us_printed_by(command: &mut Command) -> f64 {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .expect("run the baseline");
    assert!(out.status.success(), "{command:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a median in microseconds")
}
