//! Fuel metering on modules of arbitrary shape: wasm-smith builds a valid WASI command (a
//! `_start` and a memory, no imports) from the fuzz input, with the Wasm features a node accepts;
//! the executor compiles it with the metering middleware and runs it under a small fuel grant.
//! Every run ends by itself, its fuel or a trap, long before its deadline: a deadline would mean
//! some control flow escaped metering (only the watchdog stopped it). Nothing panics.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use wasmesh_node::executor::{Executor, ExecutorConfig, GuestError, Request};
use wasmesh_protocol::{ContentHash, Limits};

/// Enough for any loop of a small module to run a while, and far from the deadline.
const FUEL: u64 = 2_000_000;
const TIMEOUT_MS: u32 = 5_000;

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
        max_memory32_bytes: 4 * 65_536,
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
            memory_pages: 4,
            timeout_ms: TIMEOUT_MS,
            ..Limits::default()
        },
    };
    match executor.run_blocking(&compiled, &request) {
        Err(GuestError::Timeout { .. }) => panic!("a guest ran to its deadline: metering missed it"),
        Ok(output) => assert!(output.fuel_used <= FUEL),
        Err(_) => {}
    }
});
