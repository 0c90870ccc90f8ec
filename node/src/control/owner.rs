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

use std::sync::Arc;
use std::time::Instant;

use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;
use tokio::sync::oneshot;
use wasmesh_protocol::wire::{PeerRecord, SYNC_PAGE, StatusMessage, SyncRequest, SyncResponse};
use wasmesh_protocol::{ContentHash, ModuleKey, SignedManifest};

use super::holder_work::HolderWork;
use crate::core::manifests::{self, Filing, Offered, Origin, Refusal};
use crate::core::peers::intake::StatusRefusal;
use crate::core::registry::{ModuleState, Registry};
use crate::core::state::{Effect, Input, NodeState};
use crate::node::{NodeInner, RestoreError};
use crate::view::View;

/// The node's state, owned by the control task (see the module docs).
#[derive(Debug)]
pub(crate) struct Owner {
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

/// What follows a peer's status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusFollowUp {
    /// Its answer asks for the peer's ready list.
    pub(crate) want_ready: bool,
    /// Ask the peer for a sync: its manifests differ at this digest.
    pub(crate) sync_at: Option<ContentHash>,
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
    /// Owns `state` and an empty registry.
    pub(crate) fn new(state: NodeState) -> Self {
        Self {
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

    /// Publishes a view if anything changed, then sends the answers, starts the ingests and
    /// wakes the tasks that waited for it.
    pub(crate) fn publish(&mut self, node: &Arc<NodeInner>) {
        if self.changed {
            node.views.publish(View {
                registry: self.registry.clone(),
                peers: self.state.peers.clone(),
                coordinate: self.state.coordinate,
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
            node.spawn_ingest(signed);
        }
        if std::mem::take(&mut self.status_changed) {
            node.status_changed.notify_one();
        }
        if std::mem::take(&mut self.providers_changed) {
            node.providers_changed.notify_waiters();
        }
    }

    /// Checks and, if acceptable, takes a manifest (see the module docs).
    pub(crate) fn offer_manifest(
        &mut self,
        node: &NodeInner,
        signed: SignedManifest,
        origin: Origin,
    ) -> Result<Offered, Refusal> {
        let result = self.check_and_store(node, &signed, origin);
        match &result {
            Ok(Offered::Accepted) => {
                node.metrics.manifests_accepted.inc();
                let m = &signed.manifest;
                tracing::info!(module = %m.name, version = m.version, hash = %m.blob.short(), ?origin, "accepted manifest");
                // A publish ingests inline, so its answer means "ready here".
                if origin != Origin::Publish {
                    self.to_ingest.push(signed);
                }
            }
            Ok(Offered::AlreadyHeld) => {}
            Err(refusal) => node.note_refusal(&signed.manifest, origin, refusal),
        }
        result
    }

    /// Offers a manifest for a caller that waits for the answer (sent with the next view).
    pub(crate) fn offer_and_reply(
        &mut self,
        node: &NodeInner,
        signed: SignedManifest,
        origin: Origin,
        reply: oneshot::Sender<Result<Offered, Refusal>>,
    ) {
        let answer = self.offer_manifest(node, signed, origin);
        self.replies.push(Reply::Offered(reply, answer));
    }

    fn check_and_store(
        &mut self,
        node: &NodeInner,
        signed: &SignedManifest,
        origin: Origin,
    ) -> Result<Offered, Refusal> {
        if let Some(answer) = manifests::answer_without_signature(&self.registry, signed) {
            return answer;
        }
        manifests::verify(signed, &node.trust)?;
        let filing = Filing {
            trust: &node.trust,
            replicate: &node.replicate,
            caps: node.executor.caps(),
        };
        let taken = manifests::take(&mut self.registry, signed, filing)?;
        self.changed = true;
        if let Some(held) = taken.equivocation_with {
            let manifest = &signed.manifest;
            node.metrics.count_rejection("equivocation_seen");
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
            node.store_writer.put_manifest(signed.clone());
        }
        if let Some(blob) = taken.forget_blob {
            node.store_writer.remove_blob(blob);
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

    /// Takes the status `from` sent on its connection. Returns what to do about it: whether to
    /// ask the peer for its ready list, and its manifest digest when it differs from this
    /// node's and this node has not asked the peer for a sync at that digest lately (the caller
    /// should ask, and record it with [`Self::note_sync`]).
    pub(crate) fn on_status(
        &mut self,
        node: &NodeInner,
        from: PeerId,
        status: StatusMessage,
    ) -> Result<StatusFollowUp, StatusRefusal> {
        let known: std::collections::HashSet<ContentHash> = match &status.ready {
            Some(ready) if ready.len() > crate::core::peers::intake::MAX_UNKNOWN_READY => self
                .registry
                .entries()
                .map(|entry| entry.signed.manifest.blob)
                .collect(),
            _ => std::collections::HashSet::new(),
        };
        let small = status
            .ready
            .as_ref()
            .is_none_or(|ready| ready.len() <= crate::core::peers::intake::MAX_UNKNOWN_READY);
        let taken = self.state.peers.take_status(
            from,
            status,
            Instant::now(),
            node.allow_private_addrs,
            |hash| small || known.contains(hash),
        )?;
        self.changed = true;
        if taken.fresh {
            node.metrics.statuses.inc();
        }
        if taken.dropped_addresses {
            node.metrics.count_rejection("peer_address_not_global");
        }
        self.providers_changed |= taken.new_provider;
        Ok(StatusFollowUp {
            want_ready: taken.want_ready,
            sync_at: taken
                .unsynced_digest
                .filter(|theirs| *theirs != self.registry.manifest_digest()),
        })
    }

    /// This node's newest status, which every connected peer gets.
    pub(crate) fn set_own_status(&mut self, status: StatusMessage) {
        self.own_status = Some(status);
    }

    /// This node's newest status.
    pub(crate) fn own_status(&self) -> Option<&StatusMessage> {
        self.own_status.as_ref()
    }

    /// The holder work (see `control::holders`).
    pub(crate) fn holder_work(&mut self) -> &mut HolderWork {
        &mut self.holder_work
    }

    /// A peer became a holder of something it was not known to hold: the tasks waiting for
    /// providers are woken with the next view.
    pub(crate) fn note_new_provider(&mut self) {
        self.changed = true;
        self.providers_changed = true;
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

    /// Records that this node asked `peer` for a sync while it reported `digest`.
    pub(crate) fn note_sync(&mut self, peer: &PeerId, digest: ContentHash) {
        self.state.peers.synced(peer, digest, Instant::now());
    }

    /// A page of the manifests held (if asked for), from after the request's `after`, for a
    /// sync response to `requester`; the first page also introduces peers this node is
    /// connected to.
    pub(crate) fn sync_response(
        &self,
        node: &NodeInner,
        request: &SyncRequest,
        requester: &PeerId,
    ) -> SyncResponse {
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
            membership: node.membership_bytes(),
            more,
            peers,
        }
    }

    /// Takes the peers a neighbour introduced; the new ones become dial targets.
    pub(crate) fn on_introductions(&mut self, node: &NodeInner, records: &[PeerRecord]) {
        let introduced = self.state_mut().peers.take_introductions(
            records,
            node.peer_id,
            Instant::now(),
            node.allow_private_addrs,
        );
        if introduced > 0 {
            tracing::debug!(introduced, "peers introduced by a neighbour");
        }
    }

    /// Restores modules from the store at start-up (no peer needed when blobs are here).
    pub(crate) fn restore(&mut self, node: &NodeInner) -> Result<usize, RestoreError> {
        let (manifests, broken) = node.store.load_manifests()?;
        // Skipping it would forget the module's version floor, and let an older version back
        // in: the operator decides.
        if let Some(path) = broken.into_iter().next() {
            return Err(RestoreError::Unreadable { path });
        }
        let mut restored = 0;
        for signed in manifests {
            if self.offer_manifest(node, signed, Origin::Store).is_ok() {
                restored += 1;
            }
        }
        Ok(restored)
    }
}
