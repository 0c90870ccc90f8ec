//! How users name a module in requests: `name`, `name@version` or `blake3:<hex>`.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};

use crate::hash::{ContentHash, HASH_PREFIX};
use crate::manifest::{Manifest, NameError, validate_name};

/// A reference to a module, as written in `wasmesh call` and `/v1/invoke/{module_ref}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ModuleRef {
    /// The newest version of a module of this name.
    Name(String),
    /// One version of a module.
    Version {
        /// Module name.
        name: String,
        /// Exact version.
        version: u64,
    },
    /// The module whose blob has this hash.
    Hash(ContentHash),
}

/// Why a module reference could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleRefError {
    /// The name part breaks the naming rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The part after `@` is not a version number.
    #[error("{text:?} is not a version number (expected name@N)")]
    Version {
        /// The text after `@`.
        text: String,
    },
    /// The part after `blake3:` is not 64 hex characters.
    #[error("bad content hash: {0}")]
    Hash(#[from] crate::hex_bytes::HexError),
}

impl ModuleRef {
    /// Whether `manifest` is a version this reference names (for `Name`, any version).
    pub fn matches(&self, manifest: &Manifest) -> bool {
        match self {
            ModuleRef::Name(name) => manifest.name == *name,
            ModuleRef::Version { name, version } => {
                manifest.name == *name && manifest.version == *version
            }
            ModuleRef::Hash(hash) => manifest.blob == *hash,
        }
    }
}

impl FromStr for ModuleRef {
    type Err = ModuleRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(hex) = text.strip_prefix(HASH_PREFIX) {
            return Ok(ModuleRef::Hash(hex.parse()?));
        }
        match text.split_once('@') {
            Some((name, version)) => {
                validate_name(name)?;
                let version = version.parse().map_err(|_| ModuleRefError::Version {
                    text: version.chars().take(40).collect(),
                })?;
                Ok(ModuleRef::Version {
                    name: name.to_owned(),
                    version,
                })
            }
            None => {
                validate_name(text)?;
                Ok(ModuleRef::Name(text.to_owned()))
            }
        }
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleRef::Name(name) => f.write_str(name),
            ModuleRef::Version { name, version } => write!(f, "{name}@{version}"),
            ModuleRef::Hash(hash) => write!(f, "{}", hash.to_prefixed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("echo".parse(), Ok(ModuleRef::Name("echo".into())));
        assert_eq!(
            "echo@3".parse(),
            Ok(ModuleRef::Version {
                name: "echo".into(),
                version: 3
            })
        );
        let hash = ContentHash::of(b"x");
        assert_eq!(hash.to_prefixed().parse(), Ok(ModuleRef::Hash(hash)));
        for text in ["echo", "echo@3", &hash.to_prefixed()] {
            assert_eq!(text.parse::<ModuleRef>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_references() {
        assert!(matches!(
            "echo@x".parse::<ModuleRef>(),
            Err(ModuleRefError::Version { .. })
        ));
        assert!(matches!(
            "Echo".parse::<ModuleRef>(),
            Err(ModuleRefError::Name(_))
        ));
        assert!(matches!(
            "blake3:12".parse::<ModuleRef>(),
            Err(ModuleRefError::Hash(_))
        ));
        assert!(matches!(
            "".parse::<ModuleRef>(),
            Err(ModuleRefError::Name(_))
        ));
    }
}
