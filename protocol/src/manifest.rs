//! Module manifests: what a publisher signs, how nodes check it, and which version wins.
//!
//! A [`SignedManifest`] is the unit of trust in wasmesh. It names a module, pins its Wasm blob by
//! BLAKE3 hash and size, states the guest ABI and resource limits, and carries the publisher's
//! ed25519 signature over [`MANIFEST_DOMAIN`] followed by the wire encoding of the [`Manifest`].
//! A module is identified by (publisher, name); a newer version replaces an older one and never
//! the other way round ([`check_replaces`]).

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::crypto::{Keypair, PublicKey, Signature};
use crate::hash::ContentHash;
use crate::limits::{Limits, LimitsError, MAX_MODULE_SIZE};

/// The domain tag that precedes the encoded manifest in the signed bytes.
pub const MANIFEST_DOMAIN: &[u8] = b"wasmesh/manifest/v1\0";

/// The largest encoded signed manifest accepted (4 KiB; a real one is about 200 bytes).
pub const MAX_SIGNED_MANIFEST_SIZE: usize = 4 * 1024;

/// Longest module name.
pub const MAX_NAME_LEN: usize = 64;

/// How the host talks to a guest (see DESIGN.md, Guest ABIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    /// Exports `memory`, `wasmesh_alloc` and `wasmesh_handle`; no imports.
    Raw,
    /// A WASI preview1 command: `_start`, stdin in, stdout out.
    Wasi,
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Abi::Raw => "raw",
            Abi::Wasi => "wasi",
        })
    }
}

/// What a publisher states about one version of a module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct Manifest {
    /// 1-64 characters of `[a-z0-9._-]`.
    pub name: String,
    /// Higher replaces lower for the same (publisher, name).
    pub version: u64,
    /// BLAKE3 of the Wasm binary.
    pub blob: ContentHash,
    /// Size of the Wasm binary in bytes.
    pub size: u64,
    /// The guest ABI, detected from the module's exports.
    pub abi: Abi,
    /// Per-request resource limits.
    pub limits: Limits,
    /// The signing key.
    pub publisher: PublicKey,
    /// When the publisher made it (milliseconds since the Unix epoch); informational.
    pub issued_at_ms: u64,
}

/// A manifest with its publisher's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct SignedManifest {
    /// The signed content.
    pub manifest: Manifest,
    /// Signature by `manifest.publisher` over [`MANIFEST_DOMAIN`] || encode(manifest).
    pub signature: Signature,
}

/// Identifies a module independently of its version: (publisher, name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Encode, Decode)]
pub struct ModuleKey {
    /// The publisher's key.
    pub publisher: PublicKey,
    /// The module name.
    pub name: String,
}

impl fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.publisher.fingerprint(), self.name)
    }
}

/// Why a manifest (or a blob against it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature does not verify against the publisher key in the manifest.
    #[error("bad signature: the manifest was not signed by publisher {publisher}")]
    BadSignature {
        /// The publisher key the manifest claims.
        publisher: PublicKey,
    },
    /// The signature is valid but the publisher is not in the trust list.
    #[error("untrusted publisher {publisher}: add it with --trust to accept its modules")]
    UntrustedPublisher {
        /// The publisher key.
        publisher: PublicKey,
    },
    /// The blob's BLAKE3 hash differs from the manifest's.
    #[error("hash mismatch: manifest says {expected}, module hashes to {actual}")]
    HashMismatch {
        /// Hash in the manifest.
        expected: ContentHash,
        /// Hash of the bytes offered.
        actual: ContentHash,
    },
    /// The blob's size differs from the manifest's.
    #[error("size mismatch: manifest says {expected} bytes, module has {actual}")]
    SizeMismatch {
        /// Size in the manifest.
        expected: u64,
        /// Size of the bytes offered.
        actual: u64,
    },
    /// The module name breaks the naming rule.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// A limit (or the module size) is outside the protocol's range.
    #[error("limits out of range: {0}")]
    LimitsOutOfRange(#[from] LimitsError),
}

/// Why a module name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty or longer than [`MAX_NAME_LEN`].
    #[error("{name:?} must be 1-{MAX_NAME_LEN} characters long")]
    Length {
        /// The name (truncated to 80 characters).
        name: String,
    },
    /// A character outside `[a-z0-9._-]`.
    #[error("{name:?} contains {found:?}; allowed are a-z, 0-9, '.', '_' and '-'")]
    Character {
        /// The name (truncated to 80 characters).
        name: String,
        /// The first offending character.
        found: char,
    },
}

/// Checks the naming rule: 1-64 characters of `[a-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let shown = || name.chars().take(80).collect::<String>();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length { name: shown() });
    }
    match name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        Some(found) => Err(NameError::Character {
            name: shown(),
            found,
        }),
        None => Ok(()),
    }
}

impl Manifest {
    /// The (publisher, name) this manifest is a version of.
    pub fn key(&self) -> ModuleKey {
        ModuleKey {
            publisher: self.publisher,
            name: self.name.clone(),
        }
    }

    /// Checks the name, the limits and the stated size against the protocol's rules.
    pub fn check_well_formed(&self) -> Result<(), VerifyError> {
        validate_name(&self.name)?;
        self.limits.check_in_range()?;
        if self.size == 0 || self.size > MAX_MODULE_SIZE {
            return Err(LimitsError {
                field: "size",
                value: self.size,
                min: 1,
                max: MAX_MODULE_SIZE,
            }
            .into());
        }
        Ok(())
    }

    /// Checks that `module` is the blob this manifest describes (size, then BLAKE3).
    pub fn verify_blob(&self, module: &[u8]) -> Result<(), VerifyError> {
        let actual_size = module.len() as u64;
        if actual_size != self.size {
            return Err(VerifyError::SizeMismatch {
                expected: self.size,
                actual: actual_size,
            });
        }
        let actual = ContentHash::of(module);
        if actual != self.blob {
            return Err(VerifyError::HashMismatch {
                expected: self.blob,
                actual,
            });
        }
        Ok(())
    }

    /// Signs the manifest. `keys` must be the publisher's key pair.
    pub fn sign(self, keys: &Keypair) -> SignedManifest {
        let signature = keys.sign_encoded(MANIFEST_DOMAIN, &self);
        SignedManifest {
            manifest: self,
            signature,
        }
    }
}

impl SignedManifest {
    /// Checks that the manifest is well formed and signed by the publisher it names. Says
    /// nothing about whether that publisher is trusted: see [`SignedManifest::verify`].
    pub fn verify_signature(&self) -> Result<&Manifest, VerifyError> {
        self.manifest.check_well_formed()?;
        let publisher = self.manifest.publisher;
        publisher
            .verify_encoded(MANIFEST_DOMAIN, &self.manifest, &self.signature)
            .map_err(|_| VerifyError::BadSignature { publisher })?;
        Ok(&self.manifest)
    }

    /// Full check for acceptance: well formed, publisher trusted, signature valid.
    /// The trust check runs first because it is cheap.
    pub fn verify(
        &self,
        is_trusted: impl Fn(&PublicKey) -> bool,
    ) -> Result<&Manifest, VerifyError> {
        let publisher = self.manifest.publisher;
        if !is_trusted(&publisher) {
            return Err(VerifyError::UntrustedPublisher { publisher });
        }
        self.verify_signature()
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a signed manifest of at most [`MAX_SIGNED_MANIFEST_SIZE`] bytes. Does not verify.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_SIGNED_MANIFEST_SIZE)
    }
}

/// Why a manifest may not replace the one held for its module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The offered version is not strictly higher than the one held.
    #[error("version {offered} of {module} does not replace the held version {held}")]
    NotNewer {
        /// The module.
        module: ModuleKey,
        /// Version held.
        held: u64,
        /// Version offered.
        offered: u64,
    },
    /// The publisher signed two different blobs under one version (equivocation), and the one
    /// held has the lower hash, which every node keeps.
    #[error(
        "version {version} is signed for two blobs, {held} and {offered}; every node keeps the lower hash"
    )]
    Equivocation {
        /// The version signed twice.
        version: u64,
        /// The blob held (the lower hash).
        held: ContentHash,
        /// The blob offered.
        offered: ContentHash,
    },
    /// The two manifests are of different modules (a caller bug).
    #[error("{held} and {offered} are different modules")]
    DifferentModule {
        /// Module held.
        held: ModuleKey,
        /// Module offered.
        offered: ModuleKey,
    },
}

/// The rollback rule: `offered` may replace `held` (the manifest currently held for the same
/// publisher and name, if any) only with a strictly higher version. One exception makes a mesh
/// converge when a publisher signs two blobs under one version ([`is_equivocation`]): the
/// manifest with the lower blob hash replaces the other, wherever it arrives first.
pub fn check_replaces(held: Option<&Manifest>, offered: &Manifest) -> Result<(), RollbackError> {
    let Some(held) = held else {
        return Ok(());
    };
    if held.publisher != offered.publisher || held.name != offered.name {
        return Err(RollbackError::DifferentModule {
            held: held.key(),
            offered: offered.key(),
        });
    }
    if is_equivocation(held, offered) {
        if offered.blob < held.blob {
            return Ok(());
        }
        return Err(RollbackError::Equivocation {
            version: offered.version,
            held: held.blob,
            offered: offered.blob,
        });
    }
    if offered.version <= held.version {
        return Err(RollbackError::NotNewer {
            module: offered.key(),
            held: held.version,
            offered: offered.version,
        });
    }
    Ok(())
}

/// Whether `offered` and `held` are one publisher's module at one version with different blobs:
/// the publisher signed both, and nodes must agree on one of them.
pub fn is_equivocation(held: &Manifest, offered: &Manifest) -> bool {
    held.key() == offered.key() && held.version == offered.version && held.blob != offered.blob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(keys: &Keypair, version: u64) -> Manifest {
        let module = b"\0asm\x01\0\0\0";
        Manifest {
            name: "echo".into(),
            version,
            blob: ContentHash::of(module),
            size: module.len() as u64,
            abi: Abi::Raw,
            limits: Limits::default(),
            publisher: keys.public(),
            issued_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn sign_then_verify() {
        let keys = Keypair::from_seed([1; 32]);
        let signed = manifest(&keys, 1).sign(&keys);
        let me = keys.public();
        assert!(signed.verify(|k| *k == me).is_ok());
        assert_eq!(
            signed.verify(|_| false),
            Err(VerifyError::UntrustedPublisher { publisher: me })
        );
    }

    #[test]
    fn another_key_cannot_sign_for_a_publisher() {
        let publisher = Keypair::from_seed([1; 32]);
        let forger = Keypair::from_seed([2; 32]);
        let forged = manifest(&publisher, 1).sign(&forger);
        assert!(matches!(
            forged.verify_signature(),
            Err(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn names() {
        for good in ["echo", "a", "thumb-nail_2.0", &"x".repeat(64)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        assert!(matches!(validate_name(""), Err(NameError::Length { .. })));
        assert!(matches!(
            validate_name(&"x".repeat(65)),
            Err(NameError::Length { .. })
        ));
        assert!(matches!(
            validate_name("Echo"),
            Err(NameError::Character { found: 'E', .. })
        ));
        assert!(matches!(
            validate_name("a/b"),
            Err(NameError::Character { found: '/', .. })
        ));
    }

    #[test]
    fn blob_checks() {
        let keys = Keypair::from_seed([1; 32]);
        let m = manifest(&keys, 1);
        assert_eq!(m.verify_blob(b"\0asm\x01\0\0\0"), Ok(()));
        assert!(matches!(
            m.verify_blob(b"\0asm"),
            Err(VerifyError::SizeMismatch { .. })
        ));
        assert!(matches!(
            m.verify_blob(b"\0asm\x01\0\0\x01"),
            Err(VerifyError::HashMismatch { .. })
        ));
    }

    #[test]
    fn rollback_rule() {
        let keys = Keypair::from_seed([1; 32]);
        let (v1, v2) = (manifest(&keys, 1), manifest(&keys, 2));
        assert_eq!(check_replaces(None, &v1), Ok(()));
        assert_eq!(check_replaces(Some(&v1), &v2), Ok(()));
        assert!(matches!(
            check_replaces(Some(&v2), &v1),
            Err(RollbackError::NotNewer {
                held: 2,
                offered: 1,
                ..
            })
        ));
        assert!(matches!(
            check_replaces(Some(&v2), &v2),
            Err(RollbackError::NotNewer { .. })
        ));
        let other = Manifest {
            name: "other".into(),
            ..v2.clone()
        };
        assert!(matches!(
            check_replaces(Some(&v1), &other),
            Err(RollbackError::DifferentModule { .. })
        ));
    }

    /// Two blobs signed under one version: whichever a node got first, every node ends with the
    /// lower hash.
    #[test]
    fn equivocation_converges_on_the_lower_hash() {
        let keys = Keypair::from_seed([1; 32]);
        let a = manifest(&keys, 3);
        let b = Manifest {
            blob: ContentHash::of(b"another blob"),
            ..a.clone()
        };
        let (low, high) = if a.blob < b.blob { (a, b) } else { (b, a) };
        assert!(is_equivocation(&low, &high) && is_equivocation(&high, &low));
        assert_eq!(check_replaces(Some(&high), &low), Ok(()));
        assert!(matches!(
            check_replaces(Some(&low), &high),
            Err(RollbackError::Equivocation { held, offered, version: 3, .. })
                if held == low.blob && offered == high.blob
        ));
        // The same blob re-signed under the same version is not equivocation, just not newer.
        let resigned = Manifest {
            issued_at_ms: low.issued_at_ms + 1,
            ..low.clone()
        };
        assert!(!is_equivocation(&low, &resigned));
        assert!(matches!(
            check_replaces(Some(&low), &resigned),
            Err(RollbackError::NotNewer { .. })
        ));
    }
}
