//! wasmesh-keys: everything about keys that touches files or other crates' key types.
//!
//! - [`key_file`]: generate, save (mode 0600, never overwrite) and load node and publisher keys;
//! - [`trust`]: the publisher keys a node accepts, each scoped to some names or to all;
//! - [`membership`]: certificates by which a mesh admin admits nodes to a private mesh;
//! - [`identity`]: the libp2p identity (peer id) derived from a node key.
//!
//! The key types themselves ([`PublicKey`], [`Keypair`]) live in `wasmesh-protocol`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(unreachable_pub)]

pub mod identity;
pub mod key_file;
pub mod membership;
pub mod trust;

pub use key_file::KeyFileError;
pub use membership::{CertError, MembershipCert, SignedMembershipCert};
pub use trust::{Scope, TrustEntry, TrustError, TrustList};
pub use wasmesh_protocol::{Keypair, PublicKey};
