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
#![no_main]

use std::sync::{Arc, OnceLock};

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
