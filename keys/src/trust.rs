//! Trust lists: the publisher keys whose manifests a node accepts, each for every name or for
//! the names its scope lists.
//!
//! An entry is written `HEX` (trusted for every name) or `HEX=echo,img-*` (trusted for `echo`
//! and for names starting with `img-`). The same text is used on the command line (`--trust`)
//! and in the config file (`trust = [...]`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use wasmesh_protocol::manifest::validate_name;
use wasmesh_protocol::{HexError, PublicKey};

/// The names a trusted key may publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every name.
    #[default]
    AllNames,
    /// The names these patterns match: an exact name, or a prefix followed by `*`.
    Names(Vec<String>),
}

impl Scope {
    /// Whether `name` is in the scope.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Scope::AllNames => true,
            Scope::Names(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            }),
        }
    }

    /// Joins two scopes of one key (an entry given twice).
    fn join(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Names(mut a), Scope::Names(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
                Scope::Names(a)
            }
            _ => Scope::AllNames,
        }
    }
}

/// One trusted key and its scope, as given in a `--trust` flag or a config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    /// The publisher key.
    pub key: PublicKey,
    /// The names it may publish.
    pub scope: Scope,
}

impl From<PublicKey> for TrustEntry {
    fn from(key: PublicKey) -> Self {
        Self {
            key,
            scope: Scope::AllNames,
        }
    }
}

/// A trust entry that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The key part is not a public key.
    #[error("trust entry {entry:?} is not a public key: {reason}")]
    Key {
        /// The offending text.
        entry: String,
        /// Why it was refused.
        reason: HexError,
    },
    /// A name pattern after `=` is not a module name (optionally ending in `*`).
    #[error("trust entry {entry:?}: {pattern:?} is not a module name or a name prefix ending in *")]
    Pattern {
        /// The offending entry.
        entry: String,
        /// The offending pattern.
        pattern: String,
    },
}

impl TrustError {
    /// The text of the entry it is about.
    pub fn entry(&self) -> &str {
        match self {
            TrustError::Key { entry, .. } | TrustError::Pattern { entry, .. } => entry,
        }
    }
}

impl FromStr for TrustEntry {
    type Err = TrustError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let shown = || text.chars().take(80).collect::<String>();
        let (key, names) = match text.split_once('=') {
            Some((key, names)) => (key.trim(), Some(names)),
            None => (text, None),
        };
        let key = key.parse::<PublicKey>().map_err(|reason| TrustError::Key {
            entry: shown(),
            reason,
        })?;
        let scope = match names {
            None => Scope::AllNames,
            Some(names) => {
                let mut patterns = Vec::new();
                for pattern in names.split(',').map(str::trim) {
                    let name = pattern.strip_suffix('*').unwrap_or(pattern);
                    // A bare `*` is every name; otherwise the part before `*` follows the
                    // naming rule.
                    if !(pattern == "*" || validate_name(name).is_ok()) {
                        return Err(TrustError::Pattern {
                            entry: shown(),
                            pattern: pattern.chars().take(80).collect(),
                        });
                    }
                    patterns.push(pattern.to_owned());
                }
                if patterns.iter().any(|p| p == "*") {
                    Scope::AllNames
                } else {
                    Scope::Names(patterns)
                }
            }
        };
        Ok(Self { key, scope })
    }
}

impl fmt::Display for TrustEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::AllNames => write!(f, "{}", self.key),
            Scope::Names(patterns) => write!(f, "{}={}", self.key, patterns.join(",")),
        }
    }
}

/// The trusted publisher keys, each with its scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    keys: BTreeMap<PublicKey, Scope>,
}

impl TrustList {
    /// Parses entries (`HEX` or `HEX=pattern,...`), joining the scopes of a key given twice.
    /// The first malformed entry is reported with its text.
    pub fn parse<I, S>(entries: I) -> Result<Self, TrustError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::default();
        for entry in entries {
            list.insert(entry.as_ref().parse()?);
        }
        Ok(list)
    }

    /// Adds an entry; returns whether its key was new.
    pub fn insert(&mut self, entry: TrustEntry) -> bool {
        match self.keys.remove(&entry.key) {
            Some(scope) => {
                self.keys.insert(entry.key, scope.join(entry.scope));
                false
            }
            None => {
                self.keys.insert(entry.key, entry.scope);
                true
            }
        }
    }

    /// Whether `key` is trusted for some names.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains_key(key)
    }

    /// Whether `key` may publish `name`.
    pub fn allows(&self, key: &PublicKey, name: &str) -> bool {
        self.keys.get(key).is_some_and(|scope| scope.covers(name))
    }

    /// Whether the operator named `name` in `key`'s scope (not merely trusted the key for every
    /// name): such a key may publish the name beside its owner.
    pub fn scoped_to(&self, key: &PublicKey, name: &str) -> bool {
        matches!(self.keys.get(key), Some(scope @ Scope::Names(_)) if scope.covers(name))
    }

    /// The scope of `key`, if it is trusted.
    pub fn scope(&self, key: &PublicKey) -> Option<&Scope> {
        self.keys.get(key)
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
        self.keys.keys()
    }
}

impl FromIterator<TrustEntry> for TrustList {
    fn from_iter<I: IntoIterator<Item = TrustEntry>>(iter: I) -> Self {
        let mut list = Self::default();
        for entry in iter {
            list.insert(entry);
        }
        list
    }
}

impl FromIterator<PublicKey> for TrustList {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        iter.into_iter().map(TrustEntry::from).collect()
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
        assert_eq!(err.entry(), "not-a-key");
        assert!(err.to_string().contains("not-a-key"));
        let err = TrustList::parse([format!("{}=echo,Bad*", "aa".repeat(32))]).unwrap_err();
        assert!(matches!(err, TrustError::Pattern { ref pattern, .. } if pattern == "Bad*"));
    }

    #[test]
    fn a_scoped_key_may_publish_only_its_names() {
        let key: PublicKey = "aa".repeat(32).parse().unwrap();
        let list = TrustList::parse([format!("{key}=echo,img-*")]).unwrap();
        assert!(list.allows(&key, "echo"));
        assert!(list.allows(&key, "img-resize"));
        assert!(!list.allows(&key, "echo2"));
        assert!(!list.allows(&key, "img"));
        assert!(list.scoped_to(&key, "echo"));
        let entry: TrustEntry = format!("{key}=echo,img-*").parse().unwrap();
        assert_eq!(entry.to_string(), format!("{key}=echo,img-*"));
    }

    #[test]
    fn an_unscoped_entry_of_the_same_key_widens_its_scope() {
        let key: PublicKey = "aa".repeat(32).parse().unwrap();
        let list = TrustList::parse([format!("{key}=echo"), key.to_string()]).unwrap();
        assert!(list.allows(&key, "anything"));
        assert!(!list.scoped_to(&key, "echo"));
        let list = TrustList::parse([format!("{key}=echo"), format!("{key}=img-*")]).unwrap();
        assert!(list.allows(&key, "img-x") && list.allows(&key, "echo"));
    }
}
