//! How nodes find each other: a neighbour introduces the peers it is connected to (in its sync
//! response), and they are dialed; a status comes only from its own node, over its connection.

use futures::StreamExt;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::stranger::StatusSender;
use wasmesh_tests::{MESH_DEADLINE, TestNode, wait_until};

fn connected(node: &TestNode, other: &TestNode) -> bool {
    let id = other.node.peer_id();
    node.node
        .peer_views()
        .iter()
        .any(|p| p.peer_id == id && p.connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_introduced_by_a_neighbour_are_dialed() {
    let a = TestNode::start(&[], &[]).await;
    let b = TestNode::start(&[], &[&a]).await;
    let c = TestNode::start(&[], &[&a]).await;
    // B and C only know A; A introduces each to the other.
    wait_until("B and C are connected", MESH_DEADLINE, || async {
        connected(&b, &c) && connected(&c, &b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_status_for_another_key_is_refused_and_its_sender_disconnected() {
    let a = TestNode::start(&[], &[]).await;
    // A peer connected to A sends statuses signed for a key that is not its own: a status is
    // its sender's own word, never a relay of someone else's.
    let mut stranger = StatusSender::connect([41; 32], &a);
    let other = Keypair::from_seed([42; 32]);
    let other_id = wasmesh_keys::identity::peer_id(&other.public()).unwrap();
    let status = StatusMessage {
        node: other.public(),
        quic_addr: "127.0.0.1:9".into(),
        ready_version: ready_version(&[]),
        ready: Some(Vec::new()),
        in_flight: 0,
        capacity: 1,
        seq: 0,
        p2p_addrs: vec!["/ip4/127.0.0.9/udp/9/quic-v1".into()],
        manifests: ContentHash::of(b"nothing"),
        coordinate: Coordinate::default(),
        leaving: false,
    };
    let refused = || a.node.metrics().rejections_of("bad_status");
    let closed = stranger
        .send_until("A refuses the status", status, || refused() > 0)
        .await;
    assert!(refused() > 0 || closed);
    wait_until("A disconnects the sender", MESH_DEADLINE, || async {
        !a.node.peer_views().iter().any(|p| p.connected)
    })
    .await;
    assert!(refused() > 0, "the refusal is counted");
    assert!(
        !a.node.peer_views().iter().any(|p| p.peer_id == other_id),
        "a status for another key made an entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_of_the_previous_protocol_version_is_refused() {
    let a = TestNode::start(&[], &[]).await;
    // A node of version 1 announces itself as such in identify.
    let keys = libp2p::identity::Keypair::ed25519_from_bytes([43; 32]).unwrap();
    let mut old = wasmesh_tests::stranger::swarm(keys, |key| {
        libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "/wasmesh/1".into(),
            key.public(),
        ))
    });
    old.dial(a.node.p2p_addrs()[0].clone()).unwrap();
    let refused = || a.node.metrics().rejections_of("peer_other_version");
    let until = tokio::time::Instant::now() + MESH_DEADLINE;
    let mut closed = false;
    while !closed {
        let event = tokio::time::timeout_at(until, old.select_next_some())
            .await
            .expect("A closes the connection within the deadline");
        closed = matches!(event, libp2p::swarm::SwarmEvent::ConnectionClosed { .. });
    }
    assert_eq!(refused(), 1, "the refusal is counted once");
}
