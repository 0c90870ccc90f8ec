//! The handle the rest of the node holds on the control task: each call is a
//! [`ControlCommand`]; those that need an answer carry a oneshot reply. Feedback from the
//! request path is sent without waiting, and dropped when the control task is behind (it is an
//! estimate; the next request brings more).

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use wasmesh_protocol::{ContentHash, ModuleKey};

use super::command::ControlCommand;
use crate::core::manifests::{Offered, Origin, Refusal, Verified};
use crate::core::peers::ForwardAnswer;
use crate::core::registry::ModuleState;
use crate::data::SeenByRendezvous;

/// The control task has stopped (the node is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node is stopping")]
pub struct Stopped;

/// A cloneable handle on the control task.
#[derive(Debug, Clone)]
pub struct NodeHandle(mpsc::Sender<ControlCommand>);

impl NodeHandle {
    /// A handle and the receiving end the control task reads, with room for `capacity`
    /// commands waiting.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<ControlCommand>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self(tx), rx)
    }

    /// Sends a command, waiting while the channel is full.
    pub(crate) async fn send_command(&self, command: ControlCommand) -> Result<(), Stopped> {
        self.0.send(command).await.map_err(|_| Stopped)
    }

    async fn send(&self, command: ControlCommand) -> Result<(), Stopped> {
        self.send_command(command).await
    }

    /// Offers a verified manifest; answers once the node's view holds the outcome.
    pub async fn offer(
        &self,
        verified: Verified,
        origin: Origin,
    ) -> Result<Result<Offered, Refusal>, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.send(ControlCommand::Offer {
            verified: Box::new(verified),
            origin,
            reply,
        })
        .await?;
        answer.await.map_err(|_| Stopped)
    }

    /// Reports how an ingest ended; returns once the node's view shows it.
    pub async fn ingested(
        &self,
        key: ModuleKey,
        blob: ContentHash,
        state: ModuleState,
    ) -> Result<(), Stopped> {
        let (done, shown) = oneshot::channel();
        self.send(ControlCommand::Ingested {
            key,
            blob,
            state,
            done,
        })
        .await?;
        shown.await.map_err(|_| Stopped)
    }

    /// Gossips an encoded signed manifest.
    pub async fn publish_manifest(&self, encoded: Vec<u8>) -> Result<(), Stopped> {
        self.send(ControlCommand::PublishManifest(encoded)).await
    }

    /// Tells every neighbour that this node is leaving; returns once each has answered or
    /// failed to.
    pub async fn leave(&self) -> Result<(), Stopped> {
        let (done, answered) = oneshot::channel();
        self.send(ControlCommand::Leave { done }).await?;
        answered.await.map_err(|_| Stopped)
    }

    /// Asks for holders of `blob` beyond the neighbours (without waiting; they show in a later
    /// view, and wake the tasks waiting for providers).
    pub fn find_holders(&self, blob: ContentHash) {
        let _ = self
            .0
            .try_send(ControlCommand::FindHolders { blob, done: None });
    }

    /// As [`NodeHandle::find_holders`]; the answer comes when the search has ended (with or
    /// without new holders), or never if the control task is too busy to take the request.
    pub fn search_holders(&self, blob: ContentHash) -> oneshot::Receiver<()> {
        let (done, ended) = oneshot::channel();
        let _ = self.0.try_send(ControlCommand::FindHolders {
            blob,
            done: Some(done),
        });
        ended
    }

    /// Asks for `peer`'s round trip to be measured (without waiting).
    pub fn probe(&self, peer: PeerId) {
        let _ = self.0.try_send(ControlCommand::Probe(peer));
    }

    /// Reports an answered forward (without waiting).
    pub fn forward_answered(&self, answer: ForwardAnswer) {
        let _ = self.0.try_send(ControlCommand::ForwardAnswered(answer));
    }

    /// Reports that a peer's data-plane connection to this node opened or closed (without
    /// waiting).
    pub fn data_plane_seen(
        &self,
        key: wasmesh_protocol::PublicKey,
        addr: std::net::SocketAddr,
        open: bool,
    ) {
        let _ = self
            .0
            .try_send(ControlCommand::DataPlaneSeen { key, addr, open });
    }

    /// Reports where a rendezvous saw this node's data-plane packets come from, and whether
    /// its dial back got in (without waiting).
    pub fn quic_observed(&self, by: wasmesh_protocol::PublicKey, observed: SeenByRendezvous) {
        let _ = self
            .0
            .try_send(ControlCommand::QuicObserved { by, observed });
    }
}
