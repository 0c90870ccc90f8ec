//! wasmesh-node: the node daemon and the `wasmesh` command-line tool.
//!
//! - [`cli`]: the command line (`wasmesh keys|manifest|run|node|publish|call|status`);
//! - [`executor`]: runs guests with wasmer in per-request sandboxes;
//! - [`module_file`]: reading a module from a `.wasm` or `.wat` file;
//! - [`daemon`]: [`daemon::Node`], a running node (start, addresses, shutdown);
//! - [`core`]: the node's decisions without I/O: the control plane's state machine
//!   (`NodeState::handle`), the peer table, manifest intake, the module registry;
//! - [`control`]: the one task that owns the libp2p swarm (gossipsub, sync, identify, ping) and
//!   the node's state (`control::owner`); the rest of the node holds its
//!   [`control::handle::NodeHandle`] and reads the [`view`] it publishes after each change;
//! - [`node`]: the node's services (keys, policy, store, executor, data plane); [`ingest`]
//!   (blobs fetched and compiled), [`publish`], [`request`] (routing, failover, hedging) and
//!   [`forwarded`] (requests peers forward here) are its work;
//! - [`data`]: the QUIC data plane (endpoint, blobs, forwarded requests), with
//!   [`connection_limits`] on what peers hold open;
//! - [`gateway`]: the HTTP API;
//! - [`per_peer`]: counts per peer key with a ceiling (connections, forwarded requests), and
//!   [`forward_shares`]: the share of the capacity forwarded requests may hold;
//! - `possession`: claimed holders prove they hold a blob before they are routed to;
//! - [`refusal_log`]: one log line per peer and interval for refused input;
//! - [`config`], [`admission`], [`tls`], [`metrics`], [`telemetry`] (logs, traces);
//! - [`store`]: manifests and verified blobs on disk, written for intake by [`store_writer`];
//! - [`fs_util`]: atomic file writes.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod address_scope;
pub mod admission;
pub mod blob_tree;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection_limits;
pub mod control;
pub mod core;
mod counted;
pub mod daemon;
pub mod data;
pub mod executor;
pub mod forward_shares;
pub mod forwarded;
pub mod fs_util;
pub(crate) mod gateway;
mod hedge_budget;
pub mod ingest;
mod lock;
pub mod metrics;
pub mod module_file;
pub mod node;
pub mod partial_blob;
pub mod per_peer;
mod possession;
pub mod publish;
pub mod refusal_log;
pub mod request;
pub mod store;
pub mod store_writer;
pub mod telemetry;
pub mod tls;
pub mod view;
