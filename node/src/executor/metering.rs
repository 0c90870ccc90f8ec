//! Fuel metering: every Wasm operator costs one point, and a bulk operation one point more per
//! [`BULK_BYTES_PER_POINT`] bytes, or [`POINTS_PER_TABLE_ELEMENT`] per table element, it
//! touches; points are charged, and the
//! counter checked, wherever execution could otherwise run on unchecked: before a call, on
//! entering a loop and on branching back to one, before every bulk operation and `memory.grow`,
//! at every function end, and after at most [`STRAIGHT_LINE_POINTS`] of straight-line code.
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
//! - they are charged (the counter is lowered) and checked (is the counter negative? then trap)
//!   before a call, entering a loop and branching back to one, usually once per loop
//!   iteration; before a return and at the end of a function; before each bulk operation
//!   (`memory.fill`, `memory.copy`, `memory.init`, `table.fill`, `table.copy`, `table.init`,
//!   `table.grow`), whose length operand is read first so that the operation is charged for what
//!   it will touch ([`bulk_charge`]), and before `memory.grow` ([`GROW_POINTS`]); and in
//!   straight-line code once the build-up reaches [`STRAIGHT_LINE_POINTS`]. The check reuses the
//!   value just stored instead of loading it again.
//!
//! So between two checks a guest runs at most [`STRAIGHT_LINE_POINTS`] plain operators, or one
//! bulk operation already paid for. The fuel a request is granted bounds the work it may do, and
//! the watchdog, which stops a guest by making the counter negative, is noticed within that much
//! work whatever the shape of the code (a function body of millions of operators without a loop,
//! a chain of calls, a run of bulk operations).
//!
//! The counter is a mutable i64 global appended to the module and exported as [`FUEL_EXPORT`];
//! the sandbox finds it when the instance's globals are created (`fuel_cell::FuelCell`), sets it
//! before a request and reads it after. A second appended global (i32, not exported) holds a
//! bulk operation's length while its charge is computed. Only the control flow of the features
//! modules may use (`wasmesh_protocol::wasm::FEATURES`, checked before compiling) is followed;
//! any other branching operator is charged before it runs.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, Mutability, Type};
use wasmer_compiler::wasmparser::{BlockType, Operator};
use wasmer_types::{GlobalIndex, ModuleInfo};

/// Fuel a module's start function may use (it runs while the instance is created, before the
/// request's fuel is set; the request's deadline and watchdog apply to it as well).
pub(crate) const START_FUEL: u64 = 1_000_000;

/// Bytes a bulk memory operation (`memory.fill`, `memory.copy`, `memory.init`) may touch per
/// point: about what a plain operator costs in time (BENCHMARKS.md, "Guest time").
pub(crate) const BULK_BYTES_PER_POINT: u64 = 4;
const _: () = assert!(BULK_BYTES_PER_POINT.is_power_of_two());

/// Points a table operation (`table.fill`, `table.copy`, `table.init`, `table.grow`) costs per
/// element it touches (BENCHMARKS.md, "Guest time").
pub(crate) const POINTS_PER_TABLE_ELEMENT: u64 = 8;
const _: () = assert!(POINTS_PER_TABLE_ELEMENT.is_power_of_two());

/// Points a bulk operation costs beyond its length (the call into the runtime it makes).
pub(crate) const BULK_BASE_POINTS: u64 = 16;

/// Points `memory.grow` costs (a call into the runtime that changes the memory's protection).
pub(crate) const GROW_POINTS: u64 = 1_000;

/// Straight-line build-up after which a charge and check is made anyway: a function body of
/// millions of operators without a loop or call still meets a check every this many operators
/// (about 10 us of guest code).
pub(crate) const STRAIGHT_LINE_POINTS: u64 = 10_000;

/// The export under which a compiled module keeps its remaining fuel.
pub(crate) const FUEL_EXPORT: &str = "wasmesh_fuel_remaining";

/// The globals the middleware appends to a module.
#[derive(Debug, Clone, Copy)]
struct Globals {
    /// The fuel counter (i64, exported as [`FUEL_EXPORT`]).
    counter: GlobalIndex,
    /// Where a bulk operation's length waits while its charge is computed (i32).
    length: GlobalIndex,
}

/// The metering middleware. One serves any number of modules, compiled one at a time (the
/// module cache serialises compilations): each compilation first appends the counter to its
/// module, then meters that module's functions.
#[derive(Debug, Default)]
pub(crate) struct FuelMetering {
    /// The globals of the module being compiled.
    globals: Mutex<Option<Globals>>,
}

impl ModuleMiddleware for FuelMetering {
    fn generate_function_middleware(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware> {
        let globals = *self
            .globals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Box::new(FunctionMetering {
            globals,
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
        let counter = module_info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        // What a module's start function may use, as it runs while the instance is created;
        // every request then sets its own fuel before calling in.
        module_info
            .global_initializers
            .push(GlobalInit::I64Const(START_FUEL as i64));
        module_info
            .exports
            .insert(FUEL_EXPORT.to_owned(), ExportIndex::Global(counter));
        let length = module_info
            .globals
            .push(GlobalType::new(Type::I32, Mutability::Var));
        module_info
            .global_initializers
            .push(GlobalInit::I32Const(0));
        *self
            .globals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Globals { counter, length });
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
    /// The module's globals (`None` only if the module was never transformed: then nothing is
    /// metered, and the sandbox refuses to run the module, finding no counter).
    globals: Option<Globals>,
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

/// What to do before an operator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Nothing: its point builds up.
    Nothing,
    /// Charge the build-up and check the counter.
    ChargeAndCheck,
    /// Charge the build-up, [`BULK_BASE_POINTS`] and what the bulk operation will touch (its
    /// length operand, on top of the stack, scaled), and check.
    ChargeBulk { scale: Scale },
}

/// How a bulk operation's length becomes points: shifted right (units per point) or left
/// (points per unit) by the power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    UnitsPerPoint(u32),
    PointsPerUnit(u32),
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
            if let Some(globals) = self.globals {
                let credit = -((others - falling) as i64);
                state.extend(&charge(globals.counter.as_u32(), credit));
            }
            return others + 1;
        }
        falling.max(others) + 1
    }

    /// What `operator` needs before it runs, and the build-up the path carries after it; notes
    /// the control frames it opens and closes.
    fn plan<'a>(
        &mut self,
        operator: &Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> (Before, u64) {
        use Before::{ChargeAndCheck, Nothing};
        match operator {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End => self.plan_frame(operator, state),
            Operator::Br { relative_depth } => {
                (charge_if(self.branch_needs_charge(*relative_depth)), 0)
            }
            Operator::BrIf { relative_depth } => {
                let charge = self.branch_needs_charge(*relative_depth);
                (charge_if(charge), if charge { 0 } else { self.pending })
            }
            Operator::BrTable { targets } => {
                let mut charge = false;
                for depth in targets
                    .targets()
                    .chain(std::iter::once(Ok(targets.default())))
                {
                    charge |= depth.map_or(true, |depth| self.branch_needs_charge(depth));
                }
                (charge_if(charge), 0)
            }
            Operator::Unreachable => (Nothing, 0),
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::Return => {
                (ChargeAndCheck, 0)
            }
            Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. } => {
                let scale = Scale::UnitsPerPoint(BULK_BYTES_PER_POINT.trailing_zeros());
                (Before::ChargeBulk { scale }, 0)
            }
            Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::TableGrow { .. } => {
                let scale = Scale::PointsPerUnit(POINTS_PER_TABLE_ELEMENT.trailing_zeros());
                (Before::ChargeBulk { scale }, 0)
            }
            Operator::MemoryGrow { .. } => {
                self.pending += GROW_POINTS;
                (ChargeAndCheck, 0)
            }
            other if ends_block(other) => (ChargeAndCheck, 0),
            _ if self.pending >= STRAIGHT_LINE_POINTS => (ChargeAndCheck, 0),
            _ => (Nothing, self.pending),
        }
    }

    /// [`Self::plan`] for the operators that open, divide and close control frames.
    fn plan_frame<'a>(
        &mut self,
        operator: &Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> (Before, u64) {
        use Before::{ChargeAndCheck, Nothing};
        let kind = match operator {
            Operator::Block { .. } => FrameKind::Block,
            Operator::Loop { .. } => FrameKind::Loop,
            Operator::If { .. } => FrameKind::If {
                entry: self.pending,
                then: None,
            },
            Operator::Else => {
                return match self.frames.last_mut() {
                    Some(Frame {
                        kind: FrameKind::If { entry, then },
                        ..
                    }) => {
                        *then = Some(self.pending);
                        (Nothing, *entry)
                    }
                    _ => (ChargeAndCheck, 0),
                };
            }
            _ => {
                return match self.frames.pop() {
                    // The end of the function (the frame popped was its body): as for a return.
                    _ if self.frames.is_empty() => (ChargeAndCheck, 0),
                    Some(Frame {
                        kind: FrameKind::If { entry, then },
                        branched,
                    }) => (
                        Nothing,
                        self.join(then.unwrap_or(entry).max(branched), state),
                    ),
                    Some(Frame { branched, .. }) => (Nothing, self.join(branched, state)),
                    None => (ChargeAndCheck, 0),
                };
            }
        };
        self.frames.push(Frame { kind, branched: 0 });
        match kind {
            FrameKind::Loop => (ChargeAndCheck, 0),
            _ => (Nothing, self.pending),
        }
    }
}

fn charge_if(needed: bool) -> Before {
    if needed {
        Before::ChargeAndCheck
    } else {
        Before::Nothing
    }
}

impl FunctionMiddleware for FunctionMetering {
    fn feed<'a>(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let Some(globals) = self.globals else {
            state.push_operator(operator);
            return Ok(());
        };
        let counter = globals.counter.as_u32();
        if self.frames.is_empty() {
            // The function body.
            self.frames.push(Frame {
                kind: FrameKind::Block,
                branched: 0,
            });
        }
        // The operator's own point goes with the path that runs it.
        self.pending += 1;
        let (before, after) = self.plan(&operator, state);
        match before {
            Before::Nothing => {}
            Before::ChargeAndCheck => {
                state.extend(&charge(counter, self.pending as i64));
                state.extend(&check(counter));
            }
            Before::ChargeBulk { scale } => {
                let points = self.pending + BULK_BASE_POINTS;
                state.extend(&bulk_charge(
                    counter,
                    globals.length.as_u32(),
                    points,
                    scale,
                ));
                state.extend(&check(counter));
                state.push_operator(Operator::GlobalGet {
                    global_index: globals.length.as_u32(),
                });
            }
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

/// Takes a bulk operation's length (an i32 on top of the stack) into `length`, and
/// `counter -= points + scaled(length)`. The caller puts the length back after the check.
fn bulk_charge(counter: u32, length: u32, points: u64, scale: Scale) -> [Operator<'static>; 10] {
    let (shift, operator) = match scale {
        Scale::UnitsPerPoint(shift) => (shift, Operator::I64ShrU),
        Scale::PointsPerUnit(shift) => (shift, Operator::I64Shl),
    };
    [
        Operator::GlobalSet {
            global_index: length,
        },
        Operator::GlobalGet {
            global_index: counter,
        },
        Operator::GlobalGet {
            global_index: length,
        },
        Operator::I64ExtendI32U,
        Operator::I64Const {
            value: i64::from(shift),
        },
        operator,
        Operator::I64Const {
            value: points as i64,
        },
        Operator::I64Add,
        Operator::I64Sub,
        Operator::GlobalSet {
            global_index: counter,
        },
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
