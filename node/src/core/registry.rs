//! The modules this node knows: the newest accepted manifest of each, whether it is ready here,
//! who owns each name, and the digest of the manifests held.
//!
//! Its maps are persistent (`imbl`): a clone shares their structure, so the control task can
//! hand the request path a snapshot after every change at the cost of a few reference counts.

use std::sync::Arc;

use imbl::{HashMap, OrdMap};

use wasmesh_protocol::wire::manifest_digest;
use wasmesh_protocol::{ContentHash, ModuleKey, ModuleRef, PublicKey, SignedManifest};

use crate::executor::CompiledModule;

/// Where a module stands on this node.
#[derive(Debug, Clone)]
pub enum ModuleState {
    /// Accepted; the blob is being fetched or compiled.
    Pending,
    /// Verified and compiled: requests run here.
    Ready(Arc<CompiledModule>),
    /// Kept but not run here (limits over this node's caps, or a broken blob), with why.
    NotRunnable(String),
    /// Not replicated here by policy: requests are routed to peers that hold it.
    Remote,
}

/// One module: its newest accepted manifest and its state here.
#[derive(Debug, Clone)]
pub struct ModuleEntry {
    /// The manifest.
    pub signed: SignedManifest,
    /// The state here.
    pub state: ModuleState,
}

impl ModuleEntry {
    /// Whether requests can run here.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, ModuleState::Ready(_))
    }
}

/// The modules this node holds manifests for.
#[derive(Debug, Clone)]
pub struct Registry {
    /// In key order, so that sync can page through it.
    modules: OrdMap<ModuleKey, ModuleEntry>,
    /// Who each name belongs to: the publisher of the first manifest accepted for it.
    owners: HashMap<String, PublicKey>,
    /// The digest of the manifests held, kept current by `put` (every status carries it).
    digest: ContentHash,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            modules: OrdMap::new(),
            owners: HashMap::new(),
            digest: manifest_digest([]),
        }
    }
}

impl Registry {
    /// The entry of a module.
    pub fn get(&self, key: &ModuleKey) -> Option<&ModuleEntry> {
        self.modules.get(key)
    }

    /// The publisher a name belongs to (the first this node accepted it from).
    pub fn owner_of(&self, name: &str) -> Option<PublicKey> {
        self.owners.get(name).copied()
    }

    /// Inserts or replaces the entry of a module; returns the one replaced. The first entry of a
    /// name makes its publisher the name's owner.
    pub fn put(&mut self, entry: ModuleEntry) -> Option<ModuleEntry> {
        let manifest = &entry.signed.manifest;
        self.owners
            .entry(manifest.name.clone())
            .or_insert(manifest.publisher);
        let added = ContentHash::of(&entry.signed.encode());
        let replaced = self.modules.insert(entry.signed.manifest.key(), entry);
        // XOR is its own inverse: add the new manifest, take out the one it replaces.
        let removed = replaced
            .as_ref()
            .map(|e| ContentHash::of(&e.signed.encode()));
        self.digest = manifest_digest([self.digest, added].into_iter().chain(removed));
        replaced
    }

    /// Sets the state of the module if its manifest is still `hash`'s.
    pub fn set_state(&mut self, key: &ModuleKey, hash: &ContentHash, state: ModuleState) -> bool {
        match self.modules.get_mut(key) {
            Some(entry) if entry.signed.manifest.blob == *hash => {
                entry.state = state;
                true
            }
            _ => false,
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &ModuleEntry> {
        self.modules.values()
    }

    /// The entries after `after` (all, for None), in key order.
    pub fn entries_after(&self, after: Option<&ModuleKey>) -> impl Iterator<Item = &ModuleEntry> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        self.modules
            .range::<_, ModuleKey>((start, Unbounded))
            .map(|(_, e)| e)
    }

    /// The digest of the manifests held (see `wire::manifest_digest`).
    pub fn manifest_digest(&self) -> ContentHash {
        self.digest
    }

    /// Whether any held manifest names this blob.
    pub fn uses_blob(&self, hash: &ContentHash) -> bool {
        self.modules
            .values()
            .any(|e| e.signed.manifest.blob == *hash)
    }

    /// The entry a reference names: the highest version that matches. A name without a
    /// publisher means the name's owner's module.
    pub fn resolve(&self, module_ref: &ModuleRef) -> Option<&ModuleEntry> {
        if let ModuleRef::Name(name) | ModuleRef::Version { name, .. } = module_ref {
            // The owner's module is the only candidate: one lookup, however many modules are
            // held (this runs on every request).
            let key = ModuleKey {
                publisher: self.owner_of(name)?,
                name: name.clone(),
            };
            return self
                .modules
                .get(&key)
                .filter(|e| module_ref.matches(&e.signed.manifest));
        }
        self.modules
            .values()
            .filter(|e| module_ref.matches(&e.signed.manifest))
            .max_by_key(|e| (e.signed.manifest.version, e.signed.manifest.issued_at_ms))
    }

    /// The ready module whose blob is `hash`, with its manifest.
    pub fn ready_by_hash(
        &self,
        hash: &ContentHash,
    ) -> Option<(&SignedManifest, Arc<CompiledModule>)> {
        self.modules.values().find_map(|e| match &e.state {
            ModuleState::Ready(module) if e.signed.manifest.blob == *hash => {
                Some((&e.signed, module.clone()))
            }
            _ => None,
        })
    }

    /// Blobs ready here.
    pub fn ready_blobs(&self) -> Vec<ContentHash> {
        self.modules
            .values()
            .filter(|e| e.is_ready())
            .map(|e| e.signed.manifest.blob)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use wasmesh_protocol::{Abi, Keypair, Limits, Manifest};

    use super::*;

    fn entry(name: &str, version: u64) -> ModuleEntry {
        let keys = Keypair::from_seed([3; 32]);
        let manifest = Manifest {
            name: name.to_owned(),
            version,
            blob: ContentHash::of(name.as_bytes()),
            size: 1,
            abi: Abi::Raw,
            limits: Limits::default(),
            publisher: keys.public(),
            issued_at_ms: 1,
        };
        ModuleEntry {
            signed: manifest.sign(&keys),
            state: ModuleState::Pending,
        }
    }

    #[test]
    fn the_kept_digest_matches_one_computed_from_the_entries() {
        let mut registry = Registry::default();
        assert_eq!(registry.manifest_digest(), manifest_digest([]));
        registry.put(entry("a", 1));
        registry.put(entry("b", 1));
        registry.put(entry("a", 2));
        let recomputed = manifest_digest(
            registry
                .entries()
                .map(|e| ContentHash::of(&e.signed.encode())),
        );
        assert_eq!(registry.manifest_digest(), recomputed);
        assert_ne!(recomputed, manifest_digest([]));
    }

    #[test]
    fn a_name_resolves_to_its_owners_module_and_a_publisher_prefix_to_that_publishers() {
        let mut registry = Registry::default();
        registry.put(entry("echo", 3));
        let mut shared = entry("echo", 7).signed.manifest;
        let other = Keypair::from_seed([4; 32]);
        shared.publisher = other.public();
        registry.put(ModuleEntry {
            signed: shared.sign(&other),
            state: ModuleState::Pending,
        });
        let version = |r: &str| {
            registry
                .resolve(&r.parse().unwrap())
                .map(|e| e.signed.manifest.version)
        };
        // The name belongs to the first publisher: its version 3, not the other's 7.
        assert_eq!(version("echo"), Some(3));
        assert_eq!(version("echo@3"), Some(3));
        assert_eq!(version("echo@7"), None);
        let prefix = &other.public().to_string()[..8];
        assert_eq!(version(&format!("echo~{prefix}")), Some(7));
        assert_eq!(version("nothing"), None);
    }
}
