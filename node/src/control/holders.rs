//! Finding holders beyond this node's neighbours, on the control task: Kademlia's closest-peer
//! lookups name each blob's directory nodes, for each of the blob's two keys
//! (`wasmesh_protocol::holders::directory_keys`); this node announces its ready blobs to the
//! directory nodes of both, asks those of both for holders of the blobs it needs, and answers
//! as a directory node itself, keeping announcements only for blobs its table says it is a
//! directory node of. What to announce and look up, and when, is `core::holder_search`'s;
//! what the directory keeps is `core::directory`'s.

use std::time::Instant;

use libp2p::kad::{self, GetClosestPeersError, QueryResult};
use libp2p::request_response::{self, Message};
use libp2p::{PeerId, Swarm};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::holders::{
    Holder, HolderAnswer, HolderRequest, MAX_HOLDER_ADDRS, SignedHolder, directory_keys,
};

use super::EventLoop;
use super::behaviour::Behaviour;
use super::holder_work::{EXPIRE_EVERY, Lookup, Purpose};
use super::owner::Owner;
use crate::core::directory::{DIRECTORY_SLACK, is_directory_node};
use crate::core::holder_search::{DIRECTORIES_ASKED, DIRECTORY_REPLICAS, HOLDERS_WANTED};
use crate::rejection::Rejection;

/// A holder request from a peer, or the answer to one of this node's.
type HoldersEvent = request_response::Event<HolderRequest, HolderAnswer>;

impl EventLoop {
    /// Something wants holders of `blob` (a request, an ingest): the directory's own entries
    /// are taken at once, and the blob's directory nodes are asked unless they were lately.
    /// `done`, if given, is answered when the search has ended (with or without new holders).
    pub(super) fn find_holders(
        &mut self,
        blob: ContentHash,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let now = Instant::now();
        let coordinate = self.owner.state().coordinate;
        let known = self.owner.holder_work().directory.find(
            &blob,
            &coordinate,
            usize::from(HOLDERS_WANTED),
            now,
        );
        self.take_holders(blob, &known);
        if self.owner.holder_work().search.want(blob, now) {
            start_lookups(&mut self.swarm, &mut self.owner, Purpose::Find, blob);
        }
        if let Some(done) = done
            && let Some(ended) = self.owner.holder_work().wait_for_search(blob, done)
        {
            self.owner.answer_when_shown(ended);
        }
    }

    /// Once a second: announcements and refreshes that are due, and the directory's expiry.
    pub(super) fn holders_tick(&mut self, ready: &[ContentHash]) {
        let now = Instant::now();
        let work = self.owner.holder_work();
        let announce = work.search.announcements_due(ready, now);
        let refresh = work.search.refreshes_due(now);
        if now.saturating_duration_since(work.expired_at) >= EXPIRE_EVERY {
            work.directory.expire(now);
            work.expired_at = now;
        }
        for blob in announce {
            start_lookups(&mut self.swarm, &mut self.owner, Purpose::Announce, blob);
        }
        for blob in refresh {
            start_lookups(&mut self.swarm, &mut self.owner, Purpose::Find, blob);
        }
    }

    /// A Kademlia event: a finished lookup sends the announcement or the question to the
    /// blob's directory nodes.
    pub(super) fn on_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id,
            result: QueryResult::GetClosestPeers(result),
            step,
            ..
        } = event
        else {
            return;
        };
        if !step.last {
            return;
        }
        let Some(lookup) = self.owner.holder_work().lookups.remove(&id) else {
            return;
        };
        let work = self.owner.holder_work();
        let other_key_pending = work
            .lookups
            .values()
            .any(|l| l.purpose == lookup.purpose && l.blob == lookup.blob);
        if !other_key_pending {
            work.search.lookup_done();
        }
        let peers = match result {
            Ok(found) => found.peers,
            // What was found before the time ran out is still the best known.
            Err(GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let allow_private_addrs = self.owner.policy().allow_private_addrs;
        for peer in &peers {
            for addr in &peer.addrs {
                if allow_private_addrs || crate::address_scope::is_global(addr) {
                    self.swarm.add_peer_address(peer.peer_id, addr.clone());
                }
            }
        }
        let ids: Vec<PeerId> = peers.iter().map(|p| p.peer_id).collect();
        match lookup.purpose {
            Purpose::Announce => self.announce_to(&ids, lookup.blob),
            Purpose::Find => self.ask_directories(&ids, lookup.blob),
        }
        tracing::debug!(?lookup, peers = peers.len(), "directory nodes found");
    }

    /// Announces this node as a holder of `blob` to the first of `directories`.
    fn announce_to(&mut self, directories: &[PeerId], blob: ContentHash) {
        let Some(holder) = self.own_record() else {
            return;
        };
        for peer in directories.iter().take(DIRECTORY_REPLICAS) {
            let request = HolderRequest::Announce {
                holder: holder.clone(),
                blobs: vec![blob],
            };
            self.swarm
                .behaviour_mut()
                .holders
                .send_request(peer, request);
        }
    }

    /// Asks the first of `directories` for holders of `blob`.
    fn ask_directories(&mut self, directories: &[PeerId], blob: ContentHash) {
        let near = self.owner.state().coordinate;
        for peer in directories.iter().take(DIRECTORIES_ASKED) {
            let request = HolderRequest::Find {
                blob,
                near,
                max: HOLDERS_WANTED,
            };
            let id = self
                .swarm
                .behaviour_mut()
                .holders
                .send_request(peer, request);
            self.owner.holder_work().asked.insert(id, blob);
        }
        self.search_step_done(&blob);
    }

    /// This node's signed holder record, from its newest status.
    fn own_record(&self) -> Option<SignedHolder> {
        let status = self.owner.own_status()?;
        Some(
            Holder {
                node: status.node,
                quic_addr: status.quic_addr.clone(),
                p2p_addrs: status
                    .p2p_addrs
                    .iter()
                    .take(MAX_HOLDER_ADDRS)
                    .cloned()
                    .collect(),
                coordinate: status.coordinate,
                issued_ms: crate::clock::now_ms(),
            }
            .sign(&self.keys),
        )
    }

    /// A holder request from a peer, or the answer to one of this node's.
    pub(super) fn on_holders_event(&mut self, event: HoldersEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => {
                    if !self.owner.state().admits(&peer) {
                        self.metrics.count_rejection(Rejection::HoldersNotAdmitted);
                        return;
                    }
                    let answer = self.answer_holder_request(peer, request);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .holders
                        .send_response(channel, answer);
                }
                Message::Response {
                    request_id,
                    response,
                } => self.on_holders_answer(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(blob) = self.owner.holder_work().asked.remove(&request_id) {
                    self.search_step_done(&blob);
                }
                tracing::debug!(%peer, %error, "holder request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "holder request not answered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// The answer to an admitted peer's announcement (kept, answered empty) or question.
    fn answer_holder_request(&mut self, peer: PeerId, request: HolderRequest) -> HolderAnswer {
        let holders = match request {
            HolderRequest::Announce { holder, blobs } => {
                self.take_announcement(peer, holder, &blobs);
                Vec::new()
            }
            HolderRequest::Find { blob, near, max } => self.owner.holder_work().directory.find(
                &blob,
                &near,
                usize::from(max),
                Instant::now(),
            ),
        };
        HolderAnswer { holders }
    }

    /// A directory node's answer: the holder records that verify are taken.
    fn on_holders_answer(
        &mut self,
        peer: PeerId,
        request_id: request_response::OutboundRequestId,
        response: HolderAnswer,
    ) {
        let Some(blob) = self.owner.holder_work().asked.remove(&request_id) else {
            return;
        };
        if !self.owner.state().admits(&peer) {
            self.metrics.count_rejection(Rejection::HoldersNotAdmitted);
            self.search_step_done(&blob);
            return;
        }
        let verified: Vec<SignedHolder> = response
            .holders
            .into_iter()
            .filter(|record| match record.verify() {
                Ok(()) => true,
                Err(error) => {
                    self.metrics.count_rejection(Rejection::HolderBadRecord);
                    if let Some(suppressed) = self.refusals.logged(&peer) {
                        tracing::info!(%peer, %error, suppressed, "a directory node named a bad holder record");
                    }
                    false
                }
            })
            .collect();
        tracing::debug!(%peer, blob = %blob.short(), holders = verified.len(), "holders found");
        self.take_holders(blob, &verified);
        self.search_step_done(&blob);
    }

    fn take_announcement(&mut self, peer: PeerId, holder: SignedHolder, blobs: &[ContentHash]) {
        let swarm = &mut self.swarm;
        let refused = self.owner.holder_work().directory.take_announcement(
            &peer,
            holder,
            blobs,
            |blob| keeps_directory_of(swarm, blob),
            Instant::now(),
            crate::clock::now_ms(),
        );
        for refusal in refused {
            self.metrics.count_rejection(refusal.reason());
            if let Some(suppressed) = self.refusals.logged(&peer) {
                tracing::info!(%peer, reason = %refusal.reason(), suppressed, "holder announcement not kept whole");
            }
        }
    }

    /// Part of the search for `blob` ended: if all of it has, its waiters are answered once the
    /// view shows what it found.
    fn search_step_done(&mut self, blob: &ContentHash) {
        for ended in self.owner.holder_work().search_step_done(blob) {
            self.owner.answer_when_shown(ended);
        }
    }

    /// Puts the holders of `blob` a directory named in the peer table.
    fn take_holders(&mut self, blob: ContentHash, holders: &[SignedHolder]) {
        let new = self.owner.take_holders(blob, holders);
        if new > 0 {
            self.metrics.holders_found.inc_by(new);
        }
    }
}

/// Looks up the directory nodes of both of `blob`'s keys.
fn start_lookups(
    swarm: &mut Swarm<Behaviour>,
    owner: &mut Owner,
    purpose: Purpose,
    blob: ContentHash,
) {
    for (key, bytes) in directory_keys(&blob).into_iter().enumerate() {
        let id = swarm.behaviour_mut().kad.inner().get_closest_peers(bytes);
        let lookup = Lookup { purpose, blob, key };
        owner.holder_work().lookups.insert(id, lookup);
    }
}

/// How many peers this node's table knows closer to the Kademlia key `key` than itself (up
/// to [`DIRECTORY_SLACK`]).
fn closer_peers(swarm: &mut Swarm<Behaviour>, key: Vec<u8>) -> usize {
    let key = kad::KBucketKey::new(key);
    let own = kad::KBucketKey::from(*swarm.local_peer_id()).distance(&key);
    swarm
        .behaviour_mut()
        .kad
        .inner()
        .get_closest_local_peers(&key)
        .take_while(|peer| peer.distance(&key) < own)
        .take(DIRECTORY_SLACK)
        .count()
}

/// Whether this node is a directory node of `blob`, for either of its keys.
fn keeps_directory_of(swarm: &mut Swarm<Behaviour>, blob: &ContentHash) -> bool {
    directory_keys(blob)
        .into_iter()
        .any(|key| is_directory_node(closer_peers(swarm, key)))
}
