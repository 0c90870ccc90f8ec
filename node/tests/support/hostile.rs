//! Hostile guests, written as WAT text by code: shapes of guest code that do a lot of work
//! between two places a naive metering would check (straight-line bulk operations, host calls
//! over the whole memory, long call chains, start functions). Each is a raw-ABI or WASI module
//! that would run for seconds if nothing stopped it.

use std::fmt::Write;

/// Bytes in one WebAssembly page.
const PAGE: u32 = 65_536;

/// One hostile guest.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// A module name (`[a-z0-9-]`).
    pub name: &'static str,
    /// What it does, for messages.
    pub what: &'static str,
    /// Its WAT text.
    pub wat: String,
}

/// `count` repetitions of `line`, one per line.
fn repeat(line: &str, count: usize) -> String {
    let mut out = String::with_capacity((line.len() + 5) * count);
    for _ in 0..count {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A raw-ABI module with `pages` of memory whose handler runs `body` and answers nothing;
/// `extra` goes at module level.
fn raw(pages: u32, extra: &str, body: &str) -> String {
    format!(
        "(module\n  (memory (export \"memory\") {pages})\n{extra}\n  \
         (func (export \"wasmesh_alloc\") (param i32) (result i32) (i32.const 1024))\n  \
         (func (export \"wasmesh_handle\") (param i32 i32) (result i64)\n{body}    (i64.const 0)))\n"
    )
}

/// A WASI command with `pages` of memory importing `imports`, whose `_start` runs `body`.
fn wasi(pages: u32, imports: &str, body: &str) -> String {
    format!(
        "(module\n{imports}\n  (memory (export \"memory\") {pages})\n  \
         (func (export \"_start\")\n{body}))\n"
    )
}

/// `count` straight-line `memory.fill`s of all of a `pages`-page memory.
pub fn fill_bomb(pages: u32, count: usize) -> String {
    let fill = format!(
        "(memory.fill (i32.const 0) (i32.const 0) (i32.const {}))",
        pages * PAGE
    );
    raw(pages, "", &repeat(&fill, count))
}

/// `count` straight-line `memory.copy`s of half of a `pages`-page memory onto the other half.
pub fn copy_bomb(pages: u32, count: usize) -> String {
    let half = pages * PAGE / 2;
    let copy = format!("(memory.copy (i32.const {half}) (i32.const 0) (i32.const {half}))");
    raw(pages, "", &repeat(&copy, count))
}

/// `count` straight-line `memory.init`s from a passive data segment of `segment` bytes.
pub fn init_bomb(pages: u32, segment: usize, count: usize) -> String {
    let mut data = String::with_capacity(segment * 3 + 32);
    data.push_str("  (data $blob \"");
    for _ in 0..segment {
        data.push_str("\\2a");
    }
    data.push_str("\")");
    let init = format!("(memory.init $blob (i32.const 0) (i32.const 0) (i32.const {segment}))");
    raw(pages, &data, &repeat(&init, count))
}

/// `count` straight-line `table.fill`s of a table of `elements` function references.
pub fn table_fill_bomb(elements: u32, count: usize) -> String {
    let table = format!("  (table $t {elements} {elements} funcref)");
    let fill = format!("(table.fill $t (i32.const 0) (ref.null func) (i32.const {elements}))");
    raw(1, &table, &repeat(&fill, count))
}

/// `count` straight-line `random_get`s over all of a `pages`-page memory.
pub fn random_bomb(pages: u32, count: usize) -> String {
    let import = "  (import \"wasi_snapshot_preview1\" \"random_get\" \
                  (func $random_get (param i32 i32) (result i32)))";
    let call = format!(
        "(drop (call $random_get (i32.const 0) (i32.const {})))",
        pages * PAGE
    );
    wasi(pages, import, &repeat(&call, count))
}

/// `count` straight-line `fd_write`s to stdout and stderr, each of an iovec over all of a
/// `pages`-page memory.
pub fn write_bomb(pages: u32, count: usize) -> String {
    let import = "  (import \"wasi_snapshot_preview1\" \"fd_write\" \
                  (func $fd_write (param i32 i32 i32 i32) (result i32)))";
    let mut body = String::new();
    // One iovec at 0: (buf 0, len = the whole memory).
    let _ = writeln!(
        body,
        "    (i32.store (i32.const 4) (i32.const {}))",
        pages * PAGE
    );
    for fd in [1, 2] {
        let call = format!(
            "(drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 16)))"
        );
        body.push_str(&repeat(&call, count));
    }
    wasi(pages, import, &body)
}

/// A chain of `depth` functions without loops: each calls the next twice, then runs `tail`
/// straight-line multiplications of a global (2^depth calls in all).
pub fn call_chain(depth: usize, tail: usize) -> String {
    let mut extra = String::from("  (global $g (mut i64) (i64.const 3))\n");
    let step = "(global.set $g (i64.mul (global.get $g) (i64.const 7)))";
    for level in 0..depth {
        let calls = if level + 1 < depth {
            format!(
                "    (call $f{next})\n    (call $f{next})\n",
                next = level + 1
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            extra,
            "  (func $f{level}\n{calls}{})",
            repeat(step, tail).trim_end()
        );
    }
    raw(1, &extra, "    (call $f0)\n")
}

/// A start function that loops forever.
pub fn start_loop() -> String {
    raw(
        1,
        "  (func $spin (loop $forever (br $forever)))\n  (start $spin)",
        "",
    )
}

/// A start function that runs `count` straight-line `memory.fill`s of all of its memory.
pub fn start_fill_bomb(pages: u32, count: usize) -> String {
    let fill = format!(
        "(memory.fill (i32.const 0) (i32.const 0) (i32.const {}))",
        pages * PAGE
    );
    let start = format!("  (func $bomb\n{})\n  (start $bomb)", repeat(&fill, count));
    raw(pages, &start, "")
}

/// `count` straight-line `memory.grow`s by one page (each also touching the new page), from one
/// page up to the cap and beyond.
pub fn grow_steps(count: usize) -> String {
    let grow = "(i32.store8 (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)) (i32.const 1))";
    raw(1, "", &repeat(grow, count))
}

/// A function of `count` straight-line multiplications (no loop, no call, no bulk operation),
/// called many times from a chain.
pub fn straight_line(count: usize) -> String {
    call_chain(24, count)
}

/// The whole suite, sized for a 64 MiB memory cap and a 100 ms deadline.
pub fn suite() -> Vec<Hostile> {
    let pages = 1024;
    vec![
        Hostile {
            name: "fill-bomb",
            what: "3,000 straight-line memory.fill of 64 MiB",
            wat: fill_bomb(pages, 3_000),
        },
        Hostile {
            name: "copy-bomb",
            what: "3,000 straight-line memory.copy of 32 MiB",
            wat: copy_bomb(pages, 3_000),
        },
        Hostile {
            name: "init-bomb",
            what: "3,000 straight-line memory.init of a 1 MiB passive segment",
            wat: init_bomb(64, 1 << 20, 3_000),
        },
        Hostile {
            name: "table-fill-bomb",
            what: "3,000 straight-line table.fill of 1M elements",
            wat: table_fill_bomb(1 << 20, 3_000),
        },
        Hostile {
            name: "random-bomb",
            what: "200 straight-line random_get over 64 MiB",
            wat: random_bomb(pages, 200),
        },
        Hostile {
            name: "write-bomb",
            what: "200 straight-line fd_write over 64 MiB to stdout and to stderr",
            wat: write_bomb(pages, 200),
        },
        Hostile {
            name: "call-chain",
            what: "a chain of calls without loops, 2^40 calls",
            wat: call_chain(40, 200),
        },
        Hostile {
            name: "straight-line",
            what: "straight-line code of 20,000 operators, 2^24 times",
            wat: straight_line(5_000),
        },
        Hostile {
            name: "start-loop",
            what: "a start function that loops",
            wat: start_loop(),
        },
        Hostile {
            name: "start-fill-bomb",
            what: "a start function of 3,000 memory.fill of 64 MiB",
            wat: start_fill_bomb(pages, 3_000),
        },
        Hostile {
            name: "grow-steps",
            what: "20,000 straight-line memory.grow by one page",
            wat: grow_steps(20_000),
        },
    ]
}
