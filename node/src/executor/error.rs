//! Typed failures of a guest request. Each has a stable `kind` string used on the CLI, in HTTP
//! error bodies and in metrics.

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
        /// The trap code or message.
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

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim_end().replace('\n', " | "))
    }
}

impl GuestError {
    /// The stable name of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestError::FuelExhausted { .. } => "fuel_exhausted",
            GuestError::MemoryLimit { .. } => "memory_limit",
            GuestError::Timeout { .. } => "timeout",
            GuestError::Trap { .. } => "trap",
            GuestError::Exit { .. } => "exit",
            GuestError::BadOutput { .. } => "bad_output",
            GuestError::InputTooLarge { .. } => "input_too_large",
            GuestError::InvalidModule { .. } => "invalid_module",
            GuestError::UnsupportedImport { .. } => "unsupported_import",
            GuestError::Busy { .. } => "busy",
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
