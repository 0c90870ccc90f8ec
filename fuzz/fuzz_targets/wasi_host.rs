//! The WASI host functions, called by a real guest (`guests/wasi_calls.wat`) with arguments and
//! memory contents from the fuzz input, through the executor as a request runs them. Every run
//! ends, with an answer or a typed failure, within its limits: no panic, output and stderr
//! within their caps.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmesh_node::executor::{CompiledModule, Executor, ExecutorConfig, Request, STDERR_CAP};
use wasmesh_protocol::{ContentHash, Limits};

const MAX_OUTPUT: u32 = 4096;

fn harness() -> &'static (Executor, std::sync::Arc<CompiledModule>) {
    static HARNESS: OnceLock<(Executor, std::sync::Arc<CompiledModule>)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let executor = Executor::new(ExecutorConfig {
            max_concurrent: 1,
            ..ExecutorConfig::default()
        })
        .expect("executor");
        let wasm = wat::parse_str(include_str!("../guests/wasi_calls.wat")).expect("valid WAT");
        let (module, _) = executor
            .prepare(ContentHash::of(&wasm), "wasi-calls", &wasm)
            .expect("the harness guest compiles");
        (executor, module)
    })
}

fuzz_target!(|data: &[u8]| {
    let (executor, module) = harness();
    let request = Request {
        input: data.to_vec(),
        limits: Limits {
            fuel: 10_000_000,
            memory_pages: 4,
            timeout_ms: 2_000,
            max_input: 1 << 20,
            max_output: MAX_OUTPUT,
        },
    };
    match executor.run_blocking(module, &request) {
        Ok(output) => {
            assert!(output.bytes.len() <= MAX_OUTPUT as usize);
            assert!(output.stderr.len() <= STDERR_CAP);
        }
        Err(failure) => {
            // Typed, with a kind from the fixed set.
            assert!(wasmesh_node::executor::FailureKind::ALL.contains(&failure.kind()));
        }
    }
});
