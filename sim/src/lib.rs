//! wasmesh-sim: multi-node simulation of wasmesh.
//!
//! - Real meshes: [`cluster`] runs real nodes on loopback behind [`relay`]s that inject the
//!   delays of a [`latency`] model and the faults of a [`scenario`]; [`runner`] drives a
//!   scenario with [`load`], and the run's summary (what became ready where, routes against
//!   the oracle, the scenario's checks, the [`traffic`] per node) is its [`report`].
//! - The [`scale`] model: a seeded discrete-event simulation of gossip and routing over
//!   thousands of nodes, using `wasmesh_protocol::routing` itself, and the
//!   [`control_traffic`] per node it implies.
//! - The [`demo`]: a mesh of real nodes in real cities, the README's first command.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(unreachable_pub)]

pub mod cities;
pub mod cluster;
pub mod control_traffic;
pub mod demo;
pub mod kademlia;
pub mod latency;
pub mod load;
pub mod plot;
pub mod relay;
pub mod report;
pub mod runner;
pub mod scale;
pub mod scenario;
mod summary;
pub mod traffic;
