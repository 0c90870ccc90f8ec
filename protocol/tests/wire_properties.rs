//! Property tests of the wire types: encodings round-trip, arbitrary bytes never panic a decoder,
//! and no change to a signed manifest survives verification.

use proptest::prelude::*;
use wasmesh_protocol::codec;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::manifest::MAX_SIGNED_MANIFEST_SIZE;
use wasmesh_protocol::wire::{
    BlobHeader, BlobRequest, StatusAck, StatusMessage, SyncRequest, SyncResponse, ready_version,
};
use wasmesh_protocol::{
    Abi, ContentHash, Keypair, Limits, Manifest, ModuleKey, ModuleRef, PublicKey, PublishBundle,
    SignedManifest,
};

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,64}"
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        1..=Limits::MAX_FUEL,
        1..=Limits::MAX_MEMORY_PAGES,
        1..=Limits::MAX_TIMEOUT_MS,
        0..=Limits::MAX_BODY,
        1..=Limits::MAX_BODY,
    )
        .prop_map(
            |(fuel, memory_pages, timeout_ms, max_input, max_output)| Limits {
                fuel,
                memory_pages,
                timeout_ms,
                max_input,
                max_output,
            },
        )
}

fn abi() -> impl Strategy<Value = Abi> {
    prop_oneof![Just(Abi::Raw), Just(Abi::Wasi)]
}

/// A manifest signed by the key with `seed`, so the publisher field matches the signer.
fn signed_manifest() -> impl Strategy<Value = (SignedManifest, Keypair)> {
    (
        any::<[u8; 32]>(),
        name(),
        any::<u64>(),
        any::<[u8; 32]>(),
        1..=wasmesh_protocol::limits::MAX_MODULE_SIZE,
        abi(),
        limits(),
        any::<u64>(),
    )
        .prop_map(
            |(seed, name, version, blob, size, abi, limits, issued_at_ms)| {
                let keys = Keypair::from_seed(seed);
                let manifest = Manifest {
                    name,
                    version,
                    blob: ContentHash(blob),
                    size,
                    abi,
                    limits,
                    publisher: keys.public(),
                    issued_at_ms,
                };
                (manifest.sign(&keys), keys)
            },
        )
}

fn module_ref() -> impl Strategy<Value = ModuleRef> {
    prop_oneof![
        name().prop_map(ModuleRef::Name),
        (name(), any::<u64>()).prop_map(|(name, version)| ModuleRef::Version { name, version }),
        (name(), "[0-9a-f]{8,64}", any::<Option<u64>>()).prop_map(|(name, publisher, version)| {
            ModuleRef::Published {
                name,
                publisher,
                version,
            }
        }),
        any::<[u8; 32]>().prop_map(|h| ModuleRef::Hash(ContentHash(h))),
    ]
}

/// Every way to change one signed field of a manifest.
fn mutate(manifest: &Manifest, which: u8, salt: u64) -> Manifest {
    let mut m = manifest.clone();
    let bump = salt | 1;
    match which % 12 {
        0 => m.name.push('x'),
        1 => m.version = m.version.wrapping_add(bump),
        2 => m.blob.0[(salt % 32) as usize] ^= 1,
        3 => m.size ^= bump,
        4 => {
            m.abi = match m.abi {
                Abi::Raw => Abi::Wasi,
                Abi::Wasi => Abi::Raw,
            }
        }
        5 => m.limits.fuel ^= bump,
        6 => m.limits.memory_pages ^= bump as u32 | 1,
        7 => m.limits.timeout_ms ^= bump as u32 | 1,
        8 => m.limits.max_input ^= bump as u32 | 1,
        9 => m.limits.max_output ^= bump as u32 | 1,
        10 => m.publisher.0[(salt % 32) as usize] ^= 1,
        _ => m.issued_at_ms ^= bump,
    }
    m
}

fn status() -> impl Strategy<Value = StatusMessage> {
    (
        any::<[u8; 32]>(),
        "[0-9.:]{0,40}",
        proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..20)),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec("[a-z0-9/]{0,60}", 0..8),
        any::<[u8; 32]>(),
        (
            proptest::array::uniform8(-1e4..1e4f64),
            0.0..1e3f64,
            0.0..2.0f64,
        ),
    )
        .prop_map(
            |(
                node,
                quic_addr,
                ready,
                in_flight,
                capacity,
                seq,
                p2p_addrs,
                manifests,
                coordinate,
            )| {
                let (vec, height, error) = coordinate;
                let ready: Option<Vec<ContentHash>> =
                    ready.map(|r| r.into_iter().map(ContentHash).collect());
                StatusMessage {
                    node: PublicKey(node),
                    quic_addr,
                    ready_version: ready.as_deref().map_or(seq, ready_version),
                    ready,
                    in_flight,
                    capacity,
                    seq,
                    p2p_addrs,
                    manifests: ContentHash(manifests),
                    coordinate: Coordinate { vec, height, error },
                    leaving: seq % 2 == 0,
                }
            },
        )
}

proptest! {
    #[test]
    fn node_messages_round_trip(
        status in status(),
        after in proptest::option::of((any::<[u8; 32]>(), name())),
        more in any::<bool>(),
        membership in proptest::collection::vec(any::<u8>(), 0..512),
        manifests in proptest::collection::vec(signed_manifest(), 0..4),
        hash in any::<[u8; 32]>(),
        size in any::<u64>(),
    ) {
        prop_assert_eq!(StatusMessage::decode(&status.encode()).unwrap(), status);
        let ack = StatusAck { want_ready: more };
        prop_assert_eq!(StatusAck::decode(&ack.encode()).unwrap(), ack);
        let after = after.map(|(key, name)| ModuleKey { publisher: PublicKey(key), name });
        let request = SyncRequest { after, manifests: more, membership: membership.clone() };
        prop_assert_eq!(SyncRequest::decode(&request.encode()).unwrap(), request);
        let response = SyncResponse { manifests: manifests.into_iter().map(|(m, _)| m).collect(), membership, more, peers: Vec::new() };
        prop_assert_eq!(SyncResponse::decode(&response.encode()).unwrap(), response);
        let blob = BlobRequest { hash: ContentHash(hash), first: size, groups: size as u32, zstd: size % 2 == 0 };
        prop_assert_eq!(BlobRequest::decode(&blob.encode()).unwrap(), blob);
        for header in [BlobHeader::Found { size }, BlobHeader::FoundZstd { size }] {
            prop_assert_eq!(BlobHeader::decode(&header.encode()).unwrap(), header);
        }
    }

    #[test]
    fn arbitrary_node_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), header in any::<[u8; 9]>()) {
        let _ = StatusMessage::decode(&bytes);
        let _ = StatusAck::decode(&bytes);
        let _ = SyncRequest::decode(&bytes);
        let _ = SyncResponse::decode(&bytes);
        let _ = BlobRequest::decode(&bytes);
        let _ = BlobHeader::decode(&header);
    }

    #[test]
    fn signed_manifest_round_trips((signed, keys) in signed_manifest()) {
        let decoded = SignedManifest::decode(&signed.encode()).unwrap();
        prop_assert_eq!(&decoded, &signed);
        let me = keys.public();
        prop_assert!(decoded.verify(|k| *k == me).is_ok());
    }

    #[test]
    fn limits_and_public_keys_round_trip(limits in limits(), key in any::<[u8; 32]>()) {
        prop_assert_eq!(codec::decode::<Limits>(&codec::encode(&limits), 64).unwrap(), limits);
        let key = PublicKey(key);
        prop_assert_eq!(codec::decode::<PublicKey>(&codec::encode(&key), 32).unwrap(), key);
        prop_assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    }

    #[test]
    fn module_refs_round_trip(r in module_ref()) {
        prop_assert_eq!(codec::decode::<ModuleRef>(&codec::encode(&r), 256).unwrap(), r.clone());
        prop_assert_eq!(r.to_string().parse::<ModuleRef>().unwrap(), r);
    }

    #[test]
    fn bundles_round_trip((signed, _) in signed_manifest(), module in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let bundle = PublishBundle { manifest: signed, module };
        let bytes = bundle.encode();
        prop_assert_eq!(PublishBundle::decode(&bytes, bytes.len()).unwrap(), bundle);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = SignedManifest::decode(&bytes);
        let _ = PublishBundle::decode(&bytes, 1 << 20);
        let _ = codec::decode::<ModuleRef>(&bytes, 1024);
        let _ = codec::decode::<Limits>(&bytes, 1024);
        let _ = wasmesh_protocol::wasm::inspect(&bytes);
    }

    #[test]
    fn any_changed_field_invalidates_the_signature((signed, _) in signed_manifest(), which in any::<u8>(), salt in any::<u64>()) {
        let forged = SignedManifest { manifest: mutate(&signed.manifest, which, salt), signature: signed.signature };
        prop_assert_ne!(&forged.manifest, &signed.manifest);
        prop_assert!(forged.verify_signature().is_err());
    }

    #[test]
    fn any_changed_byte_fails_to_decode_or_verify((signed, _) in signed_manifest(), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = signed.encode();
        let i = index.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(bytes.len() <= MAX_SIGNED_MANIFEST_SIZE);
        if let Ok(decoded) = SignedManifest::decode(&bytes) {
            prop_assert!(decoded.verify_signature().is_err(), "byte {} changed but still verifies", i);
        }
    }
}

#[test]
fn a_status_with_a_coordinate_out_of_range_is_refused() {
    for bad in [f64::NAN, f64::INFINITY, 1e12] {
        let status = StatusMessage {
            node: PublicKey([1; 32]),
            quic_addr: "127.0.0.1:1".into(),
            ready_version: 0,
            ready: Some(Vec::new()),
            in_flight: 0,
            capacity: 1,
            seq: 1,
            p2p_addrs: Vec::new(),
            manifests: ContentHash([0; 32]),
            coordinate: Coordinate {
                vec: [bad; 8],
                ..Coordinate::default()
            },
            leaving: false,
        };
        assert!(StatusMessage::decode(&status.encode()).is_err(), "{bad}");
    }
}
