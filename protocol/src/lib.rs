//! wasmesh-protocol: the types every wasmesh component agrees on, and nothing else.
//!
//! This crate is pure: it performs no I/O, reads no clock and draws no randomness. Time and
//! randomness are arguments, so the node and the simulator drive the same logic.
//!
//! - [`codec`]: the one wire encoding (bincode 2, fixed-width integers) and size-limited decoding;
//! - [`coordinates`]: network coordinates, to estimate round trips to peers never pinged;
//! - [`hash`]: [`ContentHash`], the BLAKE3 content address of a blob;
//! - [`crypto`]: ed25519 [`PublicKey`], [`Signature`], [`Keypair`] and domain-tagged signing;
//! - [`limits`]: per-request resource [`Limits`] with defaults and ranges;
//! - [`manifest`]: [`Manifest`], [`SignedManifest`], verification and the rollback rule;
//! - [`module_ref`]: [`ModuleRef`], how requests name modules;
//! - [`bundle`]: [`PublishBundle`], the body of a publish request;
//! - [`receipt`]: what the node that ran a forwarded request signs about it;
//! - [`routing`]: the policy that picks where a request runs;
//! - [`wasm`]: static inspection of Wasm modules (validation, ABI, imports);
//! - [`wire`]: node-to-node messages (status, sync, blob fetch) and protocol names.
//! - [`holders`]: finding the holders of a blob through its directory nodes.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(unreachable_pub)]

pub mod bundle;
pub mod codec;
pub mod coordinates;
pub mod crypto;
pub mod hash;
mod hex_bytes;
pub mod holders;
pub mod limits;
pub mod manifest;
pub mod module_ref;
pub mod receipt;
pub mod routing;
pub mod wasm;
pub mod wire;

pub use bundle::PublishBundle;
pub use codec::DecodeError;
pub use crypto::{Keypair, PublicKey, Signature, SignatureError};
pub use hash::ContentHash;
pub use hex_bytes::HexError;
pub use limits::Limits;
pub use manifest::{Abi, Manifest, ModuleKey, SignedManifest, VerifyError};
pub use module_ref::ModuleRef;
