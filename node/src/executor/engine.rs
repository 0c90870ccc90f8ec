//! The node's one wasmer engine: cranelift, fuel metering, capped memories; and its fingerprint.
//!
//! wasmer's `Metering` middleware is single-use (it panics when a second module is compiled
//! with it), so [`ReusableMetering`] hands each compilation a fresh one. Compilations are
//! serialised by the caller ([`super::cache`]), which keeps that hand-over unambiguous.

use std::sync::{Arc, Mutex};

use wasmer::sys::{
    CompilerConfig, Cranelift, EngineBuilder, FunctionMiddleware, MiddlewareError,
    ModuleMiddleware, NativeEngineExt, Target,
};
use wasmer::wasmparser::Operator;
use wasmer::{Engine, LocalFunctionIndex};
use wasmer_middlewares::Metering;
use wasmer_types::ModuleInfo;

use super::sandbox::SandboxTunables;

/// The cost of one operator: every Wasm operator costs one metering point.
fn operator_cost(_operator: &Operator) -> u64 {
    1
}

/// Bumped whenever the cost function or anything else that changes compiled code changes.
const CODEGEN_REVISION: u32 = 1;

type CostFn = fn(&Operator) -> u64;

/// A metering middleware usable for many modules: each `transform_module_info` (the first step
/// of compiling a module) starts a fresh `Metering`, which then serves that module's functions.
#[derive(Debug, Default)]
struct ReusableMetering {
    current: Mutex<Option<Arc<Metering<CostFn>>>>,
}

impl ModuleMiddleware for ReusableMetering {
    fn generate_function_middleware(
        &self,
        index: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_else(|| Arc::new(Metering::new(0, operator_cost as CostFn)));
        current.generate_function_middleware(index)
    }

    fn transform_module_info(&self, module_info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        // The initial limit is irrelevant: every request sets its own fuel before running.
        let fresh = Arc::new(Metering::new(0, operator_cost as CostFn));
        fresh.transform_module_info(module_info)?;
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(fresh);
        Ok(())
    }
}

/// Builds the engine: cranelift with metering, and tunables that cap memories per request.
pub(crate) fn build_engine(default_memory_cap_pages: u32, pooled_memories: usize) -> Engine {
    let mut compiler = Cranelift::default();
    compiler.push_middleware(Arc::new(ReusableMetering::default()));
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
        "wasmer {} | cranelift | {:?} | {:?} | metering on, cost 1/op | rev {CODEGEN_REVISION}",
        wasmer_types::VERSION,
        target.triple(),
        target.cpu_features(),
    );
    blake3::hash(description.as_bytes()).to_hex()[..16].to_owned()
}
