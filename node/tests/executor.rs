//! The executor against the WAT fixtures: every typed failure, the memory cap (tables
//! included), the output bound, the artifact cache's refusal of tampered or foreign artifacts,
//! fresh state per request, and a well-behaved request completing among 64 hostile ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmesh_node::executor::{
    CompiledModule, Executor, ExecutorConfig, GuestError, Prepared, Request, STDERR_CAP,
};
use wasmesh_protocol::{ContentHash, Limits};

mod support;

use support::hostile;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/fixtures")
        .join(name);
    wasmesh_node::module_file::read_module(&path).unwrap()
}

fn executor() -> Executor {
    Executor::new(ExecutorConfig::default()).unwrap()
}

fn prepare(executor: &Executor, name: &str) -> Arc<CompiledModule> {
    let wasm = fixture(name);
    executor
        .prepare(ContentHash::of(&wasm), name, &wasm)
        .unwrap()
        .0
}

fn limits() -> Limits {
    Limits::default()
}

/// Compiles WAT text made by a test.
fn prepare_wat(executor: &Executor, name: &str, wat: &str) -> Arc<CompiledModule> {
    let wasm = wat::parse_str(wat).unwrap();
    executor
        .prepare(ContentHash::of(&wasm), name, &wasm)
        .unwrap()
        .0
}

/// Runs WAT text made by a test with `limits`; the output and what it cost.
fn run_wat(
    executor: &Executor,
    wat: &str,
    limits: Limits,
) -> Result<wasmesh_node::executor::Output, GuestError> {
    let module = prepare_wat(executor, "made", wat);
    executor.run_blocking(
        &module,
        &Request {
            input: Vec::new(),
            limits,
        },
    )
}

fn run(
    executor: &Executor,
    name: &str,
    input: &[u8],
    limits: Limits,
) -> Result<Vec<u8>, GuestError> {
    run_module(executor, &prepare(executor, name), input, limits)
}

fn run_module(
    executor: &Executor,
    module: &CompiledModule,
    input: &[u8],
    limits: Limits,
) -> Result<Vec<u8>, GuestError> {
    let request = Request {
        input: input.to_vec(),
        limits,
    };
    executor
        .run_blocking(module, &request)
        .map(|output| output.bytes)
}

#[test]
fn raw_guests_answer() {
    let ex = executor();
    assert_eq!(run(&ex, "echo.wat", b"hello", limits()).unwrap(), b"hello");
    assert_eq!(
        run(&ex, "reverse.wat", b"hello", limits()).unwrap(),
        b"olleh"
    );
    assert_eq!(run(&ex, "echo.wat", b"", limits()).unwrap(), b"");
    let big = vec![7u8; 300_000];
    assert_eq!(run(&ex, "echo.wat", &big, limits()).unwrap(), big);
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let ex = executor();
    for _ in 0..3 {
        assert_eq!(run(&ex, "counter.wat", b"", limits()).unwrap(), [1, 1]);
    }
}

#[test]
fn wasi_guests_answer_and_report_exit_status() {
    let ex = executor();
    let input: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    assert_eq!(run(&ex, "wasi_echo.wat", &input, limits()).unwrap(), input);
    match run(&ex, "wasi_exit.wat", b"", limits()) {
        Err(GuestError::Exit { status: 3, stderr }) => assert!(stderr.contains("bad input")),
        other => panic!("expected exit status 3, got {other:?}"),
    }
}

#[test]
fn fuel_exhausted() {
    let ex = executor();
    let small_fuel = Limits {
        fuel: 100_000,
        ..limits()
    };
    let err = run(&ex, "infinite_loop.wat", b"", small_fuel).unwrap_err();
    assert_eq!(err, GuestError::FuelExhausted { fuel: 100_000 });
    assert_eq!(err.kind().as_str(), "fuel_exhausted");
}

/// The fuel used by a request.
fn fuel_used(executor: &Executor, name: &str, input: &[u8]) -> u64 {
    let module = prepare(executor, name);
    let request = Request {
        input: input.to_vec(),
        limits: limits(),
    };
    executor.run_blocking(&module, &request).unwrap().fuel_used
}

/// Fuel counts one point per operator run: exactly, in a loop without branches; never less, and
/// at most a few points per join of unequal paths more, in branchy code with calls.
#[test]
fn fuel_counts_the_operators_run() {
    let ex = executor();
    // spin.wat: 4,000,000 iterations of 6 operators, 12 around them, and 7 in wasmesh_alloc.
    assert_eq!(fuel_used(&ex, "spin.wat", b"x"), 24_000_019);
    let ran = 24_505;
    let charged = fuel_used(&ex, "fuel_paths.wat", b"");
    assert!(
        (ran..=ran + 8 * 1_000).contains(&charged),
        "charged {charged} for {ran} operators"
    );
    // A branch out of a function is charged like a return.
    let charged = fuel_used(&ex, "fuel_early_exit.wat", b"");
    assert!(
        charged >= 4_100,
        "charged {charged} for at least 4,100 operators"
    );
}

/// A module's start function runs metered, with fuel of its own, before the request's.
#[test]
fn a_start_function_runs_with_fuel_of_its_own() {
    let ex = executor();
    for _ in 0..2 {
        let out = run(&ex, "start_counts.wat", b"", limits()).unwrap();
        assert_eq!(out, 1_000i32.to_le_bytes());
    }
    assert_eq!(
        run(&ex, "start_spins.wat", b"", limits()),
        Err(GuestError::FuelExhausted { fuel: 1_000_000 })
    );
}

/// Bulk operations cost what they touch: one point per 4 bytes of memory and 8 per table
/// element, charged before they run, so a run of them stops at its fuel.
#[test]
fn bulk_operations_are_charged_for_what_they_touch() {
    let ex = executor();
    let one_fill = run_wat(&ex, &hostile::fill_bomb(16, 1), limits()).unwrap();
    let bytes = 16 * 65_536 / 4;
    assert!(
        (bytes..bytes + 100).contains(&one_fill.fuel_used),
        "{}",
        one_fill.fuel_used
    );
    let one_table_fill = run_wat(&ex, &hostile::table_fill_bomb(100_000, 1), limits()).unwrap();
    assert!(one_table_fill.fuel_used >= 800_000);
    let grows = run_wat(&ex, &hostile::grow_steps(1), limits()).unwrap();
    assert!(grows.fuel_used >= 1_000, "{}", grows.fuel_used);
    // 64 MiB fills cost 16M points each: 10M points of fuel stop the first.
    let ten_million = Limits {
        fuel: 10_000_000,
        ..limits()
    };
    for bomb in [
        hostile::fill_bomb(1024, 3_000),
        hostile::copy_bomb(1024, 3_000),
        hostile::init_bomb(64, 1 << 20, 3_000),
        hostile::table_fill_bomb(1 << 20, 3_000),
    ] {
        assert_eq!(
            run_wat(&ex, &bomb, ten_million).map(|o| o.fuel_used),
            Err(GuestError::FuelExhausted { fuel: 10_000_000 })
        );
    }
}

/// Host calls pay for the bytes they fill or copy, chunk by chunk: 1 MiB of randomness costs
/// 16M points, and a guest without them stops part way through.
#[test]
fn host_calls_pay_for_their_work() {
    let ex = executor();
    let once = run_wat(&ex, &hostile::random_bomb(16, 1), limits()).unwrap();
    assert!(once.fuel_used >= 16 << 20, "{}", once.fuel_used);
    let little = Limits {
        fuel: 1_000_000,
        ..limits()
    };
    assert_eq!(
        run_wat(&ex, &hostile::random_bomb(16, 1), little).map(|o| o.fuel_used),
        Err(GuestError::FuelExhausted { fuel: 1_000_000 })
    );
}

/// Whatever the shape of the code, a guest with all the fuel it could want stops at its
/// deadline: straight-line bulk operations, host calls over the whole memory, call chains
/// without loops, straight-line code.
#[test]
fn every_code_shape_stops_at_its_deadline() {
    let ex = executor();
    let tight = Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 100,
        ..limits()
    };
    for guest in hostile::suite() {
        let started = std::time::Instant::now();
        let result = run_wat(&ex, &guest.wat, tight).map(|o| o.fuel_used);
        println!("{}: {result:?} after {:?}", guest.what, started.elapsed());
        assert!(result.is_err(), "{}: {result:?}", guest.what);
        if !guest.name.starts_with("start") && !matches!(guest.name, "write-bomb" | "grow-steps") {
            assert_eq!(
                result,
                Err(GuestError::Timeout { timeout_ms: 100 }),
                "{}",
                guest.what
            );
        }
    }
}

/// A start function runs under the request's deadline: one that touches a fresh page of its
/// 64 MiB memory at every step, slow for the fuel it has of its own, is stopped at a 2 ms
/// deadline, and the request fails with a timeout rather than running its handler late.
#[test]
fn a_start_function_runs_under_the_deadline() {
    let ex = executor();
    let wat = r#"(module
      (memory (export "memory") 1024)
      (func $touch (local $at i32)
        (loop $pages
          (i32.store8 (local.get $at) (i32.const 1))
          (local.set $at (i32.and (i32.add (local.get $at) (i32.const 4160)) (i32.const 0x3ffffff)))
          (br $pages)))
      (start $touch)
      (func (export "wasmesh_alloc") (param i32) (result i32) (i32.const 0))
      (func (export "wasmesh_handle") (param i32 i32) (result i64) (i64.const 0)))"#;
    let two_ms = Limits {
        timeout_ms: 2,
        ..limits()
    };
    assert_eq!(
        run_wat(&ex, wat, two_ms).map(|o| o.fuel_used),
        Err(GuestError::Timeout { timeout_ms: 2 })
    );
}

/// Linear memory and tables share one cap: a table reserves its share of it up front, so the
/// memory cannot take all of the cap too.
#[test]
fn memory_and_tables_share_one_cap() {
    let ex = executor();
    // A table of 1M elements (8 MiB) and a memory that declares 60 of a 64 MiB cap.
    let both = r#"(module
      (memory (export "memory") 960)
      (table 1048576 1048576 funcref)
      (func (export "wasmesh_alloc") (param i32) (result i32) (i32.const 0))
      (func (export "wasmesh_handle") (param i32 i32) (result i64) (i64.const 0)))"#;
    match run_wat(&ex, both, limits()) {
        Err(GuestError::MemoryLimit { detail }) => {
            assert!(detail.contains("tables take 128"), "{detail}");
        }
        other => panic!("expected memory_limit, got {other:?}"),
    }
    // With the table within the cap, the memory may grow only to what is left.
    let grows = r#"(module
      (memory (export "memory") 1)
      (table 1048576 1048576 funcref)
      (func (export "wasmesh_alloc") (param i32) (result i32) (i32.const 0))
      (func (export "wasmesh_handle") (param i32 i32) (result i64)
        (i32.store (i32.const 0) (memory.grow (i32.const 895)))
        (i32.store (i32.const 4) (memory.grow (i32.const 1)))
        (i64.const 8)))"#;
    let out = run_wat(&ex, grows, limits()).unwrap().bytes;
    assert_eq!(out[..4], 1i32.to_le_bytes(), "the first growth fits");
    assert_eq!(out[4..], (-1i32).to_le_bytes(), "the next is past the cap");
}

#[test]
fn timeout_stops_a_guest_with_plenty_of_fuel() {
    let ex = executor();
    let long = Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 200,
        ..limits()
    };
    assert_eq!(
        run(&ex, "infinite_loop.wat", b"", long),
        Err(GuestError::Timeout { timeout_ms: 200 })
    );
}

#[test]
fn trap_reports_its_code() {
    let ex = executor();
    match run(&ex, "trap.wat", b"", limits()) {
        Err(GuestError::Trap { detail }) => assert!(detail.contains("unreachable"), "{detail}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_trapping_guest_keeps_what_it_wrote_to_stderr() {
    let ex = executor();
    let error = run(&ex, "wasi_trap_stderr.wat", b"", limits()).unwrap_err();
    assert_eq!(error.kind().as_str(), "trap");
    let message = error.to_string();
    assert!(
        message.contains("unreachable") && message.contains("guest says: bad input"),
        "{message}"
    );
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let ex = executor();
    let two_mib = Limits {
        memory_pages: 32,
        ..limits()
    };
    match run(&ex, "memory_bomb.wat", b"", two_mib) {
        Err(GuestError::MemoryLimit { detail }) => assert!(detail.contains("32 pages"), "{detail}"),
        other => panic!("expected memory_limit, got {other:?}"),
    }
    // The echo guest grows its memory for a large input: refused at the cap, so it fails there.
    let one_page = Limits {
        memory_pages: 1,
        ..limits()
    };
    assert!(matches!(
        run(&ex, "echo.wat", &vec![0u8; 100_000], one_page),
        Err(GuestError::MemoryLimit { .. })
    ));
}

/// A table counts against the memory cap too: growing one by 2^26 elements four times under a
/// 16 MiB cap fails each time (the guest sees -1, as the spec allows), while a small growth
/// within the cap succeeds, and the host never allocates the 2 GiB the guest asked for.
#[test]
fn table_growth_stops_at_the_memory_cap() {
    let ex = executor();
    // Growth is charged per element asked for (8 points each): fuel enough to ask.
    let sixteen_mib = Limits {
        memory_pages: 256,
        fuel: Limits::MAX_FUEL,
        ..limits()
    };
    let started = std::time::Instant::now();
    let out = run(&ex, "table_bomb.wat", b"", sixteen_mib).unwrap();
    let results: Vec<i32> = out
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(results, [-1, -1, -1, -1, 0]);
    println!("table bomb refused in {:?}", started.elapsed());
}

/// A host call's work is bounded by what the request may still keep, not by what the guest
/// asks it to copy: twenty writes of 4 GiB each to stderr end well within a 300 ms deadline,
/// keeping the stderr cap.
#[test]
fn host_calls_do_no_unbounded_work() {
    let ex = executor();
    let tight = Limits {
        timeout_ms: 300,
        ..limits()
    };
    let module = prepare(&ex, "wasi_write_flood.wat");
    let started = std::time::Instant::now();
    let output = ex
        .run_blocking(
            &module,
            &Request {
                input: Vec::new(),
                limits: tight,
            },
        )
        .expect("the writes end within the deadline");
    println!("80 GiB of stderr writes refused in {:?}", started.elapsed());
    assert!(output.stderr.len() <= STDERR_CAP);
}

/// Guests see clocks with a resolution of 1 ms.
#[test]
fn clocks_are_coarse() {
    let ex = executor();
    let out = run(&ex, "wasi_clock.wat", b"", limits()).unwrap();
    let realtime = u64::from_le_bytes(out[..8].try_into().unwrap());
    let monotonic = u64::from_le_bytes(out[8..16].try_into().unwrap());
    assert!(realtime > 0);
    assert_eq!(realtime % 1_000_000, 0, "{realtime}");
    assert_eq!(monotonic % 1_000_000, 0, "{monotonic}");
}

/// `poll_oneoff` on a clock sleeps for its timeout, reports the clock's event, and never sleeps
/// past the request's deadline.
#[test]
fn a_guest_sleeps_on_a_clock_until_it_is_due_but_not_past_its_deadline() {
    let ex = executor();
    let started = std::time::Instant::now();
    let out = run(&ex, "wasi_sleep.wat", b"", limits()).unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(30),
        "woke after {:?}",
        started.elapsed()
    );
    assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 0x51EE9);
    assert_eq!(u16::from_le_bytes([out[8], out[9]]), 0, "errno");
    assert_eq!(out[10], 0, "event type clock");
    assert_eq!(u32::from_le_bytes(out[16..20].try_into().unwrap()), 1);

    let short = Limits {
        timeout_ms: 10,
        ..limits()
    };
    assert_eq!(
        run(&ex, "wasi_sleep.wat", b"", short).unwrap_err(),
        GuestError::Timeout { timeout_ms: 10 }
    );
}

/// Stdio is always ready: a poll on stdin, stdout and a long clock returns at once with the
/// two stdio events.
#[test]
fn polling_stdio_answers_at_once() {
    let ex = executor();
    let out = run(&ex, "wasi_poll_stdio.wat", b"hello", limits()).unwrap();
    assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 2);
    let event = |n: usize| &out[4 + 32 * n..4 + 32 * (n + 1)];
    let (read, write) = (event(0), event(1));
    assert_eq!(read[0], 2, "userdata of the stdin subscription");
    assert_eq!(read[10], 1, "fd_read");
    assert_eq!(u16::from_le_bytes([read[8], read[9]]), 0, "errno");
    assert_eq!(u64::from_le_bytes(read[16..24].try_into().unwrap()), 5);
    assert_eq!(write[0], 3, "userdata of the stdout subscription");
    assert_eq!(write[10], 2, "fd_write");
    assert_eq!(u16::from_le_bytes([write[8], write[9]]), 0, "errno");
}

#[test]
fn huge_declared_memory_is_refused_before_instantiation() {
    let ex = executor();
    match run(&ex, "huge_memory.wat", b"", limits()) {
        Err(GuestError::MemoryLimit { detail }) => assert!(detail.contains("60000"), "{detail}"),
        other => panic!("expected memory_limit, got {other:?}"),
    }
}

#[test]
fn output_is_bounded_and_must_lie_in_memory() {
    let ex = executor();
    let small_output = Limits {
        max_output: 5,
        ..limits()
    };
    for guest in ["echo.wat", "wasi_echo.wat"] {
        assert!(
            matches!(
                run(&ex, guest, b"0123456789", small_output),
                Err(GuestError::BadOutput { .. })
            ),
            "{guest}"
        );
    }
    match run(&ex, "out_of_bounds.wat", b"", limits()) {
        Err(GuestError::BadOutput { detail }) => assert!(detail.contains("outside"), "{detail}"),
        other => panic!("expected bad_output, got {other:?}"),
    }
}

#[test]
fn input_over_the_limit_is_refused() {
    let ex = executor();
    let small_input = Limits {
        max_input: 4,
        ..limits()
    };
    assert_eq!(
        run(&ex, "echo.wat", b"12345", small_input),
        Err(GuestError::InputTooLarge { size: 5, limit: 4 })
    );
}

#[test]
fn unsupported_imports_are_named_and_garbage_is_invalid() {
    let ex = executor();
    for (name, import) in [
        ("unknown_import.wat", "env.open_socket"),
        ("wasix_import.wat", "wasix_32v1.sock_open"),
    ] {
        let wasm = fixture(name);
        let err = ex.prepare(ContentHash::of(&wasm), name, &wasm).unwrap_err();
        assert_eq!(err.kind().as_str(), "unsupported_import");
        assert!(err.to_string().contains(import), "{err}");
    }
    let err = ex
        .prepare(ContentHash::of(b"garbage"), "garbage", b"garbage")
        .unwrap_err();
    assert_eq!(err.kind().as_str(), "invalid_module");
}

fn artifact_files(dir: &Path, hash: &ContentHash) -> (PathBuf, PathBuf) {
    let fingerprint = executor().fingerprint();
    (
        dir.join(format!("{hash}-{fingerprint}.bin")),
        dir.join(format!("{hash}-{fingerprint}.digest")),
    )
}

fn with_artifacts(dir: &Path) -> Executor {
    Executor::new(ExecutorConfig {
        artifact_dir: Some(dir.to_owned()),
        ..ExecutorConfig::default()
    })
    .unwrap()
}

#[test]
fn artifacts_are_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("reverse.wat");
    let hash = ContentHash::of(&wasm);
    let (_, first) = with_artifacts(dir.path())
        .prepare(hash, "reverse", &wasm)
        .unwrap();
    assert_eq!(first, Prepared::Compiled);
    let restarted = with_artifacts(dir.path());
    let (module, second) = restarted.prepare(hash, "reverse", &wasm).unwrap();
    assert_eq!(second, Prepared::Artifact);
    let out = run_module(&restarted, &module, b"abc", limits()).unwrap();
    assert_eq!(out, b"cba");
    assert_eq!(
        restarted.prepare(hash, "reverse", &wasm).unwrap().1,
        Prepared::Memory
    );
}

#[test]
fn a_tampered_artifact_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("reverse.wat");
    let hash = ContentHash::of(&wasm);
    with_artifacts(dir.path())
        .prepare(hash, "reverse", &wasm)
        .unwrap();
    let (artifact, _) = artifact_files(dir.path(), &hash);
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();

    let (module, source) = with_artifacts(dir.path())
        .prepare(hash, "reverse", &wasm)
        .unwrap();
    assert_eq!(source, Prepared::Compiled);
    let ex = with_artifacts(dir.path());
    let out = run_module(&ex, &module, b"xyz", limits()).unwrap();
    assert_eq!(out, b"zyx");
    // The recompiled artifact replaced the tampered one and loads again.
    assert_eq!(
        ex.prepare(hash, "reverse", &wasm).unwrap().1,
        Prepared::Artifact
    );
}

#[test]
fn a_foreign_artifact_is_recompiled_not_loaded() {
    // Another module's artifact, placed under this module's name without this node's digest.
    let dir = tempfile::tempdir().unwrap();
    let echo = fixture("echo.wat");
    let reverse = fixture("reverse.wat");
    with_artifacts(dir.path())
        .prepare(ContentHash::of(&echo), "echo", &echo)
        .unwrap();
    let (echo_artifact, _) = artifact_files(dir.path(), &ContentHash::of(&echo));
    let (reverse_artifact, reverse_digest) = artifact_files(dir.path(), &ContentHash::of(&reverse));
    std::fs::copy(&echo_artifact, &reverse_artifact).unwrap();
    assert!(!reverse_digest.exists());

    let ex = with_artifacts(dir.path());
    let (module, source) = ex
        .prepare(ContentHash::of(&reverse), "reverse", &reverse)
        .unwrap();
    assert_eq!(source, Prepared::Compiled);
    let out = run_module(&ex, &module, b"abc", limits()).unwrap();
    assert_eq!(out, b"cba", "the foreign (echo) artifact was loaded");
}

/// Artifacts an engine of another fingerprint wrote (before an upgrade) are never loaded: they
/// are removed when the cache opens, and no longer take disk.
#[test]
fn artifacts_of_another_engine_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(format!(
        "{}-0123456789abcdef.bin",
        ContentHash::of(b"old module")
    ));
    std::fs::write(&stale, b"machine code of an older engine").unwrap();
    let echo = fixture("echo.wat");
    with_artifacts(dir.path())
        .prepare(ContentHash::of(&echo), "echo", &echo)
        .unwrap();
    assert!(!stale.exists(), "a foreign artifact stayed");
    let (ours, _) = artifact_files(dir.path(), &ContentHash::of(&echo));
    assert!(ours.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_do_not_stop_a_well_behaved_request() {
    let ex = executor();
    let looping = prepare(&ex, "infinite_loop.wat");
    let bomb = prepare(&ex, "memory_bomb.wat");
    let echo = prepare(&ex, "echo.wat");
    // Hostile guests get generous limits: all the fuel there is and a 5 s deadline.
    let hostile = Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 5_000,
        memory_pages: 1024,
        ..limits()
    };
    let mut attacks = Vec::new();
    for i in 0..64 {
        let module = if i % 2 == 0 {
            looping.clone()
        } else {
            bomb.clone()
        };
        let ex = ex.clone();
        attacks.push(tokio::spawn(async move {
            ex.run(
                module,
                Request {
                    input: Vec::new(),
                    limits: hostile,
                },
            )
            .await
        }));
    }
    tokio::task::yield_now().await;
    let answer = ex
        .run(
            echo,
            Request {
                input: b"still here".to_vec(),
                limits: limits(),
            },
        )
        .await
        .expect("the well-behaved request completes");
    assert_eq!(answer.bytes, b"still here");
    for attack in attacks {
        let outcome = attack.await.unwrap();
        assert!(
            matches!(
                outcome,
                Err(GuestError::Timeout { .. }
                    | GuestError::MemoryLimit { .. }
                    | GuestError::Busy { .. })
            ),
            "{outcome:?}"
        );
    }
}

/// Runs `module` `rounds` times from each of `clients` tasks at once; returns every answer.
async fn run_concurrently(
    ex: &Executor,
    module: &Arc<CompiledModule>,
    input: &[u8],
    clients: usize,
    rounds: usize,
) -> Vec<Vec<u8>> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (ex, module, input) = (ex.clone(), module.clone(), input.to_vec());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..rounds {
                    let request = Request {
                        input: input.clone(),
                        limits: limits(),
                    };
                    answers.push(ex.run(module.clone(), request).await.unwrap().bytes);
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    answers
}

/// Pooled memories, inline runs and concurrency change nothing a guest can see: a guest that
/// counts in a global and in memory always reads its initial values, and one that dirties its
/// whole (grown) memory never finds a dirty byte, whether its memory is cleared by `memset`
/// (small) or given back to the kernel (large).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_fresh_instance_under_concurrency() {
    let ex = executor();
    let counter = prepare(&ex, "counter.wat");
    for answer in run_concurrently(&ex, &counter, b"", 16, 20).await {
        assert_eq!(answer, [1, 1]);
    }
    let scribble = prepare(&ex, "scribble.wat");
    for grow_pages in [0u8, 3, 15] {
        for answer in run_concurrently(&ex, &scribble, &[grow_pages], 8, 10).await {
            assert_eq!(
                answer,
                [1],
                "a request found memory dirty (grown by {grow_pages})"
            );
        }
    }
}

/// A guest that sleeps is never run on an async worker: its request moves to a guest thread
/// and sleeps there, and concurrent sleepers all answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_guest_sleeps_on_a_guest_thread() {
    let ex = executor();
    let sleep = prepare(&ex, "wasi_sleep.wat");
    for answer in run_concurrently(&ex, &sleep, b"", 4, 2).await {
        assert_eq!(u64::from_le_bytes(answer[..8].try_into().unwrap()), 0x51EE9);
    }
}

/// A request over the inline budget (about a millisecond of guest code) runs again on a
/// guest thread with its own limits, and answers as if it had run there from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_inline_budget_runs_with_its_own_limits() {
    let ex = executor();
    // About 8 million operations: far over the inline budget, well within the request's fuel.
    let spin = prepare(&ex, "spin.wat");
    for answer in run_concurrently(&ex, &spin, b"spun", 4, 3).await {
        assert_eq!(answer, b"spun");
    }
    // A request whose own fuel is the lower limit still fails for its own reason.
    let small = Request {
        input: Vec::new(),
        limits: Limits {
            fuel: 10_000,
            ..limits()
        },
    };
    let looping = prepare(&ex, "infinite_loop.wat");
    assert_eq!(
        ex.run(looping, small).await.unwrap_err(),
        GuestError::FuelExhausted { fuel: 10_000 }
    );
}
