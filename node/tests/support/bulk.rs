//! Straight-line runs of bulk operations as Wasm modules, for the metering property test
//! (`node/tests/metering_properties.rs`) and the fuzz target `metered_guests`.

/// The memory the generated modules declare, in pages (4 MiB).
pub const PAGES: u32 = 64;
/// Elements of the generated modules' table.
pub const TABLE: u32 = 65_536;
/// Bytes of the passive data segment.
pub const SEGMENT: u32 = 65_536;

/// One bulk operation with its operands.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Bulk {
    Fill { at: u32, len: u32 },
    Copy { to: u32, from: u32, len: u32 },
    Init { at: u32, offset: u32, len: u32 },
    TableFill { at: u32, len: u32 },
    TableCopy { to: u32, from: u32, len: u32 },
    TableInit { at: u32, len: u32 },
    TableGrow { len: u32 },
    MemoryGrow { pages: u32 },
}

impl Bulk {
    /// The least fuel it must be charged.
    pub fn cost(&self) -> u64 {
        match *self {
            Bulk::Fill { len, .. } | Bulk::Copy { len, .. } | Bulk::Init { len, .. } => {
                u64::from(len) / 4
            }
            Bulk::TableFill { len, .. }
            | Bulk::TableCopy { len, .. }
            | Bulk::TableInit { len, .. }
            | Bulk::TableGrow { len } => u64::from(len) * 8,
            Bulk::MemoryGrow { .. } => 1_000,
        }
    }

    pub fn wat(&self) -> String {
        match *self {
            Bulk::Fill { at, len } => {
                format!("(memory.fill (i32.const {at}) (i32.const 7) (i32.const {len}))")
            }
            Bulk::Copy { to, from, len } => {
                format!("(memory.copy (i32.const {to}) (i32.const {from}) (i32.const {len}))")
            }
            Bulk::Init { at, offset, len } => format!(
                "(memory.init $blob (i32.const {at}) (i32.const {offset}) (i32.const {len}))"
            ),
            Bulk::TableFill { at, len } => {
                format!("(table.fill $t (i32.const {at}) (ref.func $f) (i32.const {len}))")
            }
            Bulk::TableCopy { to, from, len } => {
                format!("(table.copy $t $t (i32.const {to}) (i32.const {from}) (i32.const {len}))")
            }
            Bulk::TableInit { at, len } => {
                format!("(table.init $t $refs (i32.const {at}) (i32.const 0) (i32.const {len}))")
            }
            Bulk::TableGrow { len } => {
                format!("(drop (table.grow $t (ref.null func) (i32.const {len})))")
            }
            Bulk::MemoryGrow { pages } => format!("(drop (memory.grow (i32.const {pages})))"),
        }
    }
}

/// A raw-ABI module whose handler runs `ops` straight through, `repeat` times over.
pub fn module(ops: &[Bulk], repeat: usize) -> Vec<u8> {
    let mut body = String::new();
    for _ in 0..repeat {
        for op in ops {
            body.push_str("    ");
            body.push_str(&op.wat());
            body.push('\n');
        }
    }
    let refs = "$f ".repeat(4_096);
    let wat = format!(
        r#"(module
  (memory (export "memory") {PAGES})
  (table $t {TABLE} funcref)
  (data $blob "{segment}")
  (elem $refs func {refs})
  (func $f)
  (func (export "wasmesh_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "wasmesh_handle") (param i32 i32) (result i64)
{body}    (i64.const 0)))"#,
        segment = "\\01".repeat(SEGMENT as usize),
    );
    wat::parse_str(&wat).expect("valid WAT")
}
