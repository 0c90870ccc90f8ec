//! The node's one wasmer engine: cranelift (optimising for speed, with the host's SIMD), fuel
//! metering ([`super::metering`]), capped memories; and its fingerprint.

use std::sync::Arc;

use wasmer::Engine;
use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder, NativeEngineExt, Target};

use super::metering::FuelMetering;
use super::sandbox::SandboxTunables;

/// Bumped whenever the metering or anything else that changes compiled code changes.
const CODEGEN_REVISION: u32 = 5;

/// Builds the engine: cranelift with metering, and tunables that cap memories per request.
pub(crate) fn build_engine(default_memory_cap_pages: u32, pooled_memories: usize) -> Engine {
    // wasmer's defaults already optimise for speed (`opt_level=speed`) and enable the Wasm SIMD
    // proposal, lowered to the host's vector extensions.
    let mut compiler = Cranelift::default();
    compiler.push_middleware(Arc::new(FuelMetering::default()));
    let mut engine: Engine = EngineBuilder::new(compiler).into();
    engine.set_tunables(SandboxTunables::new(
        default_memory_cap_pages,
        pooled_memories,
    ));
    engine
}

/// Identifies everything that makes a compiled artifact valid: a change of any of these means
/// artifacts made before must be recompiled, never loaded.
pub(crate) fn fingerprint() -> String {
    let target = Target::default();
    let description = format!(
        "wasmer {} | cranelift | {:?} | {:?} | fuel metering (metering.rs) | rev {CODEGEN_REVISION}",
        wasmer_types::VERSION,
        target.triple(),
        target.cpu_features(),
    );
    blake3::hash(description.as_bytes()).to_hex()[..16].to_owned()
}
