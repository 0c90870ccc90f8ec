//! What the rest of the node asks of the control task (the owner of the libp2p swarm and of the
//! node's state). Callers send these through a [`NodeHandle`](super::handle::NodeHandle).

use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use tokio::sync::oneshot;
use wasmesh_protocol::{ContentHash, ModuleKey, SignedManifest};

use crate::core::manifests::{Offered, Origin, Refusal, Screened, Verified};
use crate::core::peers::ForwardAnswer;
use crate::core::registry::ModuleState;

/// What the rest of the node asks of the control task.
#[derive(Debug)]
pub enum ControlCommand {
    /// Gossip an encoded signed manifest.
    PublishManifest(Vec<u8>),
    /// Send a status that says the node is leaving to every neighbour; `done` is answered once
    /// each has answered it or failed to.
    Leave {
        /// Answered when every neighbour has answered.
        done: oneshot::Sender<()>,
    },
    /// Find holders of this blob beyond the neighbours (its directory nodes); `done`, if
    /// given, is answered when the search has ended.
    FindHolders {
        /// The blob.
        blob: ContentHash,
        /// Answered when the search has ended.
        done: Option<oneshot::Sender<()>>,
    },
    /// Connect to a known peer (so its round trip gets measured), unless connected or dialing.
    Probe(PeerId),
    /// Take a verified manifest if it may be taken; the answer comes once the view holds it.
    Offer {
        /// The manifest.
        verified: Box<Verified>,
        /// Where it came from.
        origin: Origin,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Offered, Refusal>>,
    },
    /// An ingest ended: the module's state here, if its manifest is still `blob`'s. `done`
    /// is answered once the view shows it.
    Ingested {
        /// The module.
        key: ModuleKey,
        /// The blob ingested.
        blob: ContentHash,
        /// Ready, or why not.
        state: ModuleState,
        /// Answered once the view shows the state.
        done: oneshot::Sender<()>,
    },
    /// A forwarded request was answered (see `core::state::Input::ForwardAnswered`).
    ForwardAnswered(ForwardAnswer),
    /// Manifests screened off the loop (`super::verifier`), to be filed.
    Screened(Box<ScreenedBatch>),
    /// A peer's data-plane connection to this node opened or closed (see
    /// `core::peers::data_path`).
    DataPlaneSeen {
        /// The peer's node key.
        key: wasmesh_protocol::PublicKey,
        /// Where its packets come from.
        addr: std::net::SocketAddr,
        /// Opened, or closed.
        open: bool,
    },
    /// A rendezvous observed this node's data plane (see `standing`).
    QuicObserved {
        /// The rendezvous' node key.
        by: wasmesh_protocol::PublicKey,
        /// Where it saw its packets come from, and whether its dial back got in.
        observed: crate::data::SeenByRendezvous,
    },
}

/// Manifests from one origin, screened off the loop.
#[derive(Debug)]
pub struct ScreenedBatch {
    /// Where they came from.
    pub origin: Origin,
    /// Each manifest and what screening found.
    pub manifests: Vec<(SignedManifest, Screened)>,
    /// The gossip message that carried the manifest, whose validation waits for the result.
    pub gossip: Option<GossipedMessage>,
    /// The sync page to ask for once these are filed.
    pub next_page: Option<NextPage>,
}

/// The next page of a peer's manifests.
#[derive(Debug, Clone)]
pub struct NextPage {
    /// The peer.
    pub peer: PeerId,
    /// The last key of the page before.
    pub after: wasmesh_protocol::ModuleKey,
}

/// A gossip message waiting for its validation result.
#[derive(Debug, Clone)]
pub struct GossipedMessage {
    /// Its id.
    pub id: MessageId,
    /// The peer that delivered it.
    pub propagation_source: PeerId,
}
