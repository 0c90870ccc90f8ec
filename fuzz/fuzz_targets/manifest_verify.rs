//! Manifest verification: arbitrary bytes as a signed manifest, checked the way a node checks
//! one (well-formedness, trust and scope, signature, blob, rollback against a held manifest);
//! and a genuine signature over fuzzed fields, with one fuzzed byte flipped, which must then
//! fail to verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmesh_keys::TrustList;
use wasmesh_protocol::manifest::{check_replaces, is_equivocation};
use wasmesh_protocol::{Abi, ContentHash, Keypair, Limits, Manifest, SignedManifest};

fn publisher() -> &'static Keypair {
    static KEYS: OnceLock<Keypair> = OnceLock::new();
    KEYS.get_or_init(|| Keypair::from_seed([7; 32]))
}

fn trust() -> &'static TrustList {
    static TRUST: OnceLock<TrustList> = OnceLock::new();
    TRUST.get_or_init(|| {
        TrustList::parse([format!("{}=echo,img-*", publisher().public())]).expect("valid entry")
    })
}

fn held() -> &'static Manifest {
    static HELD: OnceLock<Manifest> = OnceLock::new();
    HELD.get_or_init(|| Manifest {
        name: "echo".into(),
        version: 5,
        blob: ContentHash::of(b"held"),
        size: 4,
        abi: Abi::Raw,
        limits: Limits::default(),
        publisher: publisher().public(),
        issued_at_ms: 1,
    })
}

fn check(signed: &SignedManifest, blob: &[u8]) {
    let _ = signed.manifest.check_well_formed();
    let _ = signed.manifest.verify_blob(blob);
    if let Ok(manifest) = signed.verify(|k| trust().contains(k)) {
        let _ = trust().allows(&manifest.publisher, &manifest.name);
        let replaces = check_replaces(Some(held()), manifest);
        if is_equivocation(held(), manifest) {
            // Exactly one of two equivocating manifests replaces the other.
            assert_ne!(replaces.is_ok(), check_replaces(Some(manifest), held()).is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(signed) = SignedManifest::decode(rest) {
            check(&signed, rest);
        }
        return;
    }
    // Fields from the input, signed for real, then one byte of the encoding flipped.
    if rest.len() < 20 {
        return;
    }
    let word = |i: usize| u64::from_le_bytes(rest[i..i + 8].try_into().expect("8 bytes"));
    let name: String = rest[16..]
        .iter()
        .take(12)
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    let manifest = Manifest {
        name,
        version: word(0),
        blob: ContentHash::of(&rest[8..16]),
        size: word(8) % (1 << 20),
        abi: if rest[16] % 2 == 0 { Abi::Raw } else { Abi::Wasi },
        limits: Limits::default(),
        publisher: publisher().public(),
        issued_at_ms: word(0) ^ word(8),
    };
    let signed = manifest.sign(publisher());
    check(&signed, rest);
    let mut bytes = signed.encode();
    let at = rest[17] as usize * 7 % bytes.len();
    bytes[at] ^= 1 << (rest[18] % 8);
    if let Ok(tampered) = SignedManifest::decode(&bytes) {
        assert!(
            tampered.verify_signature().is_err(),
            "a flipped bit still verifies"
        );
    }
});
