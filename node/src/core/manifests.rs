//! Whether a manifest is taken, whatever its origin: the decisions of manifest intake against
//! the registry and the trust list, without storage, locks or logging (the node adds those).
//!
//! In order: a copy of what is held, or an older version, is answered without a signature check
//! (sync responses repeat every manifest a peer holds, and a check costs about 80 us); then the
//! trust list, the name's scope and the signature; then what is held: the name belongs to the
//! first publisher this node accepted it from, unless the operator scoped the newcomer's key to
//! that name, and the rollback and equivocation rules of `protocol::manifest`.

use libp2p::PeerId;
use wasmesh_keys::TrustList;
use wasmesh_protocol::manifest::{RollbackError, check_replaces, is_equivocation};
use wasmesh_protocol::{ContentHash, Limits, Manifest, PublicKey, SignedManifest, VerifyError};

use super::registry::{ModuleEntry, ModuleState, Registry};
use crate::config::Replicate;

/// Where a manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Gossiped by a peer.
    Gossip(PeerId),
    /// Received in a sync response.
    Sync(PeerId),
    /// Published through this node's gateway.
    Publish,
    /// Loaded from this node's store at start-up.
    Store,
}

/// The outcome of offering a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// New: stored and being ingested.
    Accepted,
    /// The same manifest is already held.
    AlreadyHeld,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// It does not verify (signature, trust, name, limits).
    #[error(transparent)]
    Invalid(#[from] VerifyError),
    /// Its publisher is trusted here, but not for this name.
    #[error("publisher {publisher} is not trusted for the name {name} on this node")]
    OutOfScope {
        /// The name.
        name: String,
        /// The publisher.
        publisher: PublicKey,
    },
    /// It is not newer than the version held (or loses an equivocation).
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// Its name belongs to another publisher here.
    #[error("the name {name} belongs to publisher {owner} on this node")]
    NameOwned {
        /// The name.
        name: String,
        /// The publisher it belongs to.
        owner: PublicKey,
    },
    /// It could not be stored.
    #[error("cannot store the manifest: {0}")]
    Store(String),
}

impl Refusal {
    /// A short machine-readable reason (metrics label, HTTP error kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Invalid(VerifyError::UntrustedPublisher { .. }) => "untrusted_publisher",
            Refusal::Invalid(VerifyError::BadSignature { .. }) => "bad_signature",
            Refusal::Invalid(VerifyError::HashMismatch { .. }) => "hash_mismatch",
            Refusal::Invalid(VerifyError::SizeMismatch { .. }) => "size_mismatch",
            Refusal::Invalid(VerifyError::InvalidName(_)) => "invalid_name",
            Refusal::Invalid(_) => "invalid_manifest",
            Refusal::OutOfScope { .. } => "name_out_of_scope",
            Refusal::Rollback(RollbackError::Equivocation { .. }) => "equivocation",
            Refusal::Rollback(_) => "not_newer",
            Refusal::NameOwned { .. } => "name_owned",
            Refusal::Store(_) => "store_failed",
        }
    }

    /// Whether an honest relay could have sent it: trust lists, scopes, name owners and held
    /// versions differ between honest nodes, so such a refusal must not cost the sender.
    pub fn is_honest_disagreement(&self) -> bool {
        !matches!(self, Refusal::Invalid(e) if !matches!(e, VerifyError::UntrustedPublisher { .. }))
    }
}

/// What checking a manifest against the registry found, when it may be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admissible {
    /// The publisher had signed another blob under the same version, which this one replaces
    /// (it has the lower hash): the held blob's hash, to log beside the new one.
    pub equivocation_with: Option<ContentHash>,
}

/// The answer that needs no signature check: a copy of the held manifest, or an older version.
pub fn answer_without_signature(
    registry: &Registry,
    signed: &SignedManifest,
) -> Option<Result<Offered, Refusal>> {
    let held = registry.get(&signed.manifest.key())?;
    if held.signed == *signed {
        return Some(Ok(Offered::AlreadyHeld));
    }
    if signed.manifest.version < held.signed.manifest.version {
        return Some(
            check_replaces(Some(&held.signed.manifest), &signed.manifest)
                .map(|()| Offered::Accepted)
                .map_err(Refusal::from),
        );
    }
    None
}

/// Trust, scope and signature.
pub fn verify(signed: &SignedManifest, trust: &TrustList) -> Result<(), Refusal> {
    let manifest = &signed.manifest;
    if trust.contains(&manifest.publisher) && !trust.allows(&manifest.publisher, &manifest.name) {
        return Err(Refusal::OutOfScope {
            name: manifest.name.clone(),
            publisher: manifest.publisher,
        });
    }
    signed.verify(|key| trust.contains(key))?;
    Ok(())
}

/// What a verified manifest must pass against what is held: its name belongs to its publisher
/// here (or to nobody yet, or the operator scoped the publisher to it), and it replaces the
/// publisher's held version.
pub fn check_against_held(
    registry: &Registry,
    manifest: &Manifest,
    trust: &TrustList,
) -> Result<Admissible, Refusal> {
    if let Some(owner) = registry.owner_of(&manifest.name)
        && owner != manifest.publisher
        && !trust.scoped_to(&manifest.publisher, &manifest.name)
    {
        return Err(Refusal::NameOwned {
            name: manifest.name.clone(),
            owner,
        });
    }
    let held = registry.get(&manifest.key()).map(|e| &e.signed.manifest);
    check_replaces(held, manifest)?;
    Ok(Admissible {
        equivocation_with: held
            .filter(|held| is_equivocation(held, manifest))
            .map(|held| held.blob),
    })
}

/// How this node files a manifest it takes.
#[derive(Debug, Clone, Copy)]
pub struct Filing<'a> {
    /// The publishers trusted, and their scopes.
    pub trust: &'a TrustList,
    /// Which modules are replicated here.
    pub replicate: &'a Replicate,
    /// The most a module may ask of this node.
    pub caps: &'a Limits,
}

/// What taking a verified manifest changed, for the caller to carry out (in this order, before
/// anything else takes a manifest: the store must see accepted manifests in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Whether it was new.
    pub offered: Offered,
    /// The publisher had signed another blob under this version (see [`Admissible`]).
    pub equivocation_with: Option<ContentHash>,
    /// It replaced an older version: what this node announces changes.
    pub replaced: bool,
    /// A blob that no manifest held names any more: remove it from the store.
    pub forget_blob: Option<ContentHash>,
}

/// Takes a manifest whose signature [`verify`] checked: checks it against what is held and, if
/// it passes, files it in `registry` with its state here (not replicated here: `Remote`; over
/// this node's caps: `NotRunnable`; otherwise `Pending` until ingested).
pub fn take(
    registry: &mut Registry,
    signed: &SignedManifest,
    filing: Filing<'_>,
) -> Result<Taken, Refusal> {
    let manifest = &signed.manifest;
    if registry
        .get(&manifest.key())
        .is_some_and(|held| held.signed == *signed)
    {
        return Ok(Taken {
            offered: Offered::AlreadyHeld,
            equivocation_with: None,
            replaced: false,
            forget_blob: None,
        });
    }
    let admissible = check_against_held(registry, manifest, filing.trust)?;
    let state = match manifest.limits.first_excess(filing.caps) {
        _ if !filing.replicate.includes(&manifest.name) => ModuleState::Remote,
        Some(reason) => ModuleState::NotRunnable(reason),
        None => ModuleState::Pending,
    };
    let replaced = registry.put(ModuleEntry {
        signed: signed.clone(),
        state,
    });
    let forget_blob = replaced
        .as_ref()
        .map(|old| old.signed.manifest.blob)
        .filter(|blob| !registry.uses_blob(blob));
    Ok(Taken {
        offered: Offered::Accepted,
        equivocation_with: admissible.equivocation_with,
        replaced: replaced.is_some(),
        forget_blob,
    })
}

/// The whole decision in one call (the node takes it in steps, so as not to hold the registry
/// across the signature check).
pub fn check_offer(
    registry: &Registry,
    signed: &SignedManifest,
    trust: &TrustList,
) -> Result<Option<Admissible>, Refusal> {
    match answer_without_signature(registry, signed) {
        Some(Ok(Offered::AlreadyHeld)) => return Ok(None),
        Some(Err(refusal)) => return Err(refusal),
        Some(Ok(Offered::Accepted)) | None => {}
    }
    verify(signed, trust)?;
    check_against_held(registry, &signed.manifest, trust).map(Some)
}

#[cfg(test)]
mod tests {
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
        let registry = holding(signed(&keys, "echo", 5));
        let mut old = signed(&keys, "echo", 4);
        old.signature = Signature([0; 64]);
        // A bad signature would say `bad_signature`: the answer comes from the version alone.
        assert!(matches!(
            check_offer(&registry, &old, &trust),
            Err(Refusal::Rollback(_))
        ));
        assert_eq!(
            check_offer(&registry, &signed(&keys, "echo", 5), &trust),
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
        let registry = holding(signed(&owner, "echo", 1));
        assert!(matches!(
            check_offer(&registry, &signed(&scoped, "img", 1), &trust),
            Err(Refusal::OutOfScope { .. })
        ));
        assert!(matches!(
            check_offer(&registry, &signed(&other, "echo", 9), &trust),
            Err(Refusal::NameOwned { .. })
        ));
        assert!(matches!(
            check_offer(&registry, &signed(&scoped, "echo", 9), &trust),
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
        let taken = take(&mut registry, &first, filing).unwrap();
        assert_eq!((taken.offered, taken.replaced), (Offered::Accepted, false));
        assert!(matches!(
            registry.get(&first.manifest.key()).unwrap().state,
            ModuleState::Pending
        ));
        assert_eq!(
            take(&mut registry, &first, filing).unwrap().offered,
            Offered::AlreadyHeld
        );
        // Version 2 with a new blob: version 1's blob is no one's any more.
        let mut second = first.manifest.clone();
        second.version = 2;
        second.blob = ContentHash::of(b"v2");
        let second = second.sign(&keys);
        let taken = take(&mut registry, &second, filing).unwrap();
        assert!(taken.replaced);
        assert_eq!(taken.forget_blob, Some(first.manifest.blob));
        // Version 3 shares its blob with another module: nothing to forget.
        let mut other = second.manifest.clone();
        other.name = "other".into();
        take(&mut registry, &other.sign(&keys), filing).unwrap();
        let mut third = second.manifest.clone();
        third.version = 3;
        third.blob = ContentHash::of(b"v3");
        let taken = take(&mut registry, &third.sign(&keys), filing).unwrap();
        assert_eq!(taken.forget_blob, None);
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
        take(&mut registry, &big, filing).unwrap();
        assert!(matches!(
            registry.get(&big.manifest.key()).unwrap().state,
            ModuleState::NotRunnable(_)
        ));
        let elsewhere = signed(&keys, "elsewhere", 1);
        take(&mut registry, &elsewhere, filing).unwrap();
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
                let outcome = match answer_without_signature(&registry, &offered) {
                    Some(answer) => answer,
                    None => verify(&offered, &trust).and_then(|()| {
                        take(&mut registry, &offered, filing).map(|taken| taken.offered)
                    }),
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
}
