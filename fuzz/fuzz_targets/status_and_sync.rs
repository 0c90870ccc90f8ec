//! Status and sync intake, as a node takes them: a sequence of connections, statuses (raw bytes,
//! or built from fuzzed fields with a real peer key) and introductions into the peer table, and
//! of sync responses and signed manifests into the registry. After every step: the peer table
//! is within its cap, no accepted manifest is older than the version held, and a name keeps its
//! first owner unless the newcomer is scoped to it.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use libp2p_identity::PeerId;
use wasmesh_keys::{TrustList, identity};
use wasmesh_node::config::Replicate;
use wasmesh_node::core::manifests::{Filing, Offered, Screened, screen, take};
use wasmesh_node::core::peers::{MAX_STRANGERS, MAX_TRACKED_PEERS, PeerTable};
use wasmesh_node::core::registry::Registry;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{MAX_SYNC_PEERS, PeerRecord, StatusMessage, SyncResponse};
use wasmesh_protocol::{Abi, ContentHash, Keypair, Limits, Manifest, SignedManifest};

/// More peers than the table holds, so that eviction is exercised.
const PEERS: usize = MAX_TRACKED_PEERS + 88;

struct World {
    peers: Vec<(Keypair, PeerId)>,
    publishers: [Keypair; 2],
    trust: TrustList,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let peers = (0..PEERS)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let keys = Keypair::from_seed(seed);
                let id = identity::peer_id(&keys.public()).expect("an ed25519 key");
                (keys, id)
            })
            .collect();
        let publishers = [Keypair::from_seed([201; 32]), Keypair::from_seed([202; 32])];
        let trust = TrustList::parse([
            publishers[0].public().to_string(),
            format!("{}=img-*,echo", publishers[1].public()),
        ])
        .expect("valid entries");
        World {
            peers,
            publishers,
            trust,
        }
    })
}

/// Reads the fuzz input front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn bytes(&mut self) -> &[u8] {
        let len = (self.u16() as usize).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }
}

fn manifest(input: &mut Input<'_>) -> SignedManifest {
    let w = world();
    let keys = &w.publishers[input.byte() as usize % 2];
    let name = ["echo", "img-a", "other"][input.byte() as usize % 3];
    Manifest {
        name: name.into(),
        version: u64::from(input.byte() % 8),
        blob: ContentHash::of(&[input.byte() % 4]),
        size: 1,
        abi: Abi::Raw,
        limits: Limits::default(),
        publisher: keys.public(),
        issued_at_ms: 0,
    }
    .sign(keys)
}

fn status(input: &mut Input<'_>, keys: &Keypair) -> StatusMessage {
    let ready: Vec<ContentHash> = (0..input.byte() % 4)
        .map(|_| ContentHash::of(&[input.byte() % 8]))
        .collect();
    // Sometimes the list, sometimes only its version (right or wrong).
    let (ready_version, ready) = match input.byte() % 3 {
        0 => (wasmesh_protocol::wire::ready_version(&ready), Some(ready)),
        1 => (wasmesh_protocol::wire::ready_version(&ready), None),
        _ => (u64::from(input.byte()), Some(ready)),
    };
    let addrs = ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.2/udp/9/quic-v1", "not an address"];
    StatusMessage {
        node: keys.public(),
        quic_addr: if input.byte() % 8 == 0 {
            "nowhere".into()
        } else {
            "127.0.0.1:4433".into()
        },
        ready_version,
        ready,
        in_flight: u32::from(input.byte()),
        capacity: u32::from(input.byte()),
        seq: u64::from(input.byte() % 16),
        p2p_addrs: (0..input.byte() % 4)
            .map(|i| addrs[i as usize % addrs.len()].into())
            .collect(),
        manifests: ContentHash::of(&[input.byte()]),
        coordinate: Coordinate::default(),
        leaving: input.byte() % 2 == 0,
    }
}

/// Intake as the node runs it: screened against a snapshot (off the control task), then taken
/// against the registry as it is when the owner files it.
fn offer(registry: &mut Registry, signed: SignedManifest) {
    let trust = &world().trust;
    let key = signed.manifest.key();
    let held = registry.get(&key).map(|e| e.signed.manifest.version);
    let owner = registry.owner_of(&signed.manifest.name);
    if let Screened::Verified(verified) = screen(registry, &signed, trust) {
        let filing = Filing {
            trust,
            replicate: &Replicate::All,
            caps: &Limits::default(),
        };
        if let Ok(taken) = take(registry, &verified, filing) {
            let m = &signed.manifest;
            if taken.offered == Offered::Accepted {
                assert!(held.is_none_or(|v| m.version >= v), "an older version was accepted");
                assert!(
                    owner.is_none_or(|o| o == m.publisher || trust.scoped_to(&m.publisher, &m.name)),
                    "a name was taken from its owner"
                );
                assert!(trust.allows(&m.publisher, &m.name));
            }
            assert!(registry.get(&key).is_some(), "a taken manifest is held");
        }
    }
    if let Some(owner) = owner {
        assert_eq!(registry.owner_of(&key.name), Some(owner), "a name changed owner");
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut input = Input(data);
    let mut peers = PeerTable::default();
    let mut registry = Registry::default();
    let mut now = Instant::now();
    // A node's address policy is fixed for its life.
    let allow_private = input.byte() % 2 == 0;
    for _ in 0..64 {
        if input.0.is_empty() {
            break;
        }
        now += Duration::from_millis(u64::from(input.byte()) * 40);
        let (keys, from) = &w.peers[input.u16() as usize % PEERS];
        match input.byte() % 6 {
            0 => {
                if let Ok(status) = StatusMessage::decode(input.bytes()) {
                    let _ = peers.take_status(*from, status, now, allow_private, |_| false);
                }
            }
            1 => {
                let status = status(&mut input, keys);
                if let Ok(taken) = peers.take_status(*from, status, now, allow_private, |_| false) {
                    let peer = peers.get(from).expect("a fresh status is of a known peer");
                    assert!(
                        !taken.fresh || allow_private || peer.addrs.is_empty(),
                        "a loopback address was kept"
                    );
                    if taken.unsynced_digest.is_some() {
                        if let Some(info) = peers.get_mut(from) {
                            info.synced_digest = taken.unsynced_digest;
                            info.synced_at = Some(now);
                        }
                    }
                }
            }
            2 => {
                // A connection opens (dialed by this node or not) or closes; strangers stay
                // within their share of the table.
                let byte = input.byte();
                match byte % 2 == 0 {
                    true => {
                        peers.connected(*from, byte % 4 == 0, now);
                    }
                    false => peers.disconnected(from, now),
                }
                let strangers = peers.values().filter(|p| p.is_stranger(now)).count();
                assert!(strangers <= MAX_STRANGERS, "strangers outgrew their share");
            }
            5 => {
                // A neighbour introduces peers; relayed statuses alone never add one.
                let records: Vec<PeerRecord> = (0..input.byte() % 20)
                    .map(|_| PeerRecord {
                        node: w.peers[input.u16() as usize % PEERS].0.public(),
                        addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into(), "junk".into()],
                    })
                    .collect();
                let known = peers.len();
                let introduced = peers.take_introductions(&records, *from, now, allow_private);
                assert!(introduced <= MAX_SYNC_PEERS);
                assert!(allow_private || introduced == 0, "a loopback address became a dial target");
                assert!(peers.len() <= known + introduced);
            }
            3 => {
                if let Ok(response) = SyncResponse::decode(input.bytes()) {
                    for signed in response.manifests {
                        offer(&mut registry, signed);
                    }
                }
            }
            4 => {
                let signed = manifest(&mut input);
                offer(&mut registry, signed);
            }
            _ => unreachable!("six kinds of step"),
        }
        assert!(peers.len() <= MAX_TRACKED_PEERS, "the peer table outgrew its cap");
    }
});
