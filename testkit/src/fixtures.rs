//! What tests publish and send: the guests' fixtures (`guests/fixtures`) and built examples
//! (`guests/out`, made by `scripts/build-guests.sh`), publisher keys from fixed seeds, signed
//! bundles, and bytes that do or do not compress.

use std::path::{Path, PathBuf};

use wasmesh_protocol::{ContentHash, Keypair, Limits, PublishBundle};

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests")
}

/// A fixture's path (`guests/fixtures/NAME`).
pub fn fixture_path(name: &str) -> PathBuf {
    guests_dir().join("fixtures").join(name)
}

/// The Wasm binary of a fixture (text fixtures are compiled).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    wasmesh_node::module_file::read_module(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e:#}", path.display()))
}

/// Where `scripts/build-guests.sh` puts the example guest `name`.
pub fn built_guest_path(name: &str) -> PathBuf {
    guests_dir().join("out").join(format!("{name}.wasm"))
}

/// A built example guest (`guests/out/NAME.wasm`); run `scripts/build-guests.sh` first.
pub fn built_guest(name: &str) -> Vec<u8> {
    let path = built_guest_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example guests with scripts/build-guests.sh (scripts/test.sh does)",
            path.display()
        )
    })
}

/// A publisher key pair from a fixed seed.
pub fn publisher(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// A signed publish bundle of `wasm` as `name@version`, with default limits.
pub fn bundle(keys: &Keypair, wasm: Vec<u8>, name: &str, version: u64) -> PublishBundle {
    wasmesh_node::module_file::bundle(wasm, name.to_owned(), version, Limits::default(), keys)
        .unwrap_or_else(|e| panic!("cannot sign {name}@{version}: {e:#}"))
}

/// A valid module of exactly `size` bytes: the reverse fixture and a custom section of bytes
/// that do not compress, distinct per `seed` (so each is a new blob).
pub fn large_module(size: usize, seed: u64) -> Vec<u8> {
    let mut module = fixture("reverse.wat");
    let name = b"payload";
    // Section id, its size (5-byte LEB128), the name's length and the name.
    let overhead = 1 + 5 + 1 + name.len();
    let payload = size - module.len() - overhead;
    let content = 1 + name.len() + payload;
    module.push(0);
    for i in 0..5 {
        let more = if i < 4 { 0x80 } else { 0 };
        module.push(((content >> (7 * i)) & 0x7f) as u8 | more);
    }
    module.push(name.len() as u8);
    module.extend_from_slice(name);
    let mut counter = seed << 32;
    while module.len() < size {
        module.extend_from_slice(&ContentHash::of(&counter.to_le_bytes()).0);
        counter += 1;
    }
    module.truncate(size);
    module
}

/// `len` bytes that do not compress (a BLAKE3 stream).
pub fn incompressible_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&ContentHash::of(&counter.to_le_bytes()).0);
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}

/// `len` bytes shaped like code: opcodes and small operands drawn from a BLAKE3 stream, which
/// zstd's fastest level shrinks to about 36%, as it does a compiled Rust guest (`thumbnail.wasm`,
/// 38%).
pub fn code_like_bytes(len: usize) -> Vec<u8> {
    const OPCODES: [&[u8]; 8] = [
        &[0x20],
        &[0x21],
        &[0x41],
        &[0x6a],
        &[0x28, 0x02],
        &[0x36, 0x02],
        &[0x10],
        &[0x0d],
    ];
    let mut bytes = Vec::with_capacity(len + 64);
    let mut counter = 0u64;
    while bytes.len() < len {
        let draw = ContentHash::of(&counter.to_le_bytes()).0;
        for byte in &draw[..8] {
            bytes.extend_from_slice(OPCODES[usize::from(byte % 8)]);
            bytes.push(byte % 16);
        }
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}
