//! The node's decisions, without I/O: no sockets, no locks, no clock (times are arguments). What
//! the node does about manifests and peers is decided here, and unit- and property-tested here;
//! the control task, the data plane and the gateway carry it out.
//!
//! - [`manifests`]: whether a manifest is taken (trust, scope, names, rollback, equivocation);
//! - [`registry`]: the modules held, their owners and their digest;
//! - [`peers`]: the peer table, its bounds, statuses and introductions, dialing and back-off.

pub mod manifests;
pub mod peers;
pub mod registry;
