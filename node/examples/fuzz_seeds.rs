//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/<target>/`): one valid example of
//! each message, manifest and guest, so the fuzzers start from inputs that go deep.
//!
//! `cargo run --release -p wasmesh-node --example fuzz_seeds -- fuzz/corpus`

use std::path::{Path, PathBuf};

use wasmesh_keys::{MembershipCert, SignedMembershipCert};
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{
    BlobHeader, BlobRequest, InvokeReply, InvokeRequest, StatusMessage, SyncRequest, SyncResponse,
};
use wasmesh_protocol::{Abi, ContentHash, Keypair, Limits, Manifest, PublishBundle};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn tagged(kind: u8, bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(bytes);
    out
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/fixtures");
    let publisher = Keypair::from_seed([201; 32]);
    let module = wat::parse_file(fixtures.join("echo.wat"))?;
    let manifest = Manifest {
        name: "echo".into(),
        version: 3,
        blob: ContentHash::of(&module),
        size: module.len() as u64,
        abi: Abi::Raw,
        limits: Limits::default(),
        publisher: publisher.public(),
        issued_at_ms: 1_700_000_000_000,
    }
    .sign(&publisher);
    let status = StatusMessage {
        node: Keypair::from_seed([1; 32]).public(),
        quic_addr: "127.0.0.1:4433".into(),
        ready_version: wasmesh_protocol::wire::ready_version(&[manifest.manifest.blob]),
        ready: Some(vec![manifest.manifest.blob]),
        in_flight: 1,
        capacity: 4,
        seq: 9,
        p2p_addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
        manifests: ContentHash::of(b"digest"),
        coordinate: Coordinate::default(),
        leaving: false,
    };
    let admin = Keypair::from_seed([9; 32]);
    let cert = MembershipCert {
        mesh: "fuzz".into(),
        node: status.node,
        admin: admin.public(),
        not_before_ms: 0,
        expires_at_ms: 1_800_000_000_000,
    }
    .sign(&admin);
    let messages: [(u8, Vec<u8>); 10] = [
        (0, status.encode()),
        (
            1,
            SyncRequest {
                after: Some(manifest.manifest.key()),
                manifests: true,
                membership: cert.encode(),
            }
            .encode(),
        ),
        (
            2,
            SyncResponse {
                manifests: vec![manifest.clone()],
                membership: Vec::new(),
                more: true,
                peers: vec![wasmesh_protocol::wire::PeerRecord {
                    node: status.node,
                    addrs: vec!["/ip4/127.0.0.1/udp/4001/quic-v1".into()],
                }],
            }
            .encode(),
        ),
        (
            3,
            BlobRequest {
                hash: manifest.manifest.blob,
                first: 0,
                groups: 64,
                zstd: true,
            }
            .encode(),
        ),
        (4, BlobHeader::Found { size: 1 << 20 }.encode().to_vec()),
        (
            5,
            InvokeRequest {
                hash: manifest.manifest.blob,
                input: b"hello".to_vec(),
                deadline_ms: 2000,
                hops: 0,
                trace_id: 7,
                trace: None,
                nonce: 9,
            }
            .encode(),
        ),
        (
            6,
            InvokeReply::GuestFailed {
                kind: wasmesh_protocol::wire::FailureKind::Trap,
                message: "unreachable".into(),
                receipt: wasmesh_protocol::Signature([3; 64]),
            }
            .encode(),
        ),
        (7, manifest.encode()),
        (
            8,
            PublishBundle {
                manifest: manifest.clone(),
                module: module.clone(),
            }
            .encode(),
        ),
        (9, SignedMembershipCert::encode(&cert)),
    ];
    for (kind, bytes) in messages {
        write(
            &dir,
            "wire_decoders",
            &format!("kind-{kind}"),
            &tagged(kind, bytes),
        )?;
    }
    write(
        &dir,
        "wire_decoders",
        "module-ref",
        &tagged(10, b"echo~0123abcd@3".to_vec()),
    )?;
    write(
        &dir,
        "manifest_verify",
        "signed",
        &tagged(0, manifest.encode()),
    )?;
    write(
        &dir,
        "manifest_verify",
        "fields",
        &tagged(1, (0u8..40).collect()),
    )?;
    write(
        &dir,
        "status_and_sync",
        "status",
        &tagged(
            0,
            [
                vec![0, 0, 0],
                (status.encode().len() as u16).to_le_bytes().to_vec(),
                status.encode(),
            ]
            .concat(),
        ),
    )?;
    for entry in std::fs::read_dir(&fixtures)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wat") {
            let wasm = wat::parse_file(&path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            write(&dir, "wasm_inspect", &stem, &wasm)?;
        }
    }
    // Four calls: write "hi" to stdout, read stdin, random bytes, and the clock.
    let mut calls = vec![4u8];
    for (function, args) in [
        (1u8, [1i32, 1000, 1, 1020]),
        (0, [0, 1000, 1, 1020]),
        (7, [200, 64, 0, 0]),
        (6, [1, 0, 300, 0]),
    ] {
        calls.push(function);
        for a in args {
            calls.extend(a.to_le_bytes());
        }
    }
    calls.resize(1000, 0);
    calls.extend(1100u32.to_le_bytes());
    calls.extend(2u32.to_le_bytes());
    calls.resize(1100, 0);
    calls.extend(b"hi");
    write(&dir, "wasi_host", "four-calls", &calls)?;

    // metered_guests: wasm-smith shapes a module from any bytes; a few fixed streams of
    // different lengths start it on modules of different sizes.
    for (n, len) in [(1u8, 256usize), (2, 1024), (3, 4096)] {
        let mut stream = blake3::Hasher::new();
        stream.update(&[n]);
        let mut bytes = vec![0u8; len];
        stream.finalize_xof().fill(&mut bytes);
        write(&dir, "metered_guests", &format!("stream-{len}"), &bytes)?;
    }
    Ok(())
}
