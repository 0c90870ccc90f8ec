//! Holders that lie, for the tests of what a node believes: a peer that claims, in signed
//! statuses on its own libp2p connection, to hold a blob, and answers forwarded requests on a
//! real data plane (`wasmesh_node::data::DataPlane`) with made-up output.
//!
//! It may hold the blob for real (its data plane then serves verified ranges of it, so it
//! passes a proof of possession) or not, and it may sign its forged answers with a valid
//! receipt under its own key (a lie only running the module again can catch) or with a
//! signature that is not a receipt.

use std::sync::Arc;

use wasmesh_node::admission::Admission;
use wasmesh_node::data::{DataPlane, InvokeHandler};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::receipt::Receipt;
use wasmesh_protocol::wire::{InvokeReply, InvokeRequest, StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair, PublicKey, Signature};

use crate::TestNode;
use crate::stranger::StatusSender;

/// What a liar answers every forwarded request with.
pub const FORGED: &[u8] = b"forged";

/// How a liar signs its forged answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// A signature that is no receipt.
    Garbage,
    /// A valid receipt of the forged answer, under the liar's own key.
    Receipt,
}

/// The liar's data-plane side: every request gets [`FORGED`].
struct Forger {
    keys: Keypair,
    signing: Signing,
}

impl InvokeHandler for Forger {
    fn handle(
        self: Arc<Self>,
        request: InvokeRequest,
        _from: PublicKey,
    ) -> futures::future::BoxFuture<'static, InvokeReply> {
        let (queue_us, exec_us) = (0, 1);
        let receipt = match self.signing {
            Signing::Garbage => Signature([7; 64]),
            Signing::Receipt => {
                Receipt {
                    executor: self.keys.public(),
                    module: request.hash,
                    input: ContentHash::of(&request.input),
                    outcome: Receipt::output_outcome(FORGED),
                    trace_id: request.trace_id,
                    nonce: request.nonce,
                    queue_us,
                    exec_us,
                }
                .sign(&self.keys)
                .signature
            }
        };
        Box::pin(async move {
            InvokeReply::Ok {
                output: FORGED.to_vec(),
                queue_us,
                exec_us,
                receipt,
            }
        })
    }
}

/// A running liar; it stops when dropped.
pub struct Liar {
    /// Its libp2p side, sending its claim once a second.
    status: tokio::task::JoinHandle<()>,
    /// Its data plane.
    pub plane: DataPlane,
    /// Its peer id.
    pub peer_id: libp2p::PeerId,
    _store: tempfile::TempDir,
}

impl std::fmt::Debug for Liar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liar")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.status.abort();
        self.plane.close();
    }
}

/// Starts a liar with key `seed` that claims to hold `hash` to `node`; it holds the blob
/// for real if `blob` is given, and signs as `signing`. Returns once the node took its claim.
pub async fn lying_holder(
    seed: u8,
    node: &TestNode,
    hash: ContentHash,
    blob: Option<&[u8]>,
    signing: Signing,
) -> Liar {
    let keys = Keypair::from_seed([seed; 32]);
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(scratch.path()).unwrap();
    if let Some(blob) = blob {
        store.put_blob(hash, blob).unwrap();
    }
    let plane = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&keys, None).unwrap(),
        Admission::Open,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let quic_addr = plane.local_addr().unwrap();
    let forger: Arc<dyn InvokeHandler> = Arc::new(Forger {
        keys: keys.clone(),
        signing,
    });
    tokio::spawn(plane.clone().serve(store, Some(forger)));

    let peer_id = wasmesh_keys::identity::peer_id(&keys.public()).unwrap();
    let mut status = StatusSender::connect([seed; 32], node);
    let claim = StatusMessage {
        node: keys.public(),
        quic_addr: quic_addr.to_string(),
        ready_version: ready_version(&[hash]),
        ready: Some(vec![hash]),
        // Idle and roomy: the cheapest candidate there is.
        in_flight: 0,
        capacity: 1024,
        seq: 0,
        p2p_addrs: Vec::new(),
        manifests: ContentHash::of(b"nothing"),
        coordinate: Coordinate::default(),
        leaving: false,
    };
    let closed = status
        .send_until("the node takes the liar's claim", claim.clone(), || {
            node.node
                .peer_views()
                .iter()
                .any(|p| p.peer_id == peer_id && p.ready.contains(&hash))
        })
        .await;
    assert!(!closed, "the node closed the liar's connection");
    Liar {
        status: status.keep_sending(claim),
        plane,
        peer_id,
        _store: scratch,
    }
}
