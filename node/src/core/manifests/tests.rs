//! Manifest intake against the registry: answers without a signature check, scopes and name
//! owners, filing and forgetting blobs, caps, and any order of offers.

use wasmesh_protocol::{Abi, Keypair, Signature};

use super::*;

fn signed(keys: &Keypair, name: &str, version: u64) -> SignedManifest {
    Manifest {
        name: name.into(),
        version,
        blob: ContentHash::of(name.as_bytes()),
        size: 1,
        abi: Abi::Raw,
        limits: Limits::default(),
        publisher: keys.public(),
        issued_at_ms: 0,
    }
    .sign(keys)
}

/// The whole decision, as the node takes it in two steps: `Ok(None)` for a copy of what
/// is held, `Ok(Some(taken))` when it was filed.
fn offer_whole(
    registry: &mut Registry,
    signed: &SignedManifest,
    filing: Filing<'_>,
) -> Result<Option<Taken>, Refusal> {
    match screen(registry, signed, filing.trust) {
        Screened::Answered(Ok(_)) => Ok(None),
        Screened::Answered(Err(refusal)) => Err(refusal),
        Screened::Verified(verified) => take(registry, &verified, filing).map(Some),
    }
}

fn filing<'a>(trust: &'a TrustList, caps: &'a Limits) -> Filing<'a> {
    Filing {
        trust,
        replicate: &Replicate::All,
        caps,
    }
}

fn holding(manifest: SignedManifest) -> Registry {
    let mut registry = Registry::default();
    registry.put(ModuleEntry {
        signed: manifest,
        state: ModuleState::Pending,
    });
    registry
}

#[test]
fn an_older_version_is_refused_before_its_signature_is_checked() {
    let keys = Keypair::from_seed([1; 32]);
    let trust: TrustList = [keys.public()].into_iter().collect();
    let caps = Limits::default();
    let mut registry = holding(signed(&keys, "echo", 5));
    let mut old = signed(&keys, "echo", 4);
    old.signature = Signature([0; 64]);
    // A bad signature would say `bad_signature`: the answer comes from the version alone.
    assert!(matches!(
        offer_whole(&mut registry, &old, filing(&trust, &caps)),
        Err(Refusal::Rollback(_))
    ));
    assert_eq!(
        offer_whole(
            &mut registry,
            &signed(&keys, "echo", 5),
            filing(&trust, &caps)
        ),
        Ok(None)
    );
}

#[test]
fn scopes_limit_names_and_let_a_scoped_key_share_one() {
    let (owner, scoped, other) = (
        Keypair::from_seed([1; 32]),
        Keypair::from_seed([2; 32]),
        Keypair::from_seed([3; 32]),
    );
    let trust = TrustList::parse([
        owner.public().to_string(),
        format!("{}=echo", scoped.public()),
        other.public().to_string(),
    ])
    .unwrap();
    let caps = Limits::default();
    let mut registry = holding(signed(&owner, "echo", 1));
    assert!(matches!(
        offer_whole(
            &mut registry,
            &signed(&scoped, "img", 1),
            filing(&trust, &caps)
        ),
        Err(Refusal::OutOfScope { .. })
    ));
    assert!(matches!(
        offer_whole(
            &mut registry,
            &signed(&other, "echo", 9),
            filing(&trust, &caps)
        ),
        Err(Refusal::NameOwned { .. })
    ));
    assert!(matches!(
        offer_whole(
            &mut registry,
            &signed(&scoped, "echo", 9),
            filing(&trust, &caps)
        ),
        Ok(Some(_))
    ));
}

#[test]
fn a_new_version_is_filed_and_its_old_blob_forgotten_unless_another_module_names_it() {
    let keys = Keypair::from_seed([1; 32]);
    let trust: TrustList = [keys.public()].into_iter().collect();
    let caps = Limits::default();
    let filing = Filing {
        trust: &trust,
        replicate: &Replicate::All,
        caps: &caps,
    };
    let mut registry = Registry::default();
    let first = signed(&keys, "echo", 1);
    let taken = take(&mut registry, &verify(&first, &trust).unwrap(), filing).unwrap();
    assert_eq!((taken.offered, taken.replaced), (Offered::Accepted, false));
    assert!(matches!(
        registry.get(&first.manifest.key()).unwrap().state,
        ModuleState::Pending
    ));
    assert_eq!(
        take(&mut registry, &verify(&first, &trust).unwrap(), filing)
            .unwrap()
            .offered,
        Offered::AlreadyHeld
    );
    // Version 2 with a new blob: version 1's blob is no one's any more.
    let mut second = first.manifest.clone();
    second.version = 2;
    second.blob = ContentHash::of(b"v2");
    let second = second.sign(&keys);
    let taken = take(&mut registry, &verify(&second, &trust).unwrap(), filing).unwrap();
    assert!(taken.replaced);
    assert_eq!(taken.forget_blob, Some(first.manifest.blob));
    // Version 3 shares its blob with another module: nothing to forget.
    let mut other = second.manifest.clone();
    other.name = "other".into();
    offer_whole(&mut registry, &other.sign(&keys), filing).unwrap();
    let mut third = second.manifest.clone();
    third.version = 3;
    third.blob = ContentHash::of(b"v3");
    let taken = offer_whole(&mut registry, &third.sign(&keys), filing).unwrap();
    assert_eq!(taken.and_then(|taken| taken.forget_blob), None);
}

#[test]
fn a_module_over_the_caps_is_kept_not_runnable_and_one_not_replicated_is_remote() {
    let keys = Keypair::from_seed([1; 32]);
    let trust: TrustList = [keys.public()].into_iter().collect();
    let caps = Limits {
        memory_pages: 16,
        ..Limits::default()
    };
    let replicate = Replicate::Names(vec!["big".into()]);
    let filing = Filing {
        trust: &trust,
        replicate: &replicate,
        caps: &caps,
    };
    let mut registry = Registry::default();
    let mut big = signed(&keys, "big", 1).manifest;
    big.limits.memory_pages = 1024;
    let big = big.sign(&keys);
    offer_whole(&mut registry, &big, filing).unwrap();
    assert!(matches!(
        registry.get(&big.manifest.key()).unwrap().state,
        ModuleState::NotRunnable(_)
    ));
    let elsewhere = signed(&keys, "elsewhere", 1);
    offer_whole(&mut registry, &elsewhere, filing).unwrap();
    assert!(matches!(
        registry.get(&elsewhere.manifest.key()).unwrap().state,
        ModuleState::Remote
    ));
}

/// One offer: publisher (0 and 1 trusted, 2 not), name, version, blob, signature intact.
#[derive(Debug, Clone)]
struct Offer {
    publisher: usize,
    name: usize,
    version: u64,
    blob: u8,
    intact: bool,
}

fn offer() -> impl proptest::strategy::Strategy<Value = Offer> {
    use proptest::prelude::*;
    (
        0usize..3,
        0usize..3,
        0u64..6,
        0u8..3,
        proptest::bool::weighted(0.9),
    )
        .prop_map(|(publisher, name, version, blob, intact)| Offer {
            publisher,
            name,
            version,
            blob,
            intact,
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Offers in any order, taken the way the node takes them (answer without a signature,
    /// verify, take): a held version never goes down (at one version, only to the lower
    /// blob hash); a name never changes owner; untrusted or forged offers change nothing; an
    /// accepted offer is what is held; the kept digest matches the entries.
    #[test]
    fn no_offer_sequence_rolls_back_a_module_or_moves_a_name(
        offers in proptest::collection::vec(offer(), 1..120),
    ) {
        let keys: Vec<Keypair> = (1..=3).map(|n| Keypair::from_seed([n; 32])).collect();
        let trust: TrustList = keys[..2].iter().map(|k| k.public()).collect();
        let caps = Limits::default();
        let filing = Filing { trust: &trust, replicate: &Replicate::All, caps: &caps };
        let names = ["a", "b", "c"];
        let mut registry = Registry::default();
        for offer in offers {
            let before = registry.clone();
            let mut manifest = signed(&keys[offer.publisher], names[offer.name], offer.version).manifest;
            manifest.blob = ContentHash::of(&[offer.blob]);
            let mut offered = manifest.sign(&keys[offer.publisher]);
            if !offer.intact {
                offered.signature = Signature([7; 64]);
            }
            let outcome = match screen(&registry, &offered, &trust) {
                Screened::Answered(answer) => answer,
                Screened::Verified(verified) => {
                    take(&mut registry, &verified, filing).map(|taken| taken.offered)
                }
            };
            let key = offered.manifest.key();
            if outcome == Ok(Offered::Accepted) {
                let held = registry.get(&key).map(|e| &e.signed);
                proptest::prop_assert_eq!(held, Some(&offered));
            }
            if offer.publisher == 2 || !offer.intact {
                proptest::prop_assert_eq!(registry.manifest_digest(), before.manifest_digest());
            }
            for old in before.entries() {
                let old = &old.signed.manifest;
                let now = &registry.get(&old.key()).expect("a module was dropped").signed.manifest;
                proptest::prop_assert!(now.version >= old.version);
                if now.version == old.version {
                    proptest::prop_assert!(now.blob <= old.blob);
                }
                proptest::prop_assert_eq!(registry.owner_of(&old.name), before.owner_of(&old.name));
            }
            let recomputed = wasmesh_protocol::wire::manifest_digest(
                registry.entries().map(|e| ContentHash::of(&e.signed.encode())),
            );
            proptest::prop_assert_eq!(registry.manifest_digest(), recomputed);
        }
    }
}
