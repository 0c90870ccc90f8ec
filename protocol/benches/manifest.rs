//! Cost of the manifest operations every node performs per gossip message: sign (publisher),
//! verify, encode and decode; and of the receipt of every forwarded request (signed by the
//! executor, verified by the forwarding node). Baseline in the same run: hashing the same bytes
//! with BLAKE3.
//!
//! Run: `cargo bench -p wasmesh-protocol --bench manifest`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmesh_protocol::receipt::Receipt;
use wasmesh_protocol::{Abi, ContentHash, Keypair, Limits, Manifest, SignedManifest};

fn manifest(keys: &Keypair) -> Manifest {
    Manifest {
        name: "thumbnail".into(),
        version: 42,
        blob: ContentHash::of(b"module bytes"),
        size: 1_234_567,
        abi: Abi::Wasi,
        limits: Limits::default(),
        publisher: keys.public(),
        issued_at_ms: 1_790_000_000_000,
    }
}

fn bench(c: &mut Criterion) {
    let keys = Keypair::from_seed([3; 32]);
    let unsigned = manifest(&keys);
    let signed = unsigned.clone().sign(&keys);
    let bytes = signed.encode();
    let publisher = keys.public();

    let mut group = c.benchmark_group("manifest");
    group.bench_function("sign", |b| {
        b.iter(|| black_box(unsigned.clone()).sign(&keys))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            black_box(&signed)
                .verify(|k| *k == publisher)
                .expect("valid")
                .version
        })
    });
    group.bench_function("encode", |b| b.iter(|| black_box(&signed).encode()));
    group.bench_function("decode", |b| {
        b.iter(|| SignedManifest::decode(black_box(&bytes)).expect("valid"))
    });
    group.bench_function("baseline_blake3_of_encoding", |b| {
        b.iter(|| ContentHash::of(black_box(&bytes)))
    });
    group.finish();

    let receipt = Receipt {
        executor: keys.public(),
        module: ContentHash::of(b"module bytes"),
        input: ContentHash::of(b"input"),
        outcome: Receipt::output_outcome(b"output"),
        trace_id: 7,
        nonce: 11,
        queue_us: 20,
        exec_us: 300,
    };
    let signed_receipt = receipt.sign(&keys);
    let mut group = c.benchmark_group("receipt");
    group.bench_function("sign", |b| b.iter(|| black_box(receipt).sign(&keys)));
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&signed_receipt).verify().expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
