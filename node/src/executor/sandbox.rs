//! Per-request sandbox resources the engine's tunables hand out: linear memories and tables that
//! share one memory cap, and the fuel counter the watchdog may zero.
//!
//! wasmer's tunables belong to the engine, but caps belong to a request. The executor therefore
//! opens an [`InstantiationScope`] on its thread around `Instance::new`; the tunables read the
//! request's caps from it and leave behind what the executor needs afterwards: a flag set when
//! the guest's memory growth was refused, a [`FuelCell`](super::fuel_cell::FuelCell) pointing at the instance's metering
//! counter, and the watchdog's registration of the instance, made as soon as the counter exists
//! so that the start function runs under the request's deadline.
//!
//! One cap for the whole request ([`MemoryBudget`]): each table reserves its share up front (it
//! may grow to its declared maximum, to an eighth of the cap if it declares none, never past
//! what is left), counted in whole 64 KiB pages, and the linear memory may grow to the rest.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmer::sys::vm::{
    InternalStoreHandle, LinearMemory, MemoryError, MemoryStyle, StoreObjects, TableStyle,
    VMGlobal, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Target, Tunables};
use wasmer::{ExportIndex, MemoryType, Pages, TableType};
use wasmer_compiler::LinkError;
use wasmer_types::entity::{EntityRef, PrimaryMap};
use wasmer_types::{LocalGlobalIndex, ModuleInfo};

use super::fuel_cell::FuelCell;
use super::memory_pool::MemoryPool;
use super::metering::FUEL_EXPORT;
use super::watchdog::{Watch, Watcher};

struct ScopeState {
    budget: MemoryBudget,
    growth_refused: Arc<AtomicBool>,
    fuel_cell: Option<FuelCell>,
    /// Who watches the instance and until when, until its counter exists.
    watch_with: Option<(Watcher, Instant)>,
    /// The instance's registration, once its counter exists.
    watch: Option<Watch>,
}

thread_local! {
    static SCOPE: RefCell<Option<ScopeState>> = const { RefCell::new(None) };
}

/// While alive, instances created on this thread get this request's memory cap.
pub(crate) struct InstantiationScope {
    // Bound to the thread whose thread-local it fills.
    _not_send: PhantomData<*const ()>,
}

impl InstantiationScope {
    /// Instances created on this thread until the scope drops get `budget`, and are watched by
    /// `watcher` until `deadline` from the moment their fuel counter exists.
    pub(crate) fn enter(
        budget: MemoryBudget,
        growth_refused: Arc<AtomicBool>,
        watcher: Watcher,
        deadline: Instant,
    ) -> Self {
        SCOPE.with(|scope| {
            *scope.borrow_mut() = Some(ScopeState {
                budget,
                growth_refused,
                fuel_cell: None,
                watch_with: Some((watcher, deadline)),
                watch: None,
            })
        });
        Self {
            _not_send: PhantomData,
        }
    }

    /// The metering counter of the instance created in this scope, and its watchdog
    /// registration (drop that before the store).
    pub(crate) fn take_fuel_cell(&self) -> Option<(FuelCell, Watch)> {
        SCOPE.with(|scope| {
            let mut scope = scope.borrow_mut();
            let state = scope.as_mut()?;
            Some((state.fuel_cell.take()?, state.watch.take()?))
        })
    }

    /// Whether the deadline passed while the instance was being created.
    pub(crate) fn timed_out(&self) -> bool {
        SCOPE.with(|scope| {
            scope
                .borrow()
                .as_ref()
                .and_then(|state| state.watch.as_ref())
                .is_some_and(Watch::fired)
        })
    }
}

impl Drop for InstantiationScope {
    fn drop(&mut self) {
        SCOPE.with(|scope| scope.borrow_mut().take());
    }
}

/// The engine's tunables: wasmer's defaults, plus per-request memory caps, with linear memories
/// from a pool of reservations ([`MemoryPool`]).
pub(crate) struct SandboxTunables {
    base: BaseTunables,
    default_cap_pages: u32,
    memories: Arc<MemoryPool>,
}

impl SandboxTunables {
    pub(crate) fn new(default_cap_pages: u32, pooled_memories: usize) -> Self {
        Self {
            base: BaseTunables::for_target(&Target::default()),
            default_cap_pages,
            memories: MemoryPool::new(pooled_memories),
        }
    }

    /// The table type with its maximum lowered to its share of the request's cap
    /// ([`MemoryBudget`]), so `table.grow` past it fails (returns -1) and the host's memory stays
    /// bounded. A declared minimum over the cap is refused.
    fn capped_table(&self, ty: &TableType) -> Result<TableType, String> {
        let (budget, _) = self.scope_budget_and_flag();
        let maximum = table_reserve(ty, budget.cap_pages)?;
        Ok(TableType {
            maximum: Some(maximum),
            ..*ty
        })
    }

    fn scope_budget_and_flag(&self) -> (MemoryBudget, Option<Arc<AtomicBool>>) {
        SCOPE.with(|scope| match scope.borrow().as_ref() {
            Some(state) => (state.budget, Some(state.growth_refused.clone())),
            None => (MemoryBudget::whole(self.default_cap_pages), None),
        })
    }
}

impl Tunables for SandboxTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(ty, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let (budget, growth_refused) = self.scope_budget_and_flag();
        let cap = Pages(budget.memory_pages);
        if ty.minimum > cap {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: cap,
            });
        }
        // SAFETY: forwarded unchanged from the caller, who upholds the contract.
        let inner = match unsafe { self.memories.memory(ty, style, vm_definition_location) } {
            Some(pooled) => VMMemory(Box::new(pooled?)),
            None => unsafe {
                self.base
                    .create_vm_memory(ty, style, vm_definition_location)?
            },
        };
        Ok(VMMemory(Box::new(CappedMemory {
            inner,
            cap,
            growth_refused: growth_refused.unwrap_or_default(),
        })))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(&self.capped_table(ty)?, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let capped = self.capped_table(ty)?;
        // SAFETY: forwarded from the caller, who upholds the contract; only the maximum changed.
        unsafe {
            self.base
                .create_vm_table(&capped, style, vm_definition_location)
        }
    }

    fn create_globals(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
    ) -> Result<PrimaryMap<LocalGlobalIndex, InternalStoreHandle<VMGlobal>>, LinkError> {
        let imported = module.num_imported_globals;
        let fuel_index = match module.exports.get(FUEL_EXPORT) {
            Some(ExportIndex::Global(index)) => Some(index.index()),
            _ => None,
        };
        let mut globals = PrimaryMap::with_capacity(module.globals.len() - imported);
        for (index, global_type) in module.globals.iter().skip(imported) {
            let global = self
                .create_global(*global_type)
                .map_err(LinkError::Resource)?;
            if Some(index.index()) == fuel_index {
                let cell = FuelCell(global.vmglobal());
                SCOPE.with(|scope| {
                    if let Some(state) = scope.borrow_mut().as_mut() {
                        state.fuel_cell = Some(cell);
                        // From here on the store holds the counter, until after the scope (and
                        // with it this registration) is dropped.
                        if let Some((watcher, deadline)) = state.watch_with.take() {
                            state.watch = Some(watcher.watch(cell, deadline));
                        }
                    }
                });
            }
            globals.push(InternalStoreHandle::new(context, global));
        }
        Ok(globals)
    }
}

/// Bytes of host memory one table element takes (a function or extern reference).
const TABLE_ELEMENT_BYTES: u64 = 8;

/// A table that declares no maximum may grow to this fraction of the request's cap.
const UNBOUNDED_TABLE_SHARE: u64 = 8;

/// How one request's memory cap is shared: tables first, each its reserve, in whole pages; the
/// linear memory gets the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryBudget {
    /// The request's whole cap, in pages.
    pub(crate) cap_pages: u32,
    /// What the linear memory may grow to, in pages.
    pub(crate) memory_pages: u32,
}

impl MemoryBudget {
    /// A budget with no tables: all of it for the memory.
    fn whole(cap_pages: u32) -> Self {
        Self {
            cap_pages,
            memory_pages: cap_pages,
        }
    }

    /// The budget of an instance with `tables` under a cap of `cap_pages`; an error naming what
    /// does not fit when the tables' minimums alone take more than the cap.
    pub(crate) fn for_tables<'a>(
        cap_pages: u32,
        tables: impl IntoIterator<Item = &'a TableType>,
    ) -> Result<Self, String> {
        let mut table_bytes = 0u64;
        for table in tables {
            table_bytes += u64::from(table_reserve(table, cap_pages)?) * TABLE_ELEMENT_BYTES;
        }
        let table_pages = table_bytes.div_ceil(wasmer::WASM_PAGE_SIZE as u64);
        let memory_pages = u64::from(cap_pages)
            .checked_sub(table_pages)
            .ok_or_else(|| {
                format!(
                    "the module's tables take {table_pages} pages of memory; the cap is {cap_pages}"
                )
            })?;
        Ok(Self {
            cap_pages,
            memory_pages: memory_pages as u32,
        })
    }
}

/// The elements a table may grow to under a cap of `cap_pages` (its reserve): its declared
/// maximum, or an eighth of the cap when it declares none, and at most the whole cap; a declared
/// minimum over the cap is refused.
fn table_reserve(ty: &TableType, cap_pages: u32) -> Result<u32, String> {
    let cap_bytes = u64::from(cap_pages) * wasmer::WASM_PAGE_SIZE as u64;
    let cap = u32::try_from(cap_bytes / TABLE_ELEMENT_BYTES).unwrap_or(u32::MAX);
    if ty.minimum > cap {
        return Err(format!(
            "the module declares a table of {} elements; the cap is {cap}",
            ty.minimum
        ));
    }
    let share =
        u32::try_from(cap_bytes / UNBOUNDED_TABLE_SHARE / TABLE_ELEMENT_BYTES).unwrap_or(u32::MAX);
    let reserve = ty.maximum.unwrap_or(share).min(cap);
    Ok(reserve.max(ty.minimum))
}

/// A linear memory that refuses to grow past a cap and remembers that it did.
#[derive(Debug)]
struct CappedMemory {
    inner: VMMemory,
    cap: Pages,
    growth_refused: Arc<AtomicBool>,
}

impl CappedMemory {
    fn refuse(&self, attempted_delta: Pages) -> MemoryError {
        self.growth_refused.store(true, Ordering::Relaxed);
        MemoryError::CouldNotGrow {
            current: self.inner.size(),
            attempted_delta,
        }
    }
}

impl LinearMemory for CappedMemory {
    fn ty(&self) -> MemoryType {
        let mut ty = self.inner.ty();
        ty.maximum = Some(ty.maximum.map_or(self.cap, |max| max.min(self.cap)));
        ty
    }

    fn size(&self) -> Pages {
        self.inner.size()
    }

    fn style(&self) -> MemoryStyle {
        self.inner.style()
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let wanted = u64::from(self.inner.size().0) + u64::from(delta.0);
        if wanted > u64::from(self.cap.0) {
            return Err(self.refuse(delta));
        }
        self.inner.grow(delta)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        if min_size > u64::from(self.cap.0) * wasmer::WASM_PAGE_SIZE as u64 {
            return Err(self.refuse(Pages(0)));
        }
        self.inner.grow_at_least(min_size)
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.inner.reset()
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.inner.vmmemory()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + 'static>, MemoryError> {
        self.inner.try_clone()
    }

    fn copy(&mut self) -> Result<Box<dyn LinearMemory + 'static>, MemoryError> {
        self.inner.copy()
    }
}
