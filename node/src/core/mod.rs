//! The node's decisions, without I/O: no sockets, no locks, no clock (times are arguments). What
//! the node does about manifests and peers is decided here, and unit- and property-tested here;
//! the control task, the data plane and the gateway carry it out.
//!
//! - [`state`]: the control plane's state machine, `NodeState::handle(input, now) -> effects`
//!   (connections, dials, pings, probes, private-mesh [`admission`], peer exchange, redials
//!   of the [`bootstrap`] peers);
//! - [`directory`]: the holder directory this node keeps for the blobs it is a directory node
//!   of, and [`holder_search`]: when to announce this node's blobs and look up holders;
//! - [`peers`]: the peer table, its bounds, statuses and introductions, dialing and back-off;
//! - [`manifests`]: whether a manifest is taken (trust, scope, names, rollback, equivocation);
//! - [`registry`]: the modules held, their owners and their digest;
//! - [`routing`]: where a request can run, as the peer table shows it.

pub mod admission;
pub mod bootstrap;
pub mod directory;
pub mod holder_search;
pub mod manifests;
pub mod peers;
pub mod registry;
pub mod routing;
pub mod state;
