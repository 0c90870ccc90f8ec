//! What the tests, benches and simulations of wasmesh start and call nodes with, written once:
//!
//! - [`wait`]: waiting for a condition with a deadline, never a bare sleep;
//! - [`fixtures`]: the guests' fixtures and built examples, publisher keys, signed bundles,
//!   bytes that do or do not compress;
//! - [`gateway`]: a node's gateway called from async tests (the node's own
//!   [`wasmesh_node::client::Gateway`], off the runtime);
//! - [`in_process`]: nodes started in the test's process, each with its own data folder;
//! - [`process`]: `wasmesh node run` processes, as an operator starts them;
//! - [`nat`]: network namespaces with real NAT, for nodes behind home routers.
//!
//! Every helper panics with what it was doing when something is wrong: it serves tests.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod fixtures;
pub mod gateway;
pub mod in_process;
pub mod nat;
pub mod process;
pub mod wait;

pub use wasmesh_node::client::{Answer, Gateway};
