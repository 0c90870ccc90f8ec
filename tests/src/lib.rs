//! Helpers for the end-to-end tests in `tests/tests/` that only they need (peers that lie, a
//! stranger speaking the raw protocol, the raw codec); everything else comes from
//! `wasmesh-testkit`, re-exported here.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod liar;
pub mod raw_codec;
pub mod stranger;

pub use wasmesh_testkit::fixtures::{
    bundle, code_like_bytes, fixture, fixture_path, incompressible_bytes, publisher,
};
pub use wasmesh_testkit::gateway;
pub use wasmesh_testkit::in_process::{TestNode, invoke, publish};
pub use wasmesh_testkit::process::wasmesh_bin;
pub use wasmesh_testkit::wait::{MESH_DEADLINE, wait_until_async};
pub use wasmesh_testkit::{Answer, Gateway};
