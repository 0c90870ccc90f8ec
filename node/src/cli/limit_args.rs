//! The resource-limit flags shared by `manifest create`, `publish` and `run`.

use clap::Args;
use wasmesh_protocol::Limits;
use wasmesh_protocol::limits::WASM_PAGE_SIZE;

/// Per-request limits; each defaults to the protocol default (see `Limits`).
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Fuel (metering points, about one per Wasm instruction) per request [default: 1000000000].
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Linear memory cap per request, in MiB [default: 64].
    #[arg(long)]
    pub memory_mib: Option<u32>,
    /// Wall-clock deadline per request, in milliseconds [default: 2000].
    #[arg(long)]
    pub timeout_ms: Option<u32>,
    /// Largest request body, in bytes [default: 4194304].
    #[arg(long)]
    pub max_input: Option<u32>,
    /// Largest response body, in bytes [default: 4194304].
    #[arg(long)]
    pub max_output: Option<u32>,
}

impl LimitArgs {
    /// The limits these flags ask for, starting from `base`, checked against the protocol ranges.
    pub fn apply(&self, base: Limits) -> anyhow::Result<Limits> {
        let pages_per_mib = (1 << 20) / WASM_PAGE_SIZE as u32;
        let limits = Limits {
            fuel: self.fuel.unwrap_or(base.fuel),
            memory_pages: match self.memory_mib {
                Some(mib) => mib.checked_mul(pages_per_mib).ok_or_else(|| {
                    anyhow::anyhow!("--memory-mib {mib} is too large (at most 4096)")
                })?,
                None => base.memory_pages,
            },
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            max_input: self.max_input.unwrap_or(base.max_input),
            max_output: self.max_output.unwrap_or(base.max_output),
        };
        limits.check_in_range()?;
        Ok(limits)
    }
}
