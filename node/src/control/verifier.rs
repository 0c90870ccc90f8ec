//! Manifest signatures are checked off the event loop: a gossiped manifest or a page of a sync
//! answer goes to a blocking task that screens it (`core::manifests::screen`: a copy of what
//! the view holds, or an older version, is answered without a check; the rest verified), and
//! comes back to the loop as a command, which files what was verified. A page of 1,024
//! manifests takes about 80 ms to verify; the loop goes on serving meanwhile.
//!
//! The manifests being screened are capped ([`MAX_SCREENING`]): past it, a gossiped manifest
//! is ignored (gossipsub may deliver it again, and sync will), counted as `verify_backlog`. A
//! sync page waits for its place instead: the next page of a peer is asked for only once this
//! one is filed, so each peer has at most one page here at a time.

use std::sync::Arc;

use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmesh_protocol::SignedManifest;

use super::command::{ControlCommand, GossipedMessage, NextPage, ScreenedBatch};
use super::handle::NodeHandle;
use crate::core::manifests::{Origin, screen};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::rejection::Rejection;
use crate::view::Views;

/// Manifests being screened at once, at most.
pub(crate) const MAX_SCREENING: usize = 4096;

/// Screens manifests off the loop (see the module docs).
pub(crate) struct Verifier {
    policy: Arc<Policy>,
    views: Arc<Views>,
    control: NodeHandle,
    metrics: Arc<Metrics>,
    places: Arc<Semaphore>,
}

impl Verifier {
    /// A verifier that sends its results to the loop through `control`.
    pub(crate) fn new(
        policy: Arc<Policy>,
        views: Arc<Views>,
        control: NodeHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            policy,
            views,
            control,
            metrics,
            places: Arc::new(Semaphore::new(MAX_SCREENING)),
        }
    }

    /// Screens a gossiped manifest; false if the backlog is full (the caller ignores it).
    pub(crate) fn gossiped(
        &self,
        signed: SignedManifest,
        source: PeerId,
        id: MessageId,
        propagation_source: PeerId,
    ) -> bool {
        let Ok(permit) = self.places.clone().try_acquire_owned() else {
            self.metrics.count_rejection(Rejection::VerifyBacklog);
            tracing::debug!(%source, "too many manifests being verified; a gossiped one dropped");
            return false;
        };
        let batch = ScreenedBatch {
            origin: Origin::Gossip(source),
            manifests: Vec::new(),
            gossip: Some(GossipedMessage {
                id,
                propagation_source,
            }),
            next_page: None,
        };
        self.screen(vec![signed], batch, Some(permit));
        true
    }

    /// Screens a page of a sync answer from `peer`, waiting for its place; `next_page` is
    /// asked for once it is filed.
    pub(crate) fn synced(
        &self,
        manifests: Vec<SignedManifest>,
        peer: PeerId,
        next_page: Option<NextPage>,
    ) {
        let batch = ScreenedBatch {
            origin: Origin::Sync(peer),
            manifests: Vec::new(),
            gossip: None,
            next_page,
        };
        self.screen(manifests, batch, None);
    }

    /// Screens `manifests` on the blocking pool, in a place of the cap (taken already, or
    /// waited for), and sends them to the loop as `batch`.
    fn screen(
        &self,
        manifests: Vec<SignedManifest>,
        mut batch: ScreenedBatch,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let weight = u32::try_from(manifests.len().clamp(1, MAX_SCREENING)).unwrap_or(1);
        let (policy, views, control, places) = (
            self.policy.clone(),
            self.views.clone(),
            self.control.clone(),
            self.places.clone(),
        );
        tokio::spawn(async move {
            let _permit = match permit {
                Some(permit) => permit,
                None => match places.acquire_many_owned(weight).await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let screening = tokio::task::spawn_blocking(move || {
                let registry = views.load_full();
                manifests
                    .into_iter()
                    .map(|signed| {
                        let outcome = screen(&registry.registry, &signed, &policy.trust);
                        (signed, outcome)
                    })
                    .collect()
            });
            let Ok(manifests) = screening.await else {
                return;
            };
            batch.manifests = manifests;
            let _ = control
                .send_command(ControlCommand::Screened(Box::new(batch)))
                .await;
        });
    }
}
