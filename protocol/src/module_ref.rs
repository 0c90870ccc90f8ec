//! How users name a module in requests: `name`, `name@version`, `name~<key prefix>`,
//! `name~<key prefix>@version` or `blake3:<hex>`.
//!
//! A name alone means the module of that name's owner on the node asked (the first publisher it
//! accepted the name from). Where an operator deliberately lets several publishers use one name
//! (by scoping their keys to it), `~` and the first 8 to 64 hex characters of a publisher's key
//! pick that publisher's module.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};

use crate::crypto::PublicKey;
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
    /// A module of one publisher, named by a prefix of its key.
    Published {
        /// Module name.
        name: String,
        /// Lowercase hex, 8 to 64 characters: the start of the publisher's key.
        publisher: String,
        /// Exact version, or the newest.
        version: Option<u64>,
    },
    /// The module whose blob has this hash.
    Hash(ContentHash),
}

/// Fewest hex characters of a key a reference may name a publisher by.
pub const MIN_KEY_PREFIX: usize = 8;

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
    /// The part after `~` is not 8 to 64 lowercase hex characters.
    #[error("{text:?} is not a publisher key prefix (8 to 64 lowercase hex characters)")]
    Publisher {
        /// The text after `~`.
        text: String,
    },
    /// The part after `blake3:` is not 64 hex characters.
    #[error("bad content hash: {0}")]
    Hash(#[from] crate::hex_bytes::HexError),
}

impl ModuleRef {
    /// Whether `manifest` is a version this reference names (for `Name`, any version of any
    /// publisher: the node narrows that to the name's owner).
    pub fn matches(&self, manifest: &Manifest) -> bool {
        match self {
            ModuleRef::Name(name) => manifest.name == *name,
            ModuleRef::Version { name, version } => {
                manifest.name == *name && manifest.version == *version
            }
            ModuleRef::Published {
                name,
                publisher,
                version,
            } => {
                manifest.name == *name
                    && version.is_none_or(|v| manifest.version == v)
                    && key_starts_with(&manifest.publisher, publisher)
            }
            ModuleRef::Hash(hash) => manifest.blob == *hash,
        }
    }

    /// The module name it names, if it names one.
    pub fn name(&self) -> Option<&str> {
        match self {
            ModuleRef::Name(name)
            | ModuleRef::Version { name, .. }
            | ModuleRef::Published { name, .. } => Some(name),
            ModuleRef::Hash(_) => None,
        }
    }
}

fn key_starts_with(key: &PublicKey, prefix: &str) -> bool {
    key.to_string().starts_with(prefix)
}

fn parse_version(text: &str) -> Result<u64, ModuleRefError> {
    text.parse().map_err(|_| ModuleRefError::Version {
        text: text.chars().take(40).collect(),
    })
}

impl FromStr for ModuleRef {
    type Err = ModuleRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(hex) = text.strip_prefix(HASH_PREFIX) {
            return Ok(ModuleRef::Hash(hex.parse()?));
        }
        let (rest, version) = match text.split_once('@') {
            Some((rest, version)) => (rest, Some(parse_version(version)?)),
            None => (text, None),
        };
        let (name, publisher) = match rest.split_once('~') {
            Some((name, publisher)) => (name, Some(publisher)),
            None => (rest, None),
        };
        validate_name(name)?;
        let name = name.to_owned();
        Ok(match (publisher, version) {
            (Some(publisher), version) => {
                let well_formed = (MIN_KEY_PREFIX..=64).contains(&publisher.len())
                    && publisher
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !well_formed {
                    return Err(ModuleRefError::Publisher {
                        text: publisher.chars().take(80).collect(),
                    });
                }
                ModuleRef::Published {
                    name,
                    publisher: publisher.to_owned(),
                    version,
                }
            }
            (None, Some(version)) => ModuleRef::Version { name, version },
            (None, None) => ModuleRef::Name(name),
        })
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleRef::Name(name) => f.write_str(name),
            ModuleRef::Version { name, version } => write!(f, "{name}@{version}"),
            ModuleRef::Published {
                name,
                publisher,
                version: None,
            } => write!(f, "{name}~{publisher}"),
            ModuleRef::Published {
                name,
                publisher,
                version: Some(version),
            } => write!(f, "{name}~{publisher}@{version}"),
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
        assert_eq!(
            "echo~0123abcd@3".parse(),
            Ok(ModuleRef::Published {
                name: "echo".into(),
                publisher: "0123abcd".into(),
                version: Some(3)
            })
        );
        for text in [
            "echo",
            "echo@3",
            "echo~0123abcd",
            "echo~0123abcd@3",
            &hash.to_prefixed(),
        ] {
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
        for short_or_upper in ["echo~0123abc", "echo~0123ABCD", "echo~", "~0123abcd"] {
            assert!(
                short_or_upper.parse::<ModuleRef>().is_err(),
                "{short_or_upper}"
            );
        }
        assert!(matches!(
            "".parse::<ModuleRef>(),
            Err(ModuleRefError::Name(_))
        ));
    }
}
