//! wasmesh-node: the node daemon and the `wasmesh` command-line tool.
//!
//! A running node ([`daemon::Node`]) is a handful of services, each built with what it needs:
//!
//! - [`core`]: the node's decisions without I/O (`NodeState`: connections, dials, pings,
//!   admission, statuses, introductions, the peer table, holder records; manifest intake; the
//!   module registry; routing candidates);
//! - [`control`]: the [`control::EventLoop`], the one task that owns the libp2p swarm and the
//!   core's state; manifests are verified off it (`control::verifier`), it builds and sends its
//!   own statuses, and it publishes the view (`view`) after each change; the rest of
//!   the node holds its [`control::handle::NodeHandle`];
//! - `policy`: what the node accepts (trust, admission, replication, caps, quotas, address
//!   scope), built once from the [`config`];
//! - `ingest` (`Ingestor`: blobs fetched and compiled), `publish` (`Publisher`), `request`
//!   (`Router`: routing, failover, hedging, answer checks), `forwarded` (`ForwardServer`:
//!   requests peers forward here), `local_run` (running here, and the load statuses report);
//! - [`data`]: the QUIC data plane (endpoint, blobs, forwarded requests), with
//!   [`connection_limits`] on what peers hold open;
//! - `gateway`: the HTTP API over a small facade (`gateway::api::Api`);
//! - [`executor`]: runs guests with wasmer in per-request sandboxes;
//! - [`store`]: manifests and verified blobs on disk, written for intake by `store_writer`;
//! - [`cli`]: the command line (`wasmesh keys|manifest|run|node|publish|call|status`), and
//!   [`module_file`]: reading a module from a `.wasm` or `.wat` file;
//! - [`rejection`]: every reason outside input is refused, named once;
//! - helpers with one job each: `per_peer`, `forward_shares`, `possession`, `refusal_log`,
//!   `disk_budget`, `hedge_budget`, `counted`, [`clock`], [`admission`], [`tls`], [`metrics`],
//!   `telemetry`, `fs_util`, `partial_blob`, `blob_tree`, `address_scope`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(unreachable_pub)]

mod address_scope;
pub mod admission;
mod blob_tree;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod connection_limits;
pub mod control;
pub mod core;
mod counted;
pub mod daemon;
pub mod data;
mod disk_budget;
pub mod executor;
mod forward_shares;
mod forwarded;
mod fs_util;
mod gateway;
mod hedge_budget;
mod ingest;
mod local_run;
mod lock;
pub mod metrics;
pub mod module_file;
pub mod own_addresses;
mod partial_blob;
mod per_peer;
mod policy;
mod possession;
mod publish;
mod refusal_log;
pub mod rejection;
mod request;
mod standing;
pub mod store;
mod store_writer;
mod telemetry;
pub mod tls;
mod view;
