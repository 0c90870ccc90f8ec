//! What the rest of the node asks of the control task (the owner of the libp2p swarm and of the
//! node's state). Callers send these through a [`NodeHandle`](super::handle::NodeHandle).

use libp2p::PeerId;
use tokio::sync::oneshot;
use wasmesh_protocol::wire::StatusMessage;
use wasmesh_protocol::{ContentHash, ModuleKey, SignedManifest};

use crate::core::manifests::{Offered, Origin, Refusal};
use crate::core::peers::ForwardAnswer;
use crate::core::registry::ModuleState;

/// What the rest of the node asks of the control task.
#[derive(Debug)]
pub enum ControlCommand {
    /// Gossip an encoded signed manifest.
    PublishManifest(Vec<u8>),
    /// Send this status to every connected peer.
    PublishStatus(Box<StatusMessage>),
    /// Send this status, which says the node is leaving, to every neighbour; `done` is answered
    /// once each has answered it or failed to.
    Leave {
        /// The leaving status.
        status: Box<StatusMessage>,
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
    /// Check and, if acceptable, take a manifest; the answer comes once the view holds it.
    Offer {
        /// The manifest.
        signed: Box<SignedManifest>,
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
}
