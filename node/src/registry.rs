//! What this node knows: the newest accepted manifest of each module and whether it is ready
//! here, and what each peer last said about itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use libp2p::{Multiaddr, PeerId};
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::routing::Spread;
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
#[derive(Debug)]
pub struct Registry {
    /// In key order, so that sync can page through it.
    modules: BTreeMap<ModuleKey, ModuleEntry>,
    /// Who each name belongs to: the publisher of the first manifest accepted for it.
    owners: HashMap<String, PublicKey>,
    /// The digest of the manifests held, kept current by `put` (every status carries it).
    digest: ContentHash,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            modules: BTreeMap::new(),
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
        self.modules.range((start, Unbounded)).map(|(_, e)| e)
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
        let owner = match module_ref {
            ModuleRef::Name(name) | ModuleRef::Version { name, .. } => self.owner_of(name),
            ModuleRef::Published { .. } | ModuleRef::Hash(_) => None,
        };
        self.modules
            .values()
            .filter(|e| module_ref.matches(&e.signed.manifest))
            .filter(|e| owner.is_none_or(|owner| e.signed.manifest.publisher == owner))
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

/// What this node knows of one peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// libp2p identity.
    pub peer_id: PeerId,
    /// Node key (from its status; its QUIC certificate must carry it).
    pub key: Option<PublicKey>,
    /// QUIC data-plane address.
    pub quic_addr: Option<SocketAddr>,
    /// Blobs it reports ready.
    pub ready: HashSet<ContentHash>,
    /// Its reported load.
    pub in_flight: u32,
    /// Its reported capacity.
    pub capacity: u32,
    /// Sequence number of its newest status.
    pub seq: u64,
    /// Addresses it can be dialed at.
    pub addrs: Vec<Multiaddr>,
    /// Whether a libp2p connection is open.
    pub connected: bool,
    /// Whether this node is dialing it now.
    pub dialing: bool,
    /// Dials that failed in a row (for the back-off).
    pub dial_failures: u32,
    /// Not dialed again before this time.
    pub next_dial: Option<Instant>,
    /// Its manifest digest when this node last asked it for a sync (not asked again for the
    /// same digest).
    pub synced_digest: Option<ContentHash>,
    /// When this node last asked it for a sync.
    pub synced_at: Option<Instant>,
    /// Smoothed round-trip time (libp2p ping), microseconds.
    pub rtt_us: Option<u64>,
    /// Its network coordinate, from its status.
    pub coordinate: Option<Coordinate>,
    /// Not routed to until then (after a failed forward); probed again afterwards.
    pub down_until: Option<Instant>,
    /// Requests this node has forwarded to the peer and not yet had answered.
    pub forwarding: u32,
    /// Mean execution time per blob, as seen in replies to forwarded requests (microseconds).
    pub mean_exec_us: HashMap<ContentHash, u64>,
    /// How long forwarded requests per blob took, end to end (for hedging).
    pub forward_us: HashMap<ContentHash, Spread>,
    /// When it was last heard of.
    pub last_seen: Instant,
    /// Its gossipsub score here (below -80 it is graylisted: its messages are ignored).
    pub gossip_score: Option<f64>,
}

/// Most peers a node keeps what it knows of. Statuses from fresh keys cost an attacker nothing,
/// so the table must not grow with them: past this, a new peer takes the place of the least
/// recently heard one that is neither connected nor being dialed.
pub const MAX_TRACKED_PEERS: usize = 512;

/// The entry of `peer`, made if there is room (see [`MAX_TRACKED_PEERS`]); `None` when the table
/// is full of peers that cannot be evicted.
pub fn track_peer(
    peers: &mut HashMap<PeerId, PeerInfo>,
    peer: PeerId,
    now: Instant,
) -> Option<&mut PeerInfo> {
    if !peers.contains_key(&peer) && peers.len() >= MAX_TRACKED_PEERS {
        let evict = peers
            .values()
            .filter(|p| !p.connected && !p.dialing)
            .min_by_key(|p| p.last_seen)
            .map(|p| p.peer_id)?;
        peers.remove(&evict);
    }
    Some(
        peers
            .entry(peer)
            .or_insert_with(|| PeerInfo::new(peer, now)),
    )
}

impl PeerInfo {
    /// A peer known only by id, first heard of at `now`.
    pub fn new(peer_id: PeerId, now: Instant) -> Self {
        Self {
            peer_id,
            key: None,
            quic_addr: None,
            ready: HashSet::new(),
            in_flight: 0,
            capacity: 0,
            seq: 0,
            addrs: Vec::new(),
            connected: false,
            dialing: false,
            dial_failures: 0,
            next_dial: None,
            synced_digest: None,
            synced_at: None,
            rtt_us: None,
            coordinate: None,
            down_until: None,
            forwarding: 0,
            mean_exec_us: HashMap::new(),
            forward_us: HashMap::new(),
            last_seen: now,
            gossip_score: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmesh_protocol::{Abi, Keypair, Limits, Manifest};

    use super::*;

    fn peer(n: u64) -> PeerId {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        libp2p::identity::Keypair::ed25519_from_bytes(seed)
            .unwrap()
            .public()
            .to_peer_id()
    }

    /// Fresh identities cannot grow the table: past the cap each new peer takes the place of the
    /// least recently heard one, connected and dialed peers are never evicted, and a table full of
    /// those takes no one.
    #[test]
    fn the_peer_table_is_bounded_and_keeps_its_connections() {
        let mut peers = HashMap::new();
        let start = Instant::now();
        let connected = peer(u64::MAX);
        track_peer(&mut peers, connected, start).unwrap().connected = true;
        for n in 0..MAX_TRACKED_PEERS as u64 * 3 {
            let info = track_peer(&mut peers, peer(n), start).unwrap();
            info.last_seen = start + std::time::Duration::from_millis(n);
            assert!(peers.len() <= MAX_TRACKED_PEERS);
        }
        assert!(
            peers.contains_key(&connected),
            "a connected peer was evicted"
        );
        let newest = MAX_TRACKED_PEERS as u64 * 3 - 1;
        assert!(peers.contains_key(&peer(newest)));
        assert!(
            !peers.contains_key(&peer(0)),
            "the least recently heard stayed"
        );

        for info in peers.values_mut() {
            info.connected = true;
        }
        assert!(track_peer(&mut peers, peer(u64::MAX - 1), start).is_none());
        assert_eq!(peers.len(), MAX_TRACKED_PEERS);
    }

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
}
