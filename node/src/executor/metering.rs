//! Fuel metering: every Wasm operator costs one point; points are charged, and the counter
//! checked, where execution can repeat: before a call, on entering a loop and on branching back
//! to one.
//!
//! wasmer's `Metering` middleware compares, subtracts and stores the counter at the end of every
//! basic block. In the tight loops of image code that cost half of the run time (BENCHMARKS.md,
//! "Fuel metering"): every block of every iteration loads and stores the counter, a dependency
//! through memory. Here:
//! - points build up along straight-line code and across forward branches. Where paths join (the
//!   end of a `block` or an `if`), the largest of the joining paths' build-ups is carried on: a
//!   path is never charged less than it ran, and may be charged for a longer path to the same
//!   join (the other arm of an `if`, the rest of a `block` it left early). A falling-through
//!   path that carries much less than the others (it paid at a call inside the block) is
//!   credited up to them first, so it is not charged twice ([`JOIN_SLACK`]);
//! - they are charged (the counter is lowered) before a call, entering a loop and branching back
//!   to one, usually once per loop iteration, and before a return;
//! - each of those charges but the return's is followed by the check (is the counter negative?
//!   then trap), which reuses the value just stored instead of loading it again. Every loop
//!   iteration and every call passes a check; between two checks execution runs forward through
//!   at most one loop body or function body, so a guest overruns its fuel by at most that much.
//!
//! So the fuel a request is granted still bounds the operators it may execute.
//!
//! The counter is a mutable i64 global appended to the module and exported as [`FUEL_EXPORT`];
//! the sandbox finds it when the instance's globals are created (`sandbox::FuelCell`), sets it
//! before a request and reads it after. The watchdog stops a guest by making it negative. Only
//! the control flow of the features modules may use (`wasmesh_protocol::wasm::FEATURES`, checked
//! before compiling) is followed; any other branching operator is charged before it runs.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, Mutability, Type};
use wasmer_compiler::wasmparser::{BlockType, Operator};
use wasmer_types::{GlobalIndex, ModuleInfo};

/// Fuel a module's start function may use (it runs while the instance is created, before the
/// request's fuel is set, and outside the watchdog: this bounds it, to about a millisecond).
pub(crate) const START_FUEL: u64 = 1_000_000;

/// The export under which a compiled module keeps its remaining fuel.
pub(crate) const FUEL_EXPORT: &str = "wasmesh_fuel_remaining";

/// The metering middleware. One serves any number of modules, compiled one at a time (the
/// module cache serialises compilations): each compilation first appends the counter to its
/// module, then meters that module's functions.
#[derive(Debug, Default)]
pub(crate) struct FuelMetering {
    /// The counter of the module being compiled.
    counter: Mutex<Option<GlobalIndex>>,
}

impl ModuleMiddleware for FuelMetering {
    fn generate_function_middleware(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware> {
        let counter = *self
            .counter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Box::new(FunctionMetering {
            counter,
            pending: 0,
            frames: Vec::new(),
        })
    }

    fn transform_module_info(&self, module_info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        if module_info.exports.contains_key(FUEL_EXPORT) {
            return Err(MiddlewareError::new(
                "fuel metering",
                format!("the module already exports {FUEL_EXPORT}"),
            ));
        }
        let index = module_info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        // What a module's start function may use, as it runs while the instance is created;
        // every request then sets its own fuel before calling in.
        module_info
            .global_initializers
            .push(GlobalInit::I64Const(START_FUEL as i64));
        module_info
            .exports
            .insert(FUEL_EXPORT.to_owned(), ExportIndex::Global(index));
        *self
            .counter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(index);
        Ok(())
    }
}

/// How much less than the other paths joining at an `end` the falling-through path may carry
/// before it is credited up to them (a charge of its own): smaller differences, the common case
/// of two arms of an `if`, are charged on the shorter path too.
const JOIN_SLACK: u64 = 8;

/// Meters one function.
#[derive(Debug)]
struct FunctionMetering {
    /// The module's counter (`None` only if the module was never transformed: then nothing is
    /// metered, and the sandbox refuses to run the module, finding no counter).
    counter: Option<GlobalIndex>,
    /// Points not yet charged on the path being read (the largest, where paths joined).
    pending: u64,
    /// The enclosing control frames, innermost last; the function body is the first.
    frames: Vec<Frame>,
}

/// What a control frame needs for the points of the paths that join at its end.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    /// The largest build-up of the branches to this frame's end (not for loops: a branch to a
    /// loop goes to its header, and is charged).
    branched: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// The function body or a `block`.
    Block,
    Loop,
    /// An `if`: the build-up on entering it (the path that skips a missing `else`), and the
    /// then-arm's build-up once its `else` was read.
    If {
        entry: u64,
        then: Option<u64>,
    },
}

impl FunctionMetering {
    /// Notes a branch to `depth` carrying the current build-up; true if it must be charged first:
    /// a branch to a loop, one out of the function (its end charges only the path falling into
    /// it), or one this reader cannot place.
    fn branch_needs_charge(&mut self, depth: u32) -> bool {
        let pending = self.pending;
        let Some(index) = self.frames.len().checked_sub(1 + depth as usize) else {
            return true;
        };
        match self.frames.get_mut(index) {
            Some(frame) if index > 0 && frame.kind != FrameKind::Loop => {
                frame.branched = frame.branched.max(pending);
                false
            }
            _ => true,
        }
    }

    /// The build-up after an `end` where the path falling into it (with `self.pending`, the
    /// `end`'s own point included) joins paths carrying at most `others`. The larger is carried
    /// on; but a fall-through far below the others (it was charged inside the frame, at a call
    /// say) is first credited up to them, with code that only it runs, so that it is not charged
    /// twice for what it paid before its charge.
    fn join<'a>(&self, others: u64, state: &mut MiddlewareReaderState<'a>) -> u64 {
        let falling = self.pending - 1;
        if falling + JOIN_SLACK < others {
            if let Some(counter) = self.counter {
                let credit = -((others - falling) as i64);
                state.extend(&charge(counter.as_u32(), credit));
            }
            return others + 1;
        }
        falling.max(others) + 1
    }
}

impl FunctionMiddleware for FunctionMetering {
    fn feed<'a>(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let Some(counter) = self.counter else {
            state.push_operator(operator);
            return Ok(());
        };
        let global_index = counter.as_u32();
        if self.frames.is_empty() {
            // The function body.
            self.frames.push(Frame {
                kind: FrameKind::Block,
                branched: 0,
            });
        }
        // The operator's own point goes with the path that runs it.
        self.pending += 1;
        // Whether to charge (and check) before the operator, and what build-up the path carries
        // after it.
        let (charge_first, after) = match &operator {
            Operator::Block { .. } => {
                self.frames.push(Frame {
                    kind: FrameKind::Block,
                    branched: 0,
                });
                (false, self.pending)
            }
            Operator::Loop { .. } => {
                self.frames.push(Frame {
                    kind: FrameKind::Loop,
                    branched: 0,
                });
                (true, 0)
            }
            Operator::If { .. } => {
                self.frames.push(Frame {
                    kind: FrameKind::If {
                        entry: self.pending,
                        then: None,
                    },
                    branched: 0,
                });
                (false, self.pending)
            }
            Operator::Else => match self.frames.last_mut() {
                Some(Frame {
                    kind: FrameKind::If { entry, then },
                    ..
                }) => {
                    *then = Some(self.pending);
                    (false, *entry)
                }
                _ => (true, 0),
            },
            Operator::End => match self.frames.pop() {
                // The end of the function (the frame popped was its body): as for a return.
                _ if self.frames.is_empty() => {
                    state.extend(&charge(global_index, self.pending as i64));
                    (false, 0)
                }
                Some(Frame {
                    kind: FrameKind::If { entry, then },
                    branched,
                }) => (false, self.join(then.unwrap_or(entry).max(branched), state)),
                Some(Frame { branched, .. }) => (false, self.join(branched, state)),
                None => (true, 0),
            },
            Operator::Br { relative_depth } => (self.branch_needs_charge(*relative_depth), 0),
            Operator::BrIf { relative_depth } => {
                let charge = self.branch_needs_charge(*relative_depth);
                (charge, if charge { 0 } else { self.pending })
            }
            Operator::BrTable { targets } => {
                let mut charge = false;
                for depth in targets
                    .targets()
                    .chain(std::iter::once(Ok(targets.default())))
                {
                    charge |= depth.map_or(true, |depth| self.branch_needs_charge(depth));
                }
                (charge, 0)
            }
            Operator::Unreachable => (false, 0),
            Operator::Call { .. } | Operator::CallIndirect { .. } => (true, 0),
            Operator::Return => {
                // Nothing runs after it here: the caller's next check sees the charge.
                state.extend(&charge(global_index, self.pending as i64));
                (false, 0)
            }
            other if ends_block(other) => (true, 0),
            _ => (false, self.pending),
        };
        if charge_first {
            state.extend(&charge(global_index, self.pending as i64));
            state.extend(&check(global_index));
        }
        self.pending = after;
        state.push_operator(operator);
        Ok(())
    }
}
/// `counter -= points` (a credit when negative).
fn charge(global_index: u32, points: i64) -> [Operator<'static>; 4] {
    [
        Operator::GlobalGet { global_index },
        Operator::I64Const { value: points },
        Operator::I64Sub,
        Operator::GlobalSet { global_index },
    ]
}

/// `if counter < 0 { unreachable }`.
fn check(global_index: u32) -> [Operator<'static>; 6] {
    [
        Operator::GlobalGet { global_index },
        Operator::I64Const { value: 0 },
        Operator::I64LtS,
        Operator::If {
            blockty: BlockType::Empty,
        },
        Operator::Unreachable,
        Operator::End,
    ]
}

/// Whether `operator` may branch or call: any not followed above is charged before it runs.
fn ends_block(operator: &Operator) -> bool {
    matches!(
        operator,
        Operator::Loop { .. }
            | Operator::End
            | Operator::If { .. }
            | Operator::Else
            | Operator::Br { .. }
            | Operator::BrTable { .. }
            | Operator::BrIf { .. }
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::Return
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::Catch { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
    )
}
