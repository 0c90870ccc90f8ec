//! Publish bundles: a signed manifest together with the module bytes it describes.
//!
//! This is the body of `POST /v1/publish`. The node verifies the manifest, then the bytes against
//! it, before storing anything.

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::limits::MAX_MODULE_SIZE;
use crate::manifest::{MAX_SIGNED_MANIFEST_SIZE, SignedManifest};

/// The largest encoded bundle: the largest module plus a manifest and framing.
pub const MAX_BUNDLE_SIZE: usize = MAX_MODULE_SIZE as usize + MAX_SIGNED_MANIFEST_SIZE + 64;

/// A signed manifest and the Wasm binary it names.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PublishBundle {
    /// The manifest, signed by its publisher.
    pub manifest: SignedManifest,
    /// The Wasm binary (`manifest.blob` is its BLAKE3 hash).
    pub module: Vec<u8>,
}

impl PublishBundle {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a bundle of at most `max_len` bytes (at most [`MAX_BUNDLE_SIZE`]). Does not verify.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, DecodeError> {
        codec::decode(bytes, max_len.min(MAX_BUNDLE_SIZE))
    }
}
