//! Finding holders beyond this node's neighbours, on the control task: Kademlia's closest-peer
//! lookups name each blob's directory nodes, for each of the blob's two keys
//! (`wasmesh_protocol::holders::directory_keys`); this node announces its ready blobs to the
//! directory nodes of both, asks those of both for holders of the blobs it needs, and answers
//! as a directory node itself, keeping announcements only for blobs its table says it is a
//! directory node of. What to announce and look up, and when, is `core::holder_search`'s;
//! what the directory keeps is `core::directory`'s.

use std::sync::Arc;
use std::time::Instant;

use libp2p::kad::{self, GetClosestPeersError, QueryResult};
use libp2p::request_response;
use libp2p::{PeerId, Swarm};
use wasmesh_protocol::ContentHash;
use wasmesh_protocol::holders::{
    Holder, HolderAnswer, HolderRequest, MAX_HOLDER_ADDRS, SignedHolder, directory_keys,
};

use super::behaviour::Behaviour;
use super::holder_work::{EXPIRE_EVERY, Lookup, Purpose};
use super::owner::Owner;
use crate::core::directory::{DIRECTORY_SLACK, is_directory_node};
use crate::core::holder_search::{DIRECTORIES_ASKED, DIRECTORY_REPLICAS, HOLDERS_WANTED};
use crate::node::NodeInner;

/// Something wants holders of `blob` (a request, an ingest): the directory's own entries are
/// taken at once, and the blob's directory nodes are asked unless they were lately. `done`, if
/// given, is answered when the search has ended (with or without new holders).
pub(crate) fn find(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    owner: &mut Owner,
    blob: ContentHash,
    done: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let now = Instant::now();
    let coordinate = owner.state().coordinate;
    let known =
        owner
            .holder_work()
            .directory
            .find(&blob, &coordinate, usize::from(HOLDERS_WANTED), now);
    take_holders(node, owner, blob, &known);
    if owner.holder_work().search.want(blob, now) {
        start_lookups(swarm, owner, Purpose::Find, blob);
    }
    if let Some(done) = done
        && let Some(ended) = owner.holder_work().wait_for_search(blob, done)
    {
        owner.answer_when_shown(ended);
    }
}

/// Once a second: announcements and refreshes that are due, and the directory's expiry.
pub(crate) fn tick(swarm: &mut Swarm<Behaviour>, owner: &mut Owner, ready: &[ContentHash]) {
    let now = Instant::now();
    let work = owner.holder_work();
    let announce = work.search.announcements_due(ready, now);
    let refresh = work.search.refreshes_due(now);
    if now.saturating_duration_since(work.expired_at) >= EXPIRE_EVERY {
        work.directory.expire(now);
        work.expired_at = now;
    }
    for blob in announce {
        start_lookups(swarm, owner, Purpose::Announce, blob);
    }
    for blob in refresh {
        start_lookups(swarm, owner, Purpose::Find, blob);
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

/// A Kademlia event: a finished lookup sends the announcement or the question to the blob's
/// directory nodes.
pub(crate) fn on_kad_event(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    owner: &mut Owner,
    event: kad::Event,
) {
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
    let Some(lookup) = owner.holder_work().lookups.remove(&id) else {
        return;
    };
    let work = owner.holder_work();
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
    for peer in &peers {
        for addr in &peer.addrs {
            if node.allow_private_addrs || crate::address_scope::is_global(addr) {
                swarm.add_peer_address(peer.peer_id, addr.clone());
            }
        }
    }
    let ids = peers.iter().map(|p| p.peer_id);
    let blob = lookup.blob;
    match lookup.purpose {
        Purpose::Announce => {
            let Some(holder) = own_record(node, owner) else {
                return;
            };
            for peer in ids.take(DIRECTORY_REPLICAS) {
                let request = HolderRequest::Announce {
                    holder: holder.clone(),
                    blobs: vec![blob],
                };
                swarm.behaviour_mut().holders.send_request(&peer, request);
            }
        }
        Purpose::Find => {
            let near = owner.state().coordinate;
            for peer in ids.take(DIRECTORIES_ASKED) {
                let request = HolderRequest::Find {
                    blob,
                    near,
                    max: HOLDERS_WANTED,
                };
                let id = swarm.behaviour_mut().holders.send_request(&peer, request);
                owner.holder_work().asked.insert(id, blob);
            }
            search_step_done(owner, &blob);
        }
    }
    tracing::debug!(?lookup, peers = peers.len(), "directory nodes found");
}

/// This node's signed holder record, from its newest status.
fn own_record(node: &NodeInner, owner: &Owner) -> Option<SignedHolder> {
    let status = owner.own_status()?;
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
        .sign(&node.keys),
    )
}

/// A holder request from a peer, or the answer to one of this node's.
pub(crate) fn on_holders_event(
    swarm: &mut Swarm<Behaviour>,
    node: &Arc<NodeInner>,
    owner: &mut Owner,
    event: request_response::Event<HolderRequest, HolderAnswer>,
) {
    match event {
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        } => {
            if node.admission.is_private() && !owner.state().admits(&peer) {
                node.metrics.count_rejection("holders_not_admitted");
                return;
            }
            let answer = match request {
                HolderRequest::Announce { holder, blobs } => {
                    take_announcement(swarm, node, owner, peer, holder, &blobs);
                    HolderAnswer {
                        holders: Vec::new(),
                    }
                }
                HolderRequest::Find { blob, near, max } => HolderAnswer {
                    holders: owner.holder_work().directory.find(
                        &blob,
                        &near,
                        usize::from(max),
                        Instant::now(),
                    ),
                },
            };
            let _ = swarm.behaviour_mut().holders.send_response(channel, answer);
        }
        request_response::Event::Message {
            peer,
            message:
                request_response::Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            let Some(blob) = owner.holder_work().asked.remove(&request_id) else {
                return;
            };
            if node.admission.is_private() && !owner.state().admits(&peer) {
                node.metrics.count_rejection("holders_not_admitted");
                search_step_done(owner, &blob);
                return;
            }
            let verified: Vec<SignedHolder> = response
                .holders
                .into_iter()
                .filter(|record| match record.verify() {
                    Ok(()) => true,
                    Err(error) => {
                        node.metrics.count_rejection("holder_bad_record");
                        if let Some(suppressed) = node.peer_refusal_logged(&peer) {
                            tracing::info!(%peer, %error, suppressed, "a directory node named a bad holder record");
                        }
                        false
                    }
                })
                .collect();
            tracing::debug!(%peer, blob = %blob.short(), holders = verified.len(), "holders found");
            take_holders(node, owner, blob, &verified);
            search_step_done(owner, &blob);
        }
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            if let Some(blob) = owner.holder_work().asked.remove(&request_id) {
                search_step_done(owner, &blob);
            }
            tracing::debug!(%peer, %error, "holder request failed");
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(%peer, %error, "holder request not answered");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
}

fn take_announcement(
    swarm: &mut Swarm<Behaviour>,
    node: &NodeInner,
    owner: &mut Owner,
    peer: PeerId,
    holder: SignedHolder,
    blobs: &[ContentHash],
) {
    let own = wasmesh_keys::identity::peer_id(&holder.holder.node) == Some(peer);
    if let Err(error) = holder.verify() {
        node.metrics.count_rejection("holder_bad_record");
        if let Some(suppressed) = node.peer_refusal_logged(&peer) {
            tracing::info!(%peer, %error, suppressed, "refused a holder announcement");
        }
        return;
    }
    if !own {
        node.metrics.count_rejection("holder_not_own_record");
        if let Some(suppressed) = node.peer_refusal_logged(&peer) {
            tracing::info!(%peer, suppressed, "refused a holder announcement for another node");
        }
        return;
    }
    // Only blobs this node is a directory node of: a lookup would never come here for others.
    let ours: Vec<ContentHash> = blobs
        .iter()
        .copied()
        .filter(|blob| keeps_directory_of(swarm, blob))
        .collect();
    if ours.len() < blobs.len() {
        node.metrics.count_rejection("directory_not_responsible");
        tracing::debug!(%peer, left_out = blobs.len() - ours.len(), "announced blobs this node is no directory node of");
    }
    let wall_ms = crate::clock::now_ms();
    let kept = owner
        .holder_work()
        .directory
        .announce(holder, &ours, Instant::now(), wall_ms);
    if let Err(refusal) = kept {
        node.metrics.count_rejection(refusal.reason());
        if let Some(suppressed) = node.peer_refusal_logged(&peer) {
            tracing::info!(%peer, reason = refusal.reason(), suppressed, "holder announcement not kept whole");
        }
    }
}

/// Part of the search for `blob` ended: if all of it has, its waiters are answered once the
/// view shows what it found.
fn search_step_done(owner: &mut Owner, blob: &ContentHash) {
    for ended in owner.holder_work().search_step_done(blob) {
        owner.answer_when_shown(ended);
    }
}

/// Puts the holders of `blob` a directory named in the peer table.
fn take_holders(node: &NodeInner, owner: &mut Owner, blob: ContentHash, holders: &[SignedHolder]) {
    let now = Instant::now();
    let mut new = 0;
    for record in holders {
        let fresh = owner.state_mut().peers.take_holder(
            record,
            blob,
            node.peer_id,
            now,
            node.allow_private_addrs,
        );
        new += u64::from(fresh);
    }
    if new > 0 {
        node.metrics.holders_found.inc_by(new);
        owner.note_new_provider();
    }
}
