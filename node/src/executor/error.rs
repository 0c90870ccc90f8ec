//! Typed failures of a guest request. Each has a stable `kind` string used on the CLI, in HTTP
//! error bodies and in metrics. Also how one ABI call fails, before it is classified.

use wasmer::RuntimeError;
pub use wasmesh_protocol::wire::FailureKind;

/// Why a request did not produce output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The guest used all the fuel it was given.
    #[error("fuel_exhausted: the guest used all {fuel} fuel")]
    FuelExhausted {
        /// The fuel granted.
        fuel: u64,
    },
    /// The guest needed more linear memory than its cap.
    #[error("memory_limit: {detail}")]
    MemoryLimit {
        /// What was refused.
        detail: String,
    },
    /// The wall-clock deadline passed.
    #[error("timeout: no result within {timeout_ms} ms")]
    Timeout {
        /// The deadline in milliseconds.
        timeout_ms: u64,
    },
    /// The guest trapped (unreachable, out-of-bounds access, division by zero, ...).
    #[error("trap: {detail}")]
    Trap {
        /// The trap code or message, and the start of what a WASI guest wrote to stderr before
        /// it (a Rust guest's panic message).
        detail: String,
    },
    /// A WASI guest exited with a non-zero status.
    #[error("exit: status {status}{}", stderr_suffix(stderr))]
    Exit {
        /// The exit status.
        status: i32,
        /// The start of what the guest wrote to stderr.
        stderr: String,
    },
    /// The guest's output is outside its memory or over the output limit.
    #[error("bad_output: {detail}")]
    BadOutput {
        /// What is wrong.
        detail: String,
    },
    /// The request body is over the module's input limit.
    #[error("input_too_large: {size} bytes exceeds the limit of {limit}")]
    InputTooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: u32,
    },
    /// The module does not validate, compile or link.
    #[error("invalid_module: {detail}")]
    InvalidModule {
        /// Why.
        detail: String,
    },
    /// The module imports something the host does not provide.
    #[error("unsupported_import: {module}.{field}")]
    UnsupportedImport {
        /// Import namespace.
        module: String,
        /// Import name.
        field: String,
    },
    /// All execution slots and queue places are taken.
    #[error("busy: {detail}")]
    Busy {
        /// Which bound was hit.
        detail: String,
    },
}

/// Most bytes of a guest's stderr an error message carries.
pub(crate) const STDERR_IN_ERRORS: usize = 512;

/// `detail`, followed by the start of what the guest wrote to stderr, if anything.
pub(crate) fn with_stderr(detail: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(&stderr[..stderr.len().min(STDERR_IN_ERRORS)]);
    match text.trim_end() {
        "" => detail,
        text => format!("{detail}; stderr: {}", text.replace('\n', " | ")),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim_end().replace('\n', " | "))
    }
}

impl GuestError {
    /// The kind of this failure (its stable name is `kind().as_str()`).
    pub fn kind(&self) -> FailureKind {
        match self {
            GuestError::FuelExhausted { .. } => FailureKind::FuelExhausted,
            GuestError::MemoryLimit { .. } => FailureKind::MemoryLimit,
            GuestError::Timeout { .. } => FailureKind::Timeout,
            GuestError::Trap { .. } => FailureKind::Trap,
            GuestError::Exit { .. } => FailureKind::Exit,
            GuestError::BadOutput { .. } => FailureKind::BadOutput,
            GuestError::InputTooLarge { .. } => FailureKind::InputTooLarge,
            GuestError::InvalidModule { .. } => FailureKind::InvalidModule,
            GuestError::UnsupportedImport { .. } => FailureKind::UnsupportedImport,
            GuestError::Busy { .. } => FailureKind::Busy,
        }
    }

    /// Whether the failure is the guest's doing (as opposed to the module or the node).
    pub fn is_guest_failure(&self) -> bool {
        matches!(
            self,
            GuestError::FuelExhausted { .. }
                | GuestError::MemoryLimit { .. }
                | GuestError::Timeout { .. }
                | GuestError::Trap { .. }
                | GuestError::Exit { .. }
                | GuestError::BadOutput { .. }
        )
    }
}

impl From<wasmesh_protocol::wasm::WasmError> for GuestError {
    fn from(error: wasmesh_protocol::wasm::WasmError) -> Self {
        use wasmesh_protocol::wasm::WasmError;
        match error {
            WasmError::UnsupportedImport { module, field, .. } => {
                GuestError::UnsupportedImport { module, field }
            }
            other => GuestError::InvalidModule {
                detail: other.to_string(),
            },
        }
    }
}

/// How an ABI call can fail: a trap or host error from wasmer, or a failure already classified.
pub(crate) enum CallFailure {
    Runtime(RuntimeError),
    Guest(GuestError),
}

impl From<RuntimeError> for CallFailure {
    fn from(error: RuntimeError) -> Self {
        CallFailure::Runtime(error)
    }
}

impl From<GuestError> for CallFailure {
    fn from(error: GuestError) -> Self {
        CallFailure::Guest(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_kind_whose_name_leads_its_message() {
        let failures = [
            GuestError::FuelExhausted { fuel: 1 },
            GuestError::Timeout { timeout_ms: 1 },
            GuestError::Busy {
                detail: "full".into(),
            },
        ];
        for failure in failures {
            assert!(FailureKind::ALL.contains(&failure.kind()));
            assert!(failure.to_string().starts_with(failure.kind().as_str()));
        }
    }
}
