//! wasmesh-node: the node daemon and the `wasmesh` command-line tool.
//!
//! - [`cli`]: the command line (`wasmesh keys|manifest|run|node|publish|call|status`);
//! - [`executor`]: runs guests with wasmer in per-request sandboxes;
//! - [`module_file`]: reading a module from a `.wasm` or `.wat` file;
//! - [`daemon`]: [`daemon::Node`], a running node (start, addresses, shutdown);
//! - [`node`]: the node's logic: manifests in, blobs fetched and compiled, requests run;
//! - [`manifest_intake`]: whether a manifest is taken (trust, scope, names, rollback; pure);
//! - [`registry`]: what the node knows of modules and peers;
//! - [`status_intake`]: taking a peer's status into the peer table (pure);
//! - [`gossip`]: the libp2p control plane (gossipsub, sync, identify, ping);
//! - [`transfer`]: the QUIC data plane (blobs, forwarded requests), with
//!   [`connection_limits`] on what peers hold open;
//! - [`gateway`]: the HTTP API;
//! - [`per_peer`]: counts per peer key with a ceiling (connections, forwarded requests);
//! - [`config`], [`admission`], [`tls`], [`metrics`];
//! - [`store`]: manifests and verified blobs on disk, written for intake by [`store_writer`];
//! - [`fs_util`]: atomic file writes.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod address_scope;
pub mod admission;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection_limits;
pub mod daemon;
pub mod executor;
pub mod fs_util;
pub(crate) mod gateway;
pub mod gossip;
mod lock;
pub mod manifest_intake;
pub mod metrics;
pub mod module_file;
pub mod node;
pub mod per_peer;
pub mod registry;
pub mod request;
pub mod status_intake;
pub mod store;
pub mod store_writer;
pub mod tls;
pub mod transfer;
