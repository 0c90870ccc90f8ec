//! The WASI guest ABI: a preview1 subset written for wasmesh, as wasmer host functions.
//!
//! A WASI guest is a command: `_start` runs with the request body on stdin; what it writes to
//! stdout is the response; stderr is kept (bounded) for the log and error messages; a non-zero
//! exit status is an error. There are no preopened directories, no environment variables, no
//! sockets, and one argument: the module name.
//!
//! Why not wasmer-wasix: measured on this project's machines, its cheapest per-request path costs
//! 50-70 us median (it builds ~47 host functions per request), it grants guests network access
//! unless switched off, and it adds ~126 crates; this subset costs 18-30 us. Only the functions a
//! module imports are created for a request. Implemented: `fd_read` (fd 0), `fd_write` (fds 1
//! and 2), `proc_exit`, `args_sizes_get`, `args_get`, `environ_sizes_get`, `environ_get`,
//! `clock_time_get`, `random_get`, `fd_fdstat_get`, `fd_close`, `sched_yield`, `poll_oneoff`
//! (clocks and stdio: [`poll`]), and `fd_prestat_get`, which answers BADF (no preopens;
//! wasi-libc aborts on any other error there). Every other preview1 function answers ENOSYS.
//!
//! A host call that touches guest memory works in chunks of [`HOST_CHUNK`] bytes and pays for
//! each chunk from the guest's fuel before doing it ([`WasiState::pay`]), checking the deadline
//! too: a call asked to fill or copy the whole memory stops within a chunk of running out of
//! either, as guest code stops at its next check.

mod poll;

pub(crate) use self::poll::WaitStopped;

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmer::{
    ExternType, Function, FunctionEnv, FunctionEnvMut, Imports, Instance, Memory, MemoryView,
    Module, RuntimeError, Store, Value,
};
use wasmesh_protocol::wasm::WASI_NAMESPACE;

use super::GuestError;
use super::fuel_cell::FuelCell;
use super::metering::BULK_BYTES_PER_POINT;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_FBIG: i32 = 22;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;

/// Most bytes of stderr kept per request.
pub const STDERR_CAP: usize = 8 * 1024;
/// Most iovecs accepted in one read or write (POSIX IOV_MAX).
const IOV_MAX: u32 = 1024;

/// Bytes a host call copies or fills between two payments (and deadline checks).
const HOST_CHUNK: usize = 64 * 1024;

/// Points per byte of randomness (`random_get` costs the kernel's generator about 4 ns a byte,
/// some 16 times what a byte of a bulk copy costs: BENCHMARKS.md, "Guest time").
const RANDOM_POINTS_PER_BYTE: u64 = 16;

/// Why a host call stopped its guest part way through the work it was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostStop {
    /// The guest's fuel ran out (or the watchdog stopped it).
    #[error("the guest ran out of fuel in a host call")]
    OutOfFuel,
    /// The request's deadline passed.
    #[error("the guest's deadline passed in a host call")]
    PastDeadline,
}

/// How a guest ended by calling `proc_exit`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("guest exited with status {0}")]
pub(crate) struct WasiExit(pub i32);

/// The per-request state of a WASI guest.
pub(crate) struct WasiState {
    stdin: Vec<u8>,
    stdin_pos: usize,
    pub(crate) stdout: Vec<u8>,
    max_output: usize,
    pub(crate) stdout_overflow: bool,
    pub(crate) stderr: Vec<u8>,
    arg0: String,
    memory: Option<Memory>,
    /// The instance's fuel counter, which host calls pay their work from.
    fuel: Option<FuelCell>,
    /// When the request must end: no wait outlasts it.
    deadline: Instant,
    /// Whether the guest may sleep on this thread (not on an async worker).
    may_wait: bool,
}

impl WasiState {
    /// The output limit in bytes.
    pub(crate) fn max_output(&self) -> usize {
        self.max_output
    }

    pub(crate) fn new(
        input: Vec<u8>,
        max_output: u32,
        arg0: &str,
        deadline: Instant,
        may_wait: bool,
    ) -> Self {
        Self {
            deadline,
            may_wait,
            stdin: input,
            stdin_pos: 0,
            stdout: Vec::new(),
            max_output: max_output as usize,
            stdout_overflow: false,
            stderr: Vec::new(),
            arg0: arg0.to_owned(),
            memory: None,
            fuel: None,
        }
    }

    /// Pays for `points` of host work before doing it: an error once the deadline passed or the
    /// fuel ran out.
    fn pay(&self, points: u64) -> Result<(), HostStop> {
        if Instant::now() >= self.deadline {
            return Err(HostStop::PastDeadline);
        }
        // SAFETY: the state lives in the instance's store, so the store is alive while a host
        // function of it runs.
        match self.fuel {
            Some(cell) if !unsafe { cell.charge(points) } => Err(HostStop::OutOfFuel),
            _ => Ok(()),
        }
    }

    /// Pays for copying `bytes`.
    fn pay_copy(&self, bytes: usize) -> Result<(), HostStop> {
        self.pay(bytes as u64 / BULK_BYTES_PER_POINT)
    }
}

/// Creates the host functions `module` imports, bound to `env`.
pub(crate) fn imports(
    store: &mut Store,
    env: &FunctionEnv<WasiState>,
    module: &Module,
) -> Result<Imports, GuestError> {
    let mut imports = Imports::new();
    for import in module.imports() {
        let ExternType::Function(ty) = import.ty() else {
            return Err(unsupported(import.module(), import.name()));
        };
        if import.module() != WASI_NAMESPACE {
            return Err(unsupported(import.module(), import.name()));
        }
        let function = match import.name() {
            "fd_read" => Function::new_typed_with_env(store, env, fd_read),
            "fd_write" => Function::new_typed_with_env(store, env, fd_write),
            "proc_exit" => Function::new_typed_with_env(store, env, proc_exit),
            "args_sizes_get" => Function::new_typed_with_env(store, env, args_sizes_get),
            "args_get" => Function::new_typed_with_env(store, env, args_get),
            "environ_sizes_get" => Function::new_typed_with_env(store, env, environ_sizes_get),
            "environ_get" => Function::new_typed_with_env(store, env, environ_get),
            "clock_time_get" => Function::new_typed_with_env(store, env, clock_time_get),
            "random_get" => Function::new_typed_with_env(store, env, random_get),
            "fd_fdstat_get" => Function::new_typed_with_env(store, env, fd_fdstat_get),
            "fd_close" => Function::new_typed(store, fd_close),
            "sched_yield" => Function::new_typed(store, || ERRNO_SUCCESS),
            "poll_oneoff" => Function::new_typed_with_env(store, env, poll::poll_oneoff),
            "fd_prestat_get" => Function::new_typed(store, |_fd: i32, _buf: i32| ERRNO_BADF),
            other => {
                let name = other.to_owned();
                let returns_errno = ty.results() == [wasmer::Type::I32];
                Function::new(store, ty, move |_args| {
                    if returns_errno {
                        Ok(vec![Value::I32(ERRNO_NOSYS)])
                    } else {
                        Err(RuntimeError::new(format!(
                            "WASI function {name} is not available"
                        )))
                    }
                })
            }
        };
        imports.define(import.module(), import.name(), function);
    }
    Ok(imports)
}

fn unsupported(module: &str, field: &str) -> GuestError {
    GuestError::UnsupportedImport {
        module: module.to_owned(),
        field: field.to_owned(),
    }
}

/// Gives the host functions access to the instance's memory and fuel counter (call after
/// instantiation).
pub(crate) fn attach_instance(
    store: &mut Store,
    env: &FunctionEnv<WasiState>,
    instance: &Instance,
    fuel: FuelCell,
) -> Result<(), GuestError> {
    let memory = instance
        .exports
        .get_memory("memory")
        .map_err(|e| GuestError::InvalidModule {
            detail: e.to_string(),
        })?
        .clone();
    let state = env.as_mut(store);
    state.memory = Some(memory);
    state.fuel = Some(fuel);
    Ok(())
}

/// Runs `f` with the state and a view of the guest's memory; answers with the errno.
fn with_memory(
    env: &mut FunctionEnvMut<WasiState>,
    f: impl FnOnce(&mut WasiState, &MemoryView<'_>) -> Result<(), i32>,
) -> i32 {
    let (state, store) = env.data_and_store_mut();
    let Some(memory) = state.memory.clone() else {
        return ERRNO_FAULT;
    };
    let view = memory.view(&store);
    f(state, &view).err().unwrap_or(ERRNO_SUCCESS)
}

/// As [`with_memory`], for host calls whose work is paid in chunks: a [`HostStop`] traps.
fn with_memory_paid(
    env: &mut FunctionEnvMut<WasiState>,
    f: impl FnOnce(&mut WasiState, &MemoryView<'_>) -> Result<Result<(), i32>, HostStop>,
) -> Result<i32, HostStop> {
    let (state, store) = env.data_and_store_mut();
    let Some(memory) = state.memory.clone() else {
        return Ok(ERRNO_FAULT);
    };
    let view = memory.view(&store);
    Ok(f(state, &view)?.err().unwrap_or(ERRNO_SUCCESS))
}

fn read_u32(view: &MemoryView<'_>, offset: u32) -> Result<u32, i32> {
    let mut bytes = [0u8; 4];
    view.read(u64::from(offset), &mut bytes)
        .map_err(|_| ERRNO_FAULT)?;
    Ok(u32::from_le_bytes(bytes))
}

fn write_bytes(view: &MemoryView<'_>, offset: u32, bytes: &[u8]) -> Result<(), i32> {
    view.write(u64::from(offset), bytes)
        .map_err(|_| ERRNO_FAULT)
}

/// The (buffer, length) pairs of an iovec array.
fn iovecs(view: &MemoryView<'_>, iovs: i32, count: i32) -> Result<Vec<(u32, u32)>, i32> {
    let count = count as u32;
    if count > IOV_MAX {
        return Err(ERRNO_INVAL);
    }
    (0..count)
        .map(|i| {
            let at = (iovs as u32).wrapping_add(i * 8);
            Ok((read_u32(view, at)?, read_u32(view, at.wrapping_add(4))?))
        })
        .collect()
}

fn fd_read(
    mut env: FunctionEnvMut<WasiState>,
    fd: i32,
    iovs: i32,
    count: i32,
    nread: i32,
) -> Result<i32, HostStop> {
    if fd != 0 {
        return Ok(ERRNO_BADF);
    }
    with_memory_paid(&mut env, |state, view| {
        let iovecs = match iovecs(view, iovs, count) {
            Ok(iovecs) => iovecs,
            Err(errno) => return Ok(Err(errno)),
        };
        let mut total = 0u32;
        for (buf, len) in iovecs {
            let rest = state.stdin.len() - state.stdin_pos;
            let n = rest.min(len as usize);
            let mut done = 0;
            while done < n {
                let chunk = (n - done).min(HOST_CHUNK);
                state.pay_copy(chunk)?;
                let from = state.stdin_pos;
                let to = buf.wrapping_add(done as u32);
                if let Err(errno) = write_bytes(view, to, &state.stdin[from..from + chunk]) {
                    return Ok(Err(errno));
                }
                state.stdin_pos += chunk;
                done += chunk;
            }
            // At most the input's length in all: fits (inputs are far below 4 GiB).
            total = total.saturating_add(n as u32);
            if n < len as usize {
                break;
            }
        }
        Ok(write_bytes(view, nread as u32, &total.to_le_bytes()))
    })
}

fn fd_write(
    mut env: FunctionEnvMut<WasiState>,
    fd: i32,
    iovs: i32,
    count: i32,
    nwritten: i32,
) -> Result<i32, HostStop> {
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    // The work of one call is bounded by what the request may still keep: the room left under
    // the output limit (more is an error), and the stderr cap (more is dropped unread). Lengths
    // are checked against the guest's memory before anything is allocated or copied, and what
    // is copied is paid for chunk by chunk.
    with_memory_paid(&mut env, |state, view| {
        let iovecs = match iovecs(view, iovs, count) {
            Ok(iovecs) => iovecs,
            Err(errno) => return Ok(Err(errno)),
        };
        let mut total = 0u32;
        for (buf, len) in iovecs {
            if u64::from(buf) + u64::from(len) > view.data_size() {
                return Ok(Err(ERRNO_FAULT));
            }
            let keep = if fd == 1 {
                if len as usize > state.max_output.saturating_sub(state.stdout.len()) {
                    state.stdout_overflow = true;
                    return Ok(Err(ERRNO_FBIG));
                }
                len as usize
            } else {
                (len as usize).min(STDERR_CAP.saturating_sub(state.stderr.len()))
            };
            let mut done = 0;
            while done < keep {
                let chunk = (keep - done).min(HOST_CHUNK);
                state.pay_copy(chunk)?;
                let sink = if fd == 1 {
                    &mut state.stdout
                } else {
                    &mut state.stderr
                };
                if let Err(errno) = append_from(view, buf.wrapping_add(done as u32), chunk, sink) {
                    return Ok(Err(errno));
                }
                done += chunk;
            }
            total = match total.checked_add(len) {
                Some(total) => total,
                None => return Ok(Err(ERRNO_INVAL)),
            };
        }
        Ok(write_bytes(view, nwritten as u32, &total.to_le_bytes()))
    })
}

/// Appends `len` bytes of guest memory at `offset` to `sink`.
fn append_from(
    view: &MemoryView<'_>,
    offset: u32,
    len: usize,
    sink: &mut Vec<u8>,
) -> Result<(), i32> {
    let start = sink.len();
    sink.resize(start + len, 0);
    view.read(u64::from(offset), &mut sink[start..])
        .map_err(|_| {
            sink.truncate(start);
            ERRNO_FAULT
        })
}

fn proc_exit(_env: FunctionEnvMut<WasiState>, status: i32) -> Result<(), WasiExit> {
    Err(WasiExit(status))
}

fn args_sizes_get(mut env: FunctionEnvMut<WasiState>, argc: i32, buf_size: i32) -> i32 {
    with_memory(&mut env, |state, view| {
        let size = state.arg0.len() as u32 + 1;
        write_bytes(view, argc as u32, &1u32.to_le_bytes())?;
        write_bytes(view, buf_size as u32, &size.to_le_bytes())
    })
}

fn args_get(mut env: FunctionEnvMut<WasiState>, argv: i32, argv_buf: i32) -> i32 {
    with_memory(&mut env, |state, view| {
        let mut arg = state.arg0.clone().into_bytes();
        arg.push(0);
        write_bytes(view, argv as u32, &(argv_buf as u32).to_le_bytes())?;
        write_bytes(view, argv_buf as u32, &arg)
    })
}

fn environ_sizes_get(mut env: FunctionEnvMut<WasiState>, count: i32, buf_size: i32) -> i32 {
    with_memory(&mut env, |_, view| {
        write_bytes(view, count as u32, &0u32.to_le_bytes())?;
        write_bytes(view, buf_size as u32, &0u32.to_le_bytes())
    })
}

fn environ_get(_env: FunctionEnvMut<WasiState>, _environ: i32, _buf: i32) -> i32 {
    ERRNO_SUCCESS
}

/// The resolution of the clocks guests see: 1 ms is plenty for edge functions, and coarser
/// clocks make timing side channels between guests harder to use.
const CLOCK_RESOLUTION_NS: u64 = 1_000_000;

/// Where the guests' monotonic clock starts: the first time any guest reads it.
fn monotonic_epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn clock_time_get(mut env: FunctionEnvMut<WasiState>, id: i32, _precision: i64, time: i32) -> i32 {
    let nanos = match id {
        // realtime
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        // monotonic, process and thread CPU time: time since the first clock read
        1..=3 => monotonic_epoch().elapsed().as_nanos() as u64,
        _ => return ERRNO_INVAL,
    };
    let nanos = nanos - nanos % CLOCK_RESOLUTION_NS;
    with_memory(&mut env, |_, view| {
        write_bytes(view, time as u32, &nanos.to_le_bytes())
    })
}

fn random_get(mut env: FunctionEnvMut<WasiState>, buf: i32, len: i32) -> Result<i32, HostStop> {
    with_memory_paid(&mut env, |state, view| {
        let len = len as u32;
        if u64::from(buf as u32) + u64::from(len) > view.data_size() {
            return Ok(Err(ERRNO_FAULT));
        }
        let mut chunk = [0u8; 4096];
        let mut done = 0u32;
        while done < len {
            if (done as usize).is_multiple_of(HOST_CHUNK) {
                let next = (len - done).min(HOST_CHUNK as u32);
                state.pay(u64::from(next) * RANDOM_POINTS_PER_BYTE)?;
            }
            let n = (len - done).min(chunk.len() as u32) as usize;
            if getrandom::fill(&mut chunk[..n]).is_err() {
                return Ok(Err(ERRNO_NOSYS));
            }
            if let Err(errno) = write_bytes(view, (buf as u32).wrapping_add(done), &chunk[..n]) {
                return Ok(Err(errno));
            }
            done += n as u32;
        }
        Ok(Ok(()))
    })
}

fn fd_fdstat_get(mut env: FunctionEnvMut<WasiState>, fd: i32, stat: i32) -> i32 {
    const FILETYPE_CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    let rights = match fd {
        0 => RIGHT_FD_READ,
        1 | 2 => RIGHT_FD_WRITE,
        _ => return ERRNO_BADF,
    };
    let mut bytes = [0u8; 24];
    bytes[0] = FILETYPE_CHARACTER_DEVICE;
    bytes[8..16].copy_from_slice(&rights.to_le_bytes());
    with_memory(&mut env, |_, view| write_bytes(view, stat as u32, &bytes))
}

fn fd_close(fd: i32) -> i32 {
    if (0..=2).contains(&fd) {
        ERRNO_SUCCESS
    } else {
        ERRNO_BADF
    }
}
