//! Properties of fuel metering on straight-line runs of bulk operations of random kinds and
//! sizes (`memory.fill`, `memory.copy`, `memory.init`, `table.fill`, `table.copy`,
//! `table.init`, `table.grow`, `memory.grow`), with no loop or call between them:
//!
//! - a run that ends well was charged at least what its operations touched (one point per 4
//!   bytes, 8 per table element), and never more than its fuel: a run whose operations cost
//!   more than its fuel never ends well;
//! - with all the fuel it could want, a run repeated a thousand times ends within 250 ms of a
//!   20 ms deadline, and if it answers, it was charged for all it touched.
//!
//! The fuzz target `metered_guests` drives the same generator with inputs of its own.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use wasmesh_node::executor::{CompiledModule, Executor, ExecutorConfig, GuestError, Request};
use wasmesh_protocol::{ContentHash, Limits};

#[path = "support/bulk.rs"]
mod bulk;

use bulk::{Bulk, PAGES, SEGMENT, TABLE, module};

fn bulk() -> impl Strategy<Value = Bulk> {
    let bytes = PAGES * 65_536;
    prop_oneof![
        (0..bytes, 0..=bytes).prop_map(|(at, len)| Bulk::Fill { at, len }),
        (0..bytes, 0..bytes, 0..=bytes).prop_map(|(to, from, len)| Bulk::Copy { to, from, len }),
        (0..bytes, 0..SEGMENT, 0..=SEGMENT).prop_map(|(at, offset, len)| Bulk::Init {
            at,
            offset,
            len
        }),
        (0..TABLE, 0..=TABLE).prop_map(|(at, len)| Bulk::TableFill { at, len }),
        (0..TABLE, 0..TABLE, 0..=TABLE).prop_map(|(to, from, len)| Bulk::TableCopy {
            to,
            from,
            len
        }),
        (0..TABLE, 0..=4_096u32).prop_map(|(at, len)| Bulk::TableInit { at, len }),
        (0..=TABLE).prop_map(|len| Bulk::TableGrow { len }),
        (0..=64u32).prop_map(|pages| Bulk::MemoryGrow { pages }),
    ]
}

fn executor() -> &'static Executor {
    static EXECUTOR: OnceLock<Executor> = OnceLock::new();
    EXECUTOR.get_or_init(|| Executor::new(ExecutorConfig::default()).expect("executor"))
}

fn prepare(wasm: &[u8]) -> Arc<CompiledModule> {
    executor()
        .prepare(ContentHash::of(wasm), "bulk", wasm)
        .expect("compiles")
        .0
}

fn run(module: &CompiledModule, limits: Limits) -> Result<u64, GuestError> {
    executor()
        .run_blocking(
            module,
            &Request {
                input: Vec::new(),
                limits,
            },
        )
        .map(|output| output.fuel_used)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_run_is_charged_at_least_what_it_touched(
        ops in prop::collection::vec(bulk(), 1..24),
        fuel in 1_000u64..4_000_000,
    ) {
        let least: u64 = ops.iter().map(Bulk::cost).sum();
        let limits = Limits { fuel, memory_pages: 256, ..Limits::default() };
        match run(&prepare(&module(&ops, 1)), limits) {
            Ok(used) => {
                prop_assert!(used >= least, "charged {used} for {least}");
                prop_assert!(used <= fuel);
            }
            Err(error) => prop_assert!(
                !matches!(error, GuestError::Timeout { .. }),
                "only the deadline stopped it: {error:?}"
            ),
        }
    }

    #[test]
    fn a_run_with_all_the_fuel_it_wants_stops_at_its_deadline(
        ops in prop::collection::vec(bulk(), 1..12),
    ) {
        let limits = Limits {
            fuel: Limits::MAX_FUEL,
            timeout_ms: 20,
            memory_pages: 256,
            ..Limits::default()
        };
        let compiled = prepare(&module(&ops, 1_000));
        let started = Instant::now();
        let result = run(&compiled, limits);
        let took = started.elapsed();
        // Deadline plus 250 ms; generous for a loaded machine.
        prop_assert!(took < Duration::from_millis(270), "took {took:?}: {result:?}");
        if let Ok(used) = result {
            let least: u64 = ops.iter().map(Bulk::cost).sum::<u64>() * 1_000;
            prop_assert!(used >= least, "answered, charged {used} for {least}");
        }
    }
}
