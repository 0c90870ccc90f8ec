//! The node's state and its one owner: the control task holds an [`Owner`] (the core's
//! [`NodeState`] and [`Registry`]), changes it as swarm events and commands arrive, and after
//! each change publishes a [`View`] for everyone else to read.
//!
//! What follows a change waits for the view that shows it: answers to commands, ingests of
//! accepted manifests (which read the view), and the status and provider notifications. So a
//! caller that got an answer, or a task that was woken, never reads a view older than the news.
//!
//! A manifest, wherever it comes from (gossip, sync, publish, the store at start-up), goes
//! through [`Owner::offer_manifest`]: decode-with-limit (by the caller), then the decisions of
//! `core::manifests` (name and limits, trust, signature, rollback). Once accepted it is written
//! to the store (off this task, in order, by the store writer) and ingested. A module whose
//! limits exceed this node's caps is kept and reported not runnable here, rather than refused,
//! so that it still propagates to nodes that can run it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;
use tokio::sync::{Notify, mpsc, oneshot};
use wasmesh_protocol::holders::SignedHolder;
use wasmesh_protocol::wire::{PeerRecord, SYNC_PAGE, StatusMessage, SyncRequest, SyncResponse};
use wasmesh_protocol::{ContentHash, ModuleKey, SignedManifest};

use super::holder_work::HolderWork;
use super::own_status::StatusSource;
use crate::core::manifests::{self, Offered, Origin, Refusal, Verified};
use crate::core::peers::intake::StatusRefusal;
use crate::core::registry::{ModuleState, Registry};
use crate::core::state::{Effect, Input, NodeState, StatusContext, StatusVerdict};
use crate::metrics::Metrics;
use crate::own_addresses::OwnAddresses;
use crate::policy::Policy;
use crate::refusal_log::Refusals;
use crate::rejection::Rejection;
use crate::store_writer::StoreWriter;
use crate::view::{View, Views};

/// Where the event loop sends the manifests it accepted, to be ingested.
#[derive(Debug, Clone)]
pub(crate) struct IngestQueue(mpsc::UnboundedSender<SignedManifest>);

impl IngestQueue {
    /// A queue and its receiving end, for the ingestor. Unbounded: it holds accepted
    /// manifests only, which the registry's caps already bound.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<SignedManifest>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Asks for `signed` to be ingested (dropped if the node is stopping).
    pub(crate) fn push(&self, signed: SignedManifest) {
        let _ = self.0.send(signed);
    }
}

/// What the owner hands its decisions to: the policy it files by, the views it publishes, the
/// store writer and the ingest queue that carry out what it accepted, and the counters.
pub(crate) struct OwnerServices {
    pub(crate) policy: Arc<Policy>,
    pub(crate) views: Arc<Views>,
    pub(crate) store_writer: StoreWriter,
    pub(crate) ingests: IngestQueue,
    /// Woken when a peer becomes a provider of something.
    pub(crate) providers_changed: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) refusals: Arc<Refusals>,
    /// What this node's statuses are made of.
    pub(crate) status: StatusSource,
}

/// The node's state, owned by the control task (see the module docs).
pub(crate) struct Owner {
    services: OwnerServices,
    state: NodeState,
    registry: Registry,
    /// Whether anything changed since the last view was published.
    changed: bool,
    /// Accepted manifests, ingested once the view holds them.
    to_ingest: Vec<SignedManifest>,
    /// Answers sent once the view shows what they answer.
    replies: Vec<Reply>,
    status_changed: bool,
    providers_changed: bool,
    /// This node's newest status (with its ready list).
    own_status: Option<StatusMessage>,
    /// Finding holders beyond the neighbours, and the directory this node keeps.
    holder_work: HolderWork,
    /// Dials this node made to keep the peer (bootstrap, the peer table's): their connections
    /// make neighbours. Kademlia's own dials are not here.
    kept_dials: HashSet<ConnectionId>,
    /// The statuses saying this node is leaving, while it waits for their answers.
    leave_acks: Option<super::leave::LeaveAcks>,
}

/// An answer waiting for the next view.
#[derive(Debug)]
enum Reply {
    Offered(
        oneshot::Sender<Result<Offered, Refusal>>,
        Result<Offered, Refusal>,
    ),
    Shown(oneshot::Sender<()>),
}

impl Owner {
    /// Owns `state` and an empty registry; hands what it decides to `services`.
    pub(crate) fn new(state: NodeState, services: OwnerServices) -> Self {
        Self {
            services,
            state,
            registry: Registry::default(),
            changed: true,
            to_ingest: Vec::new(),
            replies: Vec::new(),
            status_changed: false,
            providers_changed: false,
            own_status: None,
            holder_work: HolderWork::default(),
            kept_dials: HashSet::new(),
            leave_acks: None,
        }
    }

    /// The control plane's state, to read.
    pub(crate) fn state(&self) -> &NodeState {
        &self.state
    }

    /// The control plane's state, to change (the next view shows it).
    pub(crate) fn state_mut(&mut self) -> &mut NodeState {
        self.changed = true;
        &mut self.state
    }

    /// Takes one input into the control plane's state at `now` (see `core::state`).
    pub(crate) fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Effect> {
        self.state_mut().handle(input, now)
    }

    /// The policy this node files by.
    pub(crate) fn policy(&self) -> &Policy {
        &self.services.policy
    }

    /// Publishes a view if anything changed, then sends the answers, queues the ingests and
    /// wakes the tasks that waited for it. Returns whether this node's status changed (its
    /// ready list or its manifests): it is made again and sent at once.
    pub(crate) fn publish(&mut self) -> bool {
        if self.changed {
            self.services.views.publish(View {
                registry: self.registry.clone(),
                peers: self.state.peers.clone(),
                coordinate: self.state.coordinate,
                addresses: Some(self.services.status.addresses().report()),
            });
            self.changed = false;
        }
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Offered(to, answer) => {
                    let _ = to.send(answer);
                }
                Reply::Shown(to) => {
                    let _ = to.send(());
                }
            }
        }
        for signed in self.to_ingest.drain(..) {
            self.services.ingests.push(signed);
        }
        if std::mem::take(&mut self.providers_changed) {
            self.services.providers_changed.notify_waiters();
        }
        std::mem::take(&mut self.status_changed)
    }

    /// Changes this node's addresses with `change`; when what it advertises changed, the next
    /// view shows it, the status is sent again at once, and the blobs held are announced again
    /// with the new holder record.
    pub(crate) fn change_addresses(&mut self, change: impl FnOnce(&mut OwnAddresses) -> bool) {
        if self.services.status.change_addresses(change) {
            // Dial addresses travel with the ready list: every neighbour gets both again.
            self.state.peers.update_each(|info| info.ready_sent = None);
            self.changed = true;
            self.status_changed = true;
            self.holder_work.search.announce_again();
        }
    }

    /// This node's addresses, and how many times what they advertise changed.
    pub(crate) fn addresses(&self) -> (&OwnAddresses, u64) {
        let status = &self.services.status;
        (status.addresses(), status.address_changes())
    }

    /// Makes this node's status again (its load, its ready list, its coordinate), the one
    /// every neighbour gets next.
    pub(crate) fn refresh_status(&mut self) {
        let status = self
            .services
            .status
            .make(&self.registry, self.state.coordinate);
        self.own_status = Some(status);
    }

    /// Files a verified manifest if it may be taken (see the module docs).
    pub(crate) fn file(&mut self, verified: Verified, origin: Origin) -> Result<Offered, Refusal> {
        let result = self.take(&verified, origin);
        self.note_outcome(verified.signed(), origin, &result);
        if result == Ok(Offered::Accepted) && origin != Origin::Publish {
            // A publish ingests inline, so its answer means "ready here".
            self.to_ingest.push(verified.into_signed());
        }
        result
    }

    /// Counts and logs how an offer of `signed` ended.
    pub(crate) fn note_outcome(
        &self,
        signed: &SignedManifest,
        origin: Origin,
        outcome: &Result<Offered, Refusal>,
    ) {
        match outcome {
            Ok(Offered::Accepted) => {
                self.services.metrics.manifests_accepted.inc();
                let m = &signed.manifest;
                tracing::info!(module = %m.name, version = m.version, hash = %m.blob.short(), ?origin, "accepted manifest");
            }
            Ok(Offered::AlreadyHeld) => {}
            Err(refusal) => self
                .services
                .refusals
                .manifest(&signed.manifest, origin, refusal),
        }
    }

    /// Files a verified manifest for a caller that waits for the answer (sent with the next
    /// view).
    pub(crate) fn file_and_reply(
        &mut self,
        verified: Verified,
        origin: Origin,
        reply: oneshot::Sender<Result<Offered, Refusal>>,
    ) {
        let answer = self.file(verified, origin);
        self.replies.push(Reply::Offered(reply, answer));
    }

    fn take(&mut self, verified: &Verified, origin: Origin) -> Result<Offered, Refusal> {
        let services = &self.services;
        let taken = manifests::take(&mut self.registry, verified, services.policy.filing())?;
        self.changed = true;
        if let Some(held) = taken.equivocation_with {
            let manifest = &verified.signed().manifest;
            services
                .metrics
                .count_rejection(Rejection::EquivocationSeen);
            tracing::warn!(
                module = %manifest.name,
                version = manifest.version,
                %held,
                offered = %manifest.blob,
                "a publisher signed two blobs under one version; keeping the lower hash"
            );
        }
        // The store writer keeps the order of these writes.
        if taken.offered == Offered::Accepted && origin != Origin::Store {
            services
                .store_writer
                .put_manifest(verified.signed().clone());
        }
        if let Some(blob) = taken.forget_blob {
            services.store_writer.remove_blob(blob);
        }
        self.status_changed |= taken.replaced;
        Ok(taken.offered)
    }

    /// An ingest ended: records the module's state here (if its manifest is still `blob`'s),
    /// and answers `done` with the view that shows it.
    pub(crate) fn ingested(
        &mut self,
        key: &ModuleKey,
        blob: &ContentHash,
        state: ModuleState,
        done: oneshot::Sender<()>,
    ) {
        if self.registry.set_state(key, blob, state) {
            self.changed = true;
            self.status_changed = true;
        }
        self.replies.push(Reply::Shown(done));
    }

    /// Answers `done` once the next view is published (so the caller sees what led to it).
    pub(crate) fn answer_when_shown(&mut self, done: oneshot::Sender<()>) {
        self.replies.push(Reply::Shown(done));
        self.changed = true;
    }

    /// Takes the status `from` sent on its connection (see `NodeState::take_status`), with
    /// `connected` peers connected: what to answer and do. Of the blobs it reports ready, those
    /// this node holds a manifest of are kept, and a few others.
    pub(crate) fn on_status(
        &mut self,
        from: PeerId,
        status: StatusMessage,
        connected: usize,
    ) -> Result<StatusVerdict, StatusRefusal> {
        let many = status
            .ready
            .as_ref()
            .is_some_and(|ready| ready.len() > crate::core::peers::intake::MAX_UNKNOWN_READY);
        let held: HashSet<ContentHash> = match many {
            true => self
                .registry
                .entries()
                .map(|entry| entry.signed.manifest.blob)
                .collect(),
            false => HashSet::new(),
        };
        let known = |hash: &ContentHash| !many || held.contains(hash);
        let context = StatusContext {
            own_digest: self.registry.manifest_digest(),
            known: &known,
            connected,
        };
        let verdict = self
            .state
            .take_status(from, status, context, Instant::now())?;
        self.changed = true;
        if verdict.taken.fresh {
            self.services.metrics.statuses.inc();
        }
        if verdict.taken.dropped_addresses {
            self.services
                .metrics
                .count_rejection(Rejection::PeerAddressNotGlobal);
        }
        self.providers_changed |= verdict.taken.new_provider;
        Ok(verdict)
    }

    /// This node's newest status.
    pub(crate) fn own_status(&self) -> Option<&StatusMessage> {
        self.own_status.as_ref()
    }

    /// The holder work (see `control::holders`).
    pub(crate) fn holder_work(&mut self) -> &mut HolderWork {
        &mut self.holder_work
    }

    /// Waits for answers to the leaving statuses sent as `requests`; `done` is answered once
    /// all have come (or failed).
    pub(crate) fn await_leave_acks(
        &mut self,
        requests: HashSet<libp2p::request_response::OutboundRequestId>,
        done: tokio::sync::oneshot::Sender<()>,
    ) {
        self.leave_acks = Some(super::leave::LeaveAcks::new(requests, done));
    }

    /// A status this node sent was answered, or failed.
    pub(crate) fn status_answered(
        &mut self,
        request: &libp2p::request_response::OutboundRequestId,
    ) {
        if let Some(acks) = &mut self.leave_acks {
            acks.answered(request);
        }
    }

    /// Remembers a dial made to keep its peer.
    pub(crate) fn note_kept_dial(&mut self, connection: ConnectionId) {
        self.kept_dials.insert(connection);
    }

    /// Whether `connection` came from a dial made to keep its peer (forgotten once asked).
    pub(crate) fn take_kept_dial(&mut self, connection: &ConnectionId) -> bool {
        self.kept_dials.remove(connection)
    }

    /// This node's newest status as `peer` gets it (see `PeerTable::status_for`); `None` before
    /// the first status or when the peer is not connected.
    pub(crate) fn status_for(&mut self, peer: &PeerId) -> Option<StatusMessage> {
        let own = self.own_status.as_ref()?;
        self.state.peers.status_for(peer, own)
    }

    /// A page of the manifests held (if asked for), from after the request's `after`, for a
    /// sync response to `requester`; the first page also introduces peers this node is
    /// connected to.
    pub(crate) fn sync_response(&self, request: &SyncRequest, requester: &PeerId) -> SyncResponse {
        let after = request.after.as_ref();
        let (manifests, more) = if !request.manifests {
            (Vec::new(), false)
        } else {
            let mut page = self.registry.entries_after(after);
            let manifests: Vec<SignedManifest> = page
                .by_ref()
                .take(SYNC_PAGE)
                .map(|e| e.signed.clone())
                .collect();
            (manifests, page.next().is_some())
        };
        let peers = match after {
            Some(_) => Vec::new(),
            None => self.state.peers.introductions(requester, Instant::now()),
        };
        SyncResponse {
            manifests,
            membership: self.services.policy.membership_bytes(),
            more,
            peers,
        }
    }

    /// Takes the peers a neighbour introduced: what to dial.
    pub(crate) fn on_introductions(
        &mut self,
        records: &[PeerRecord],
        connected: usize,
    ) -> Vec<Effect> {
        self.changed = true;
        self.state
            .take_introductions(records, connected, Instant::now())
    }

    /// Takes the holders of `blob` a directory named: how many were new.
    pub(crate) fn take_holders(&mut self, blob: ContentHash, records: &[SignedHolder]) -> u64 {
        let new = self.state.take_holders(blob, records, Instant::now());
        if new > 0 {
            self.changed = true;
            self.providers_changed = true;
        }
        new
    }

    /// Files the manifests restored from the store at start-up (verified by the caller): the
    /// number taken.
    pub(crate) fn restore(&mut self, manifests: Vec<Verified>) -> usize {
        manifests
            .into_iter()
            .filter(|verified| self.file(verified.clone(), Origin::Store).is_ok())
            .count()
    }
}
