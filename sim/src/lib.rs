//! wasmesh-sim: multi-node simulation of wasmesh — real nodes on loopback with injected latency
//! and faults, and a seeded scale model that reuses `wasmesh_protocol::routing`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
