//! One request: a fresh store and instance, the ABI call, and the classification of how it ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmer::{FunctionEnv, Imports, Instance, InstantiationError, RuntimeError, Store};
use wasmesh_protocol::{Abi, Limits};

use super::error::{CallFailure, STDERR_IN_ERRORS, with_stderr};
use super::fuel_cell::FuelCell;
use super::metering::START_FUEL;
use super::sandbox::{InstantiationScope, MemoryBudget};
use super::wasi::{self, WaitStopped, WasiExit, WasiState};
use super::watchdog::{Watch, Watcher};
use super::{CompiledModule, GuestError, Output, raw_abi};

/// How a run did not produce output.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The guest failed, or broke a limit.
    Guest(GuestError),
    /// A run that may not wait (an inline one) has a guest that asked to: run it again where it
    /// may.
    WaitRefused,
}

impl From<GuestError> for Stop {
    fn from(error: GuestError) -> Self {
        Stop::Guest(error)
    }
}

impl Stop {
    /// The guest's error, for a run that was allowed to wait (so was never refused).
    pub(crate) fn into_guest_error(self) -> GuestError {
        match self {
            Stop::Guest(error) => error,
            Stop::WaitRefused => GuestError::Trap {
                detail: WaitStopped::Refused.to_string(),
            },
        }
    }
}

/// Runs one request to completion on the calling thread; a WASI guest may sleep on it (in
/// `poll_oneoff`) only if `may_wait`. Whatever the guest does, a run that ends after `deadline`
/// is a timeout: its output is discarded.
pub(crate) fn execute(
    watcher: &Watcher,
    module: &CompiledModule,
    input: &[u8],
    limits: &Limits,
    deadline: Instant,
    may_wait: bool,
) -> Result<Output, Stop> {
    if input.len() > limits.max_input as usize {
        return Err(GuestError::InputTooLarge {
            size: input.len(),
            limit: limits.max_input,
        }
        .into());
    }
    if Instant::now() >= deadline {
        return Err(GuestError::Timeout {
            timeout_ms: u64::from(limits.timeout_ms),
        }
        .into());
    }
    let budget = memory_budget(module, limits)?;

    let started = Instant::now();
    let mut store = Store::new(module.engine.clone());
    let growth_refused = Arc::new(AtomicBool::new(false));
    let wasi_env = match module.info.abi {
        Abi::Raw => None,
        Abi::Wasi => Some(FunctionEnv::new(
            &mut store,
            WasiState::new(
                input.to_vec(),
                limits.max_output,
                &module.name,
                deadline,
                may_wait,
            ),
        )),
    };
    let setup = Setup {
        module,
        budget,
        growth_refused: &growth_refused,
        watcher,
        deadline,
        timeout_ms: limits.timeout_ms,
    };
    let (instance, fuel_cell, watch) = setup.instantiate(&mut store, wasi_env.as_ref())?;
    // SAFETY (here and below): `store` lives until the end of this function, after `watch`.
    unsafe { fuel_cell.set(limits.fuel) };

    let result = match &wasi_env {
        None => raw_abi::call(&mut store, &instance, input, limits.max_output),
        Some(env) => run_wasi(&mut store, env, &instance, fuel_cell),
    };
    // Past the deadline nothing the guest made counts, however it ended.
    let timed_out = watch.fired() || Instant::now() >= deadline;
    drop(watch);

    let fuel_left = unsafe { fuel_cell.remaining() };
    let stderr = wasi_env
        .as_ref()
        .map(|env| env.as_ref(&store).stderr.clone())
        .unwrap_or_default();
    let ended = Ended {
        timed_out,
        fuel_exhausted: fuel_left.is_none(),
        growth_refused: growth_refused.load(Ordering::Relaxed),
    };
    let bytes = ended.outcome(result, limits, &stderr)?;
    Ok(Output {
        bytes,
        stderr,
        fuel_used: limits.fuel - fuel_left.unwrap_or(0),
        exec_time: started.elapsed(),
    })
}

/// How a run's call ended, beside its result.
struct Ended {
    /// The deadline passed (the watchdog fired, or the call returned after it).
    timed_out: bool,
    /// The fuel counter went negative.
    fuel_exhausted: bool,
    /// The guest's memory growth was refused at the cap.
    growth_refused: bool,
}

impl Ended {
    /// The answer, or what stopped the guest; past the deadline nothing the guest made counts,
    /// however it ended.
    fn outcome(
        &self,
        result: Result<Vec<u8>, CallFailure>,
        limits: &Limits,
        stderr: &[u8],
    ) -> Result<Vec<u8>, Stop> {
        let timeout = || GuestError::Timeout {
            timeout_ms: u64::from(limits.timeout_ms),
        };
        let stopped = |error: &RuntimeError| error.downcast_ref::<WaitStopped>().copied();
        match result {
            Err(CallFailure::Runtime(error)) if stopped(&error) == Some(WaitStopped::Refused) => {
                Err(Stop::WaitRefused)
            }
            _ if self.timed_out => Err(timeout().into()),
            Ok(bytes) => Ok(bytes),
            Err(CallFailure::Runtime(error))
                if stopped(&error) == Some(WaitStopped::PastDeadline) =>
            {
                Err(timeout().into())
            }
            Err(CallFailure::Guest(error)) => Err(error.into()),
            Err(CallFailure::Runtime(error)) => Err(classify(
                error,
                self.fuel_exhausted,
                self.growth_refused,
                limits,
                stderr,
            )
            .into()),
        }
    }
}

/// How the request's memory cap is shared between the module's tables and its memory; refused
/// before anything is created if the declared minimums do not fit.
fn memory_budget(module: &CompiledModule, limits: &Limits) -> Result<MemoryBudget, GuestError> {
    let budget =
        MemoryBudget::for_tables(limits.memory_pages, module.module.info().tables.values())
            .map_err(|detail| GuestError::MemoryLimit { detail })?;
    if module.info.memory_min_pages > u64::from(budget.memory_pages) {
        let tables = limits.memory_pages - budget.memory_pages;
        return Err(GuestError::MemoryLimit {
            detail: format!(
                "the module declares {} pages of memory; the cap is {}{}",
                module.info.memory_min_pages,
                limits.memory_pages,
                match tables {
                    0 => String::new(),
                    pages => format!(", of which its tables take {pages}"),
                }
            ),
        });
    }
    Ok(budget)
}

/// What creating one request's instance needs.
struct Setup<'a> {
    module: &'a CompiledModule,
    budget: MemoryBudget,
    growth_refused: &'a Arc<AtomicBool>,
    watcher: &'a Watcher,
    deadline: Instant,
    timeout_ms: u32,
}

impl Setup<'_> {
    /// Creates the instance (running the module's start function, under the request's
    /// deadline): the instance, its fuel counter, and its watchdog registration, which must be
    /// dropped before `store`.
    fn instantiate(
        &self,
        store: &mut Store,
        wasi_env: Option<&FunctionEnv<WasiState>>,
    ) -> Result<(Instance, FuelCell, Watch), GuestError> {
        let scope = InstantiationScope::enter(
            self.budget,
            self.growth_refused.clone(),
            self.watcher.clone(),
            self.deadline,
        );
        let imports = match wasi_env {
            Some(env) => wasi::imports(store, env, &self.module.module)?,
            None => Imports::new(),
        };
        let instance = match Instance::new(store, &self.module.module, &imports) {
            Ok(instance) => instance,
            Err(_) if scope.timed_out() => {
                return Err(GuestError::Timeout {
                    timeout_ms: u64::from(self.timeout_ms),
                });
            }
            Err(error) => {
                // SAFETY: `store` is alive.
                let start_fuel_left = scope
                    .take_fuel_cell()
                    .map(|(cell, _watch)| unsafe { cell.remaining() });
                return Err(instantiation_failure(
                    error,
                    self.growth_refused,
                    start_fuel_left,
                ));
            }
        };
        let (fuel_cell, watch) =
            scope
                .take_fuel_cell()
                .ok_or_else(|| GuestError::InvalidModule {
                    detail: "the module was compiled without metering".into(),
                })?;
        Ok((instance, fuel_cell, watch))
    }
}

fn run_wasi(
    store: &mut Store,
    env: &FunctionEnv<WasiState>,
    instance: &Instance,
    fuel_cell: FuelCell,
) -> Result<Vec<u8>, CallFailure> {
    wasi::attach_instance(store, env, instance, fuel_cell)?;
    let start = instance
        .exports
        .get_typed_function::<(), ()>(store, "_start")
        .map_err(|e| GuestError::InvalidModule {
            detail: e.to_string(),
        })?;
    let ended = match start.call(store) {
        Ok(()) => Ok(()),
        Err(error) => match error.downcast_ref::<WasiExit>() {
            Some(WasiExit(0)) => Ok(()),
            _ => Err(error),
        },
    };
    let state = env.as_mut(store);
    if state.stdout_overflow {
        return Err(GuestError::BadOutput {
            detail: format!("output exceeds the limit of {} bytes", state.max_output()),
        }
        .into());
    }
    ended?;
    Ok(std::mem::take(&mut state.stdout))
}

fn classify(
    error: RuntimeError,
    fuel_exhausted: bool,
    growth_refused: bool,
    limits: &Limits,
    stderr: &[u8],
) -> GuestError {
    if fuel_exhausted {
        return GuestError::FuelExhausted { fuel: limits.fuel };
    }
    if let Some(WasiExit(status)) = error.downcast_ref::<WasiExit>() {
        return GuestError::Exit {
            status: *status,
            stderr: String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_IN_ERRORS)])
                .into_owned(),
        };
    }
    if growth_refused {
        return GuestError::MemoryLimit {
            detail: format!(
                "memory growth was refused at the cap of {} pages ({} MiB); then: {}",
                limits.memory_pages,
                limits.memory_bytes() >> 20,
                error.message()
            ),
        };
    }
    let detail = match error.clone().to_trap() {
        Some(code) => code.to_string(),
        None => error.message(),
    };
    GuestError::Trap {
        detail: with_stderr(detail, stderr),
    }
}

/// `start_fuel_left`: what the start function left of its fuel, if the counter was created
/// (`Some(None)`: it ran out).
fn instantiation_failure(
    error: InstantiationError,
    growth_refused: &AtomicBool,
    start_fuel_left: Option<Option<u64>>,
) -> GuestError {
    match error {
        InstantiationError::Start(_) if start_fuel_left == Some(None) => {
            GuestError::FuelExhausted { fuel: START_FUEL }
        }
        InstantiationError::Start(trap) if growth_refused.load(Ordering::Relaxed) => {
            GuestError::MemoryLimit {
                detail: format!("memory growth was refused during start: {}", trap.message()),
            }
        }
        InstantiationError::Start(trap) => GuestError::Trap {
            detail: format!("start function: {}", trap.message()),
        },
        other => GuestError::InvalidModule {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use wasmesh_protocol::ContentHash;

    use super::*;
    use crate::executor::{Executor, ExecutorConfig};

    /// A run that may not wait (an inline one) stops when its guest asks to sleep (before
    /// sleeping: see `wasi::poll`), so that the request can move to a guest thread.
    #[test]
    fn a_run_that_may_not_wait_stops_at_the_first_sleep() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/fixtures/wasi_sleep.wat");
        let wasm = crate::module_file::read_module(&path).unwrap();
        let executor = Executor::new(ExecutorConfig::default()).unwrap();
        let (module, _) = executor
            .prepare(ContentHash::of(&wasm), "sleep", &wasm)
            .unwrap();
        let limits = Limits::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let watcher = executor.inner.watcher.clone();
        let run = |may_wait| execute(&watcher, &module, b"", &limits, deadline, may_wait);
        let stopped = run(false);
        assert!(matches!(stopped, Err(Stop::WaitRefused)), "{stopped:?}");
        let waited = run(true);
        assert!(waited.is_ok(), "{waited:?}");
    }
}
