//! How nodes find each other: a neighbour introduces the peers it is connected to (in its sync
//! response), and they are dialed; a status relayed by gossip about a peer a node does not know
//! makes no entry in its peer table and nothing to dial.

use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::StatusMessage;
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::stranger::StatusGossiper;
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
async fn a_relayed_status_of_an_unknown_peer_makes_no_entry() {
    let a = TestNode::start(&[], &[]).await;
    let relay = TestNode::start(&[], &[&a]).await;
    wait_until("A and the relay are connected", MESH_DEADLINE, || async {
        connected(&a, &relay)
    })
    .await;

    // A stranger connected to the relay only publishes statuses naming made-up addresses.
    let seed = [41u8; 32];
    let keys = Keypair::from_seed(seed);
    let stranger_id = wasmesh_keys::identity::peer_id(&keys.public()).unwrap();
    let mut stranger = StatusGossiper::connect(seed, &relay);
    let ignored = || a.node.metrics().rejections_of("status_unknown_peer");
    let a_knows_the_stranger = || a.node.peer_views().iter().any(|p| p.peer_id == stranger_id);
    let status = StatusMessage {
        node: keys.public(),
        quic_addr: "127.0.0.1:9".into(),
        ready: Vec::new(),
        in_flight: 0,
        capacity: 1,
        seq: 0,
        p2p_addrs: vec!["/ip4/127.0.0.9/udp/9/quic-v1".into()],
        manifests: ContentHash::of(b"nothing"),
        coordinate: Coordinate::default(),
    };
    stranger
        .gossip_until("A sees the stranger's status", status, || {
            ignored() > 0 || a_knows_the_stranger()
        })
        .await;
    // The relay took it (the stranger is its neighbour); A, which never met the stranger, did
    // not.
    assert!(
        relay
            .node
            .peer_views()
            .iter()
            .any(|p| p.peer_id == stranger_id)
    );
    assert!(
        !a_knows_the_stranger(),
        "a relayed status put an unknown peer in A's table"
    );
}
