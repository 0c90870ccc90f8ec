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
use crate::rejection::Rejection;

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
    /// The rejection it is counted as.
    pub fn rejection(&self) -> Rejection {
        match self {
            Refusal::Invalid(VerifyError::UntrustedPublisher { .. }) => {
                Rejection::UntrustedPublisher
            }
            Refusal::Invalid(VerifyError::BadSignature { .. }) => Rejection::BadSignature,
            Refusal::Invalid(VerifyError::HashMismatch { .. }) => Rejection::HashMismatch,
            Refusal::Invalid(VerifyError::SizeMismatch { .. }) => Rejection::SizeMismatch,
            Refusal::Invalid(VerifyError::InvalidName(_)) => Rejection::InvalidName,
            Refusal::Invalid(_) => Rejection::InvalidManifest,
            Refusal::OutOfScope { .. } => Rejection::NameOutOfScope,
            Refusal::Rollback(RollbackError::Equivocation { .. }) => Rejection::Equivocation,
            Refusal::Rollback(_) => Rejection::NotNewer,
            Refusal::NameOwned { .. } => Rejection::NameOwned,
            Refusal::Store(_) => Rejection::StoreFailed,
        }
    }

    /// A short machine-readable reason (metrics label, HTTP error kind).
    pub fn kind(&self) -> &'static str {
        self.rejection().as_str()
    }

    /// Whether an honest relay could have sent it: trust lists, scopes, name owners and held
    /// versions differ between honest nodes, so such a refusal must not cost the sender.
    pub fn is_honest_disagreement(&self) -> bool {
        !matches!(self, Refusal::Invalid(e) if !matches!(e, VerifyError::UntrustedPublisher { .. }))
    }
}

/// What gossipsub is told of a gossiped manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// New: forward it.
    Accept,
    /// Not forwarded, at no cost to the sender.
    Ignore,
    /// Dropped, and the sender's score lowered.
    Reject,
}

/// The verdict on a gossiped manifest that was offered with `outcome`. Only what no honest peer
/// would relay costs the sender score: relays run the same checks, so a bad signature or a
/// malformed manifest is the sender's own. Trust lists, scopes, name owners and held versions
/// differ between honest nodes, so a manifest refused for those is dropped quietly.
pub fn gossip_verdict(outcome: &Result<Offered, Refusal>) -> GossipVerdict {
    match outcome {
        Ok(Offered::Accepted) => GossipVerdict::Accept,
        Ok(Offered::AlreadyHeld) => GossipVerdict::Ignore,
        Err(refusal) if refusal.is_honest_disagreement() => GossipVerdict::Ignore,
        Err(_) => GossipVerdict::Reject,
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

/// A signed manifest whose publisher is trusted for its name and whose signature verifies:
/// only [`verify`] makes one, so whatever takes a `Verified` knows the check was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified(SignedManifest);

impl Verified {
    /// The manifest.
    pub fn signed(&self) -> &SignedManifest {
        &self.0
    }

    /// The manifest, to keep.
    pub fn into_signed(self) -> SignedManifest {
        self.0
    }
}

/// Trust, scope and signature.
pub fn verify(signed: &SignedManifest, trust: &TrustList) -> Result<Verified, Refusal> {
    let manifest = &signed.manifest;
    if trust.contains(&manifest.publisher) && !trust.allows(&manifest.publisher, &manifest.name) {
        return Err(Refusal::OutOfScope {
            name: manifest.name.clone(),
            publisher: manifest.publisher,
        });
    }
    signed.verify(|key| trust.contains(key))?;
    Ok(Verified(signed.clone()))
}

/// What the first step of intake found (see [`screen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// Answered without taking it: a copy of what is held, or refused.
    Answered(Result<Offered, Refusal>),
    /// Verified: [`take`] decides against what is held when it is filed.
    Verified(Verified),
}

/// The first step of intake, which needs only a snapshot of the registry and may run anywhere:
/// a copy of what is held or an older version is answered without a signature check, the rest
/// is verified. The second step is [`take`], against the registry as it is then.
pub fn screen(registry: &Registry, signed: &SignedManifest, trust: &TrustList) -> Screened {
    match answer_without_signature(registry, signed) {
        Some(answer @ (Ok(Offered::AlreadyHeld) | Err(_))) => Screened::Answered(answer),
        Some(Ok(Offered::Accepted)) | None => match verify(signed, trust) {
            Ok(verified) => Screened::Verified(verified),
            Err(refusal) => Screened::Answered(Err(refusal)),
        },
    }
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

/// Takes a manifest [`verify`] checked: checks it against what is held and, if it passes,
/// files it in `registry` with its state here (not replicated here: `Remote`; over this node's
/// caps: `NotRunnable`; otherwise `Pending` until ingested).
pub fn take(
    registry: &mut Registry,
    verified: &Verified,
    filing: Filing<'_>,
) -> Result<Taken, Refusal> {
    let signed = verified.signed();
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

#[cfg(test)]
mod tests;
