//! Fuel metering on modules of arbitrary shape: wasm-smith builds a valid WASI command (a
//! `_start` and a memory, no imports) from the fuzz input, with the Wasm features a node accepts;
//! the executor compiles it with the node's metering middleware and runs it under a small fuel
//! grant.
//!
//! - Every run ends by itself, its fuel or a trap, long before its deadline: a deadline would
//!   mean some control flow escaped metering (only the watchdog stopped it).
//! - A run that ends well is charged at least the operators it ran: the same module under plain
//!   wasmer with wasmer's own metering middleware (one point per operator, exactly) is the
//!   reference.
//! - Nothing panics.
//!
//! The same input also makes a straight-line run of bulk operations (`memory.fill`,
//! `memory.copy`, `memory.init`, the `table.*` operations, `memory.grow`) of arbitrary sizes,
//! with no loop or call between them (`node/tests/support/bulk.rs`):
//! - run once with the small fuel grant, an answer means it was charged at least what the
//!   operations touched (one point per 4 bytes, 8 per table element);
//! - repeated 200 times with all the fuel it could want and a 20 ms deadline, it ends within
//!   250 ms of the deadline.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder};
use wasmer::wasmparser::Operator;
use wasmer::{Instance, Module, Store, imports};
use wasmer_middlewares::Metering;
use wasmer_middlewares::metering::{MeteringPoints, get_remaining_points, set_remaining_points};
use wasmesh_node::executor::{Executor, ExecutorConfig, GuestError, Request};
use wasmesh_protocol::{ContentHash, Limits};

/// Enough for any loop of a small module to run a while, and far from the deadline.
const FUEL: u64 = 2_000_000;
const TIMEOUT_MS: u32 = 5_000;
/// The memory cap, in pages; generated memories declare no more.
const PAGES: u32 = 4;

fn executor() -> &'static Executor {
    static EXECUTOR: OnceLock<Executor> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        Executor::new(ExecutorConfig {
            max_concurrent: 1,
            ..ExecutorConfig::default()
        })
        .expect("executor")
    })
}

fn config() -> wasm_smith::Config {
    let exports = wat::parse_str(r#"(module (memory (export "memory") 1 4) (func (export "_start")))"#)
        .expect("valid WAT");
    wasm_smith::Config {
        exports: Some(exports),
        max_imports: 0,
        max_memories: 1,
        max_memory32_bytes: u64::from(PAGES) * 65_536,
        // Growth stops at the same size in both runtimes, so both take the same paths.
        memory_max_size_required: true,
        table_max_size_required: true,
        max_table_elements: 1_000,
        memory64_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        relaxed_simd_enabled: false,
        tail_call_enabled: false,
        threads_enabled: false,
        extended_const_enabled: false,
        wide_arithmetic_enabled: false,
        ..wasm_smith::Config::default()
    }
}

#[path = "../../node/tests/support/bulk.rs"]
mod bulk;

use bulk::Bulk;

/// A straight-line run of bulk operations from the fuzz input.
fn bulk_run(u: &mut Unstructured) -> arbitrary::Result<Vec<Bulk>> {
    let bytes = bulk::PAGES * 65_536;
    let count = u.int_in_range(1..=16)?;
    (0..count)
        .map(|_| {
            Ok(match u.int_in_range(0..=7)? {
                0 => Bulk::Fill {
                    at: u.int_in_range(0..=bytes)?,
                    len: u.int_in_range(0..=bytes)?,
                },
                1 => Bulk::Copy {
                    to: u.int_in_range(0..=bytes)?,
                    from: u.int_in_range(0..=bytes)?,
                    len: u.int_in_range(0..=bytes)?,
                },
                2 => Bulk::Init {
                    at: u.int_in_range(0..=bytes)?,
                    offset: u.int_in_range(0..=bulk::SEGMENT)?,
                    len: u.int_in_range(0..=bulk::SEGMENT)?,
                },
                3 => Bulk::TableFill {
                    at: u.int_in_range(0..=bulk::TABLE)?,
                    len: u.int_in_range(0..=bulk::TABLE)?,
                },
                4 => Bulk::TableCopy {
                    to: u.int_in_range(0..=bulk::TABLE)?,
                    from: u.int_in_range(0..=bulk::TABLE)?,
                    len: u.int_in_range(0..=bulk::TABLE)?,
                },
                5 => Bulk::TableInit {
                    at: u.int_in_range(0..=bulk::TABLE)?,
                    len: u.int_in_range(0..=4_096)?,
                },
                6 => Bulk::TableGrow {
                    len: u.int_in_range(0..=bulk::TABLE)?,
                },
                _ => Bulk::MemoryGrow {
                    pages: u.int_in_range(0..=64)?,
                },
            })
        })
        .collect()
}

/// Checks the bulk-operation properties on the run `ops`.
fn check_bulk_run(executor: &Executor, ops: &[Bulk]) {
    let run = |repeat: usize, limits: Limits| {
        let wasm = bulk::module(ops, repeat);
        let (compiled, _) = executor
            .prepare(ContentHash::of(&wasm), "bulk", &wasm)
            .expect("a bulk run compiles");
        let request = Request {
            input: Vec::new(),
            limits,
        };
        let started = Instant::now();
        let result = executor.run_blocking(&compiled, &request);
        (result, started.elapsed())
    };
    let least: u64 = ops.iter().map(Bulk::cost).sum();
    let small = Limits {
        fuel: FUEL,
        memory_pages: 256,
        ..Limits::default()
    };
    if let (Ok(output), _) = run(1, small) {
        assert!(output.fuel_used >= least, "charged {} for {least}", output.fuel_used);
    }
    let unbounded = Limits {
        fuel: Limits::MAX_FUEL,
        timeout_ms: 20,
        memory_pages: 256,
        ..Limits::default()
    };
    let (result, took) = run(200, unbounded);
    assert!(
        took < Duration::from_millis(270),
        "a bulk run took {took:?} under a 20 ms deadline: {result:?}"
    );
}

/// The operators `_start` runs, counted by wasmer's metering middleware; `None` unless it ends
/// well within `FUEL`.
fn operators_run(wasm: &[u8]) -> Option<u64> {
    let cost: fn(&Operator) -> u64 = |_| 1;
    let mut compiler = Cranelift::default();
    compiler.push_middleware(Arc::new(Metering::new(FUEL, cost)));
    let mut store = Store::new(EngineBuilder::new(compiler));
    let module = Module::new(&store, wasm).ok()?;
    let instance = Instance::new(&mut store, &module, &imports! {}).ok()?;
    set_remaining_points(&mut store, &instance, FUEL);
    let start = instance.exports.get_function("_start").ok()?;
    start.call(&mut store, &[]).ok()?;
    match get_remaining_points(&mut store, &instance) {
        MeteringPoints::Remaining(left) => Some(FUEL - left),
        MeteringPoints::Exhausted => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = bulk_run(&mut Unstructured::new(data)) {
        check_bulk_run(executor(), &ops);
    }
    let Ok(module) = wasm_smith::Module::new(config(), &mut Unstructured::new(data)) else {
        return;
    };
    let wasm = module.to_bytes();
    let executor = executor();
    // A module outside the accepted features is refused before compiling: nothing to run.
    let Ok((compiled, _)) = executor.prepare(ContentHash::of(&wasm), "smith", &wasm) else {
        return;
    };
    let request = Request {
        input: Vec::new(),
        limits: Limits {
            fuel: FUEL,
            memory_pages: PAGES,
            timeout_ms: TIMEOUT_MS,
            ..Limits::default()
        },
    };
    match executor.run_blocking(&compiled, &request) {
        Err(GuestError::Timeout { .. }) => panic!("a guest ran to its deadline: metering missed it"),
        Ok(output) => {
            assert!(output.fuel_used <= FUEL);
            if let Some(ran) = operators_run(&wasm) {
                assert!(
                    output.fuel_used >= ran,
                    "charged {} for {ran} operators run",
                    output.fuel_used
                );
            }
        }
        Err(_) => {}
    }
});
