//! Resource limits a publisher sets for a module, their defaults and their allowed ranges.
//!
//! A manifest carries [`Limits`]; a node additionally applies its operator's caps (a module whose
//! limits exceed them is kept but not run there). The ranges below are the protocol's: a manifest
//! outside them is refused everywhere.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Bytes in one WebAssembly page.
pub const WASM_PAGE_SIZE: u64 = 64 * 1024;

/// The largest Wasm blob a manifest may describe (64 MiB).
pub const MAX_MODULE_SIZE: u64 = 64 << 20;

/// Per-request resource limits of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct Limits {
    /// Metering points (roughly one per executed Wasm operator) a request may spend.
    pub fuel: u64,
    /// Linear memory cap in 64 KiB pages.
    pub memory_pages: u32,
    /// Wall-clock deadline of one request, in milliseconds.
    pub timeout_ms: u32,
    /// Largest accepted request body, in bytes.
    pub max_input: u32,
    /// Largest accepted response body, in bytes.
    pub max_output: u32,
}

impl Limits {
    /// Default fuel: one billion metering points (about a second of dense compute).
    pub const DEFAULT_FUEL: u64 = 1_000_000_000;
    /// Default memory cap: 1024 pages (64 MiB).
    pub const DEFAULT_MEMORY_PAGES: u32 = 1024;
    /// Default deadline: 2 seconds.
    pub const DEFAULT_TIMEOUT_MS: u32 = 2_000;
    /// Default largest request body: 4 MiB.
    pub const DEFAULT_MAX_INPUT: u32 = 4 << 20;
    /// Default largest response body: 4 MiB.
    pub const DEFAULT_MAX_OUTPUT: u32 = 4 << 20;

    /// Highest fuel a manifest may ask for (10^12).
    pub const MAX_FUEL: u64 = 1_000_000_000_000;
    /// Highest memory cap: 65536 pages, all of a 32-bit address space (4 GiB).
    pub const MAX_MEMORY_PAGES: u32 = 65_536;
    /// Longest deadline: 5 minutes.
    pub const MAX_TIMEOUT_MS: u32 = 300_000;
    /// Largest request or response body: 64 MiB.
    pub const MAX_BODY: u32 = 64 << 20;

    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_pages) * WASM_PAGE_SIZE
    }

    /// Checks every field against the protocol's ranges.
    pub fn check_in_range(&self) -> Result<(), LimitsError> {
        let checks: [(&'static str, u64, u64, u64); 5] = [
            ("fuel", self.fuel, 1, Self::MAX_FUEL),
            (
                "memory_pages",
                self.memory_pages.into(),
                1,
                Self::MAX_MEMORY_PAGES.into(),
            ),
            (
                "timeout_ms",
                self.timeout_ms.into(),
                1,
                Self::MAX_TIMEOUT_MS.into(),
            ),
            ("max_input", self.max_input.into(), 0, Self::MAX_BODY.into()),
            (
                "max_output",
                self.max_output.into(),
                1,
                Self::MAX_BODY.into(),
            ),
        ];
        for (field, value, min, max) in checks {
            if value < min || value > max {
                return Err(LimitsError {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// The first field in which `self` asks for more than `caps` allow, as a readable reason.
    pub fn first_excess(&self, caps: &Limits) -> Option<String> {
        let pairs: [(&str, u64, u64); 5] = [
            ("fuel", self.fuel, caps.fuel),
            (
                "memory_pages",
                self.memory_pages.into(),
                caps.memory_pages.into(),
            ),
            ("timeout_ms", self.timeout_ms.into(), caps.timeout_ms.into()),
            ("max_input", self.max_input.into(), caps.max_input.into()),
            ("max_output", self.max_output.into(), caps.max_output.into()),
        ];
        pairs
            .into_iter()
            .find(|(_, asked, cap)| asked > cap)
            .map(|(field, asked, cap)| format!("{field} {asked} exceeds this node's cap of {cap}"))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: Self::DEFAULT_FUEL,
            memory_pages: Self::DEFAULT_MEMORY_PAGES,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            max_input: Self::DEFAULT_MAX_INPUT,
            max_output: Self::DEFAULT_MAX_OUTPUT,
        }
    }
}

/// A limit outside the protocol's range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {field} = {value} is out of range ({min}..={max})")]
pub struct LimitsError {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// Lowest allowed value.
    pub min: u64,
    /// Highest allowed value.
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_range() {
        assert_eq!(Limits::default().check_in_range(), Ok(()));
    }

    #[test]
    fn out_of_range_names_the_field() {
        let limits = Limits {
            memory_pages: 0,
            ..Limits::default()
        };
        let err = limits.check_in_range().unwrap_err();
        assert_eq!(err.field, "memory_pages");
        assert!(err.to_string().contains("memory_pages = 0"));
    }

    #[test]
    fn excess_over_caps_is_reported() {
        let caps = Limits::default();
        let asked = Limits {
            timeout_ms: caps.timeout_ms + 1,
            ..caps
        };
        assert_eq!(caps.first_excess(&caps), None);
        assert!(asked.first_excess(&caps).unwrap().starts_with("timeout_ms"));
    }
}
