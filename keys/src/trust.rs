//! Trust lists: the publisher keys whose manifests a node accepts.

use std::collections::BTreeSet;

use wasmesh_protocol::{HexError, PublicKey};

/// A set of trusted publisher keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    keys: BTreeSet<PublicKey>,
}

/// A trust list entry that is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust entry {entry:?} is not a public key: {reason}")]
pub struct TrustError {
    /// The offending text.
    pub entry: String,
    /// Why it was refused.
    pub reason: HexError,
}

impl TrustList {
    /// Parses hex keys (64 hex characters each), ignoring duplicates and surrounding whitespace.
    /// The first malformed entry is reported with its text.
    pub fn parse<I, S>(entries: I) -> Result<Self, TrustError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = BTreeSet::new();
        for entry in entries {
            let text = entry.as_ref().trim();
            let key = text.parse::<PublicKey>().map_err(|reason| TrustError {
                entry: text.chars().take(80).collect(),
                reason,
            })?;
            keys.insert(key);
        }
        Ok(Self { keys })
    }

    /// Adds a key; returns whether it was new.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        self.keys.insert(key)
    }

    /// Whether `key` is trusted.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the list is empty (then no publisher is trusted).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter()
    }
}

impl FromIterator<PublicKey> for TrustList {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        Self {
            keys: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_deduplicates() {
        let a = "aa".repeat(32);
        let b = "BB".repeat(32);
        let list = TrustList::parse([a.as_str(), &b, &format!(" {a} ")]).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&a.parse().unwrap()));
        assert!(list.contains(&"bb".repeat(32).parse().unwrap()));
    }

    #[test]
    fn names_the_offending_entry() {
        let err = TrustList::parse(["aa".repeat(32), "not-a-key".into()]).unwrap_err();
        assert_eq!(err.entry, "not-a-key");
        assert!(err.to_string().contains("not-a-key"));
    }
}
