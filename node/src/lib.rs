//! wasmesh-node: the node daemon and the `wasmesh` command-line tool.
//!
//! - [`cli`]: the command line (`wasmesh keys|manifest|run|node|publish|call|status`);
//! - [`executor`]: runs guests with wasmer in per-request sandboxes;
//! - [`module_file`]: reading a module from a `.wasm` or `.wat` file;
//! - [`store`]: manifests and verified blobs on disk;
//! - [`fs_util`]: atomic file writes.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admission;
pub mod cli;
pub mod clock;
pub mod executor;
pub mod fs_util;
pub mod module_file;
pub mod store;
pub mod tls;
