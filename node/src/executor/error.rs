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
    /// Every failure kind, as [`Self::kind`] names them.
    pub const KINDS: [&'static str; 10] = [
        "fuel_exhausted",
        "memory_limit",
        "timeout",
        "trap",
        "exit",
        "bad_output",
        "input_too_large",
        "invalid_module",
        "unsupported_import",
        "busy",
    ];

    /// The fixed kind a peer's failure kind names, or `remote_unknown` for anything else: what
    /// a peer sends must not become an unbounded set of metrics labels or HTTP error kinds.
    pub fn known_kind(kind: &str) -> &'static str {
        Self::KINDS
            .iter()
            .find(|known| **known == kind)
            .copied()
            .unwrap_or("remote_unknown")
    }

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

#[cfg(test)]
mod tests {
    use super::GuestError;

    #[test]
    fn kinds_from_peers_map_onto_the_fixed_set() {
        let timeout = GuestError::Timeout { timeout_ms: 1 };
        assert!(GuestError::KINDS.contains(&timeout.kind()));
        assert_eq!(GuestError::known_kind("timeout"), "timeout");
        assert_eq!(GuestError::known_kind("x\" injected=\"y"), "remote_unknown");
        assert_eq!(
            GuestError::known_kind(&"a".repeat(10_000)),
            "remote_unknown"
        );
    }
}
