//! How nodes find each other: a neighbour introduces the peers it is connected to (in its sync
//! response), and they are dialed; a status comes only from its own node, over its connection.

use futures::StreamExt;
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::coordinates::Coordinate;
use wasmesh_protocol::wire::{StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::stranger::StatusSender;
use wasmesh_tests::{MESH_DEADLINE, TestNode, wait_until_async};

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
    wait_until_async("B and C are connected", MESH_DEADLINE, || async {
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
    let refused = || a.node.metrics().rejections_of(Rejection::BadStatus);
    let closed = stranger
        .send_until("A refuses the status", status, || refused() > 0)
        .await;
    assert!(refused() > 0 || closed);
    wait_until_async("A disconnects the sender", MESH_DEADLINE, || async {
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
    let refused = || a.node.metrics().rejections_of(Rejection::PeerOtherVersion);
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

/// A stranger (over TCP only, so it cannot itself send QUIC packets) that speaks Kademlia and
/// identify.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct KadStranger {
    kad: libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>,
    identify: libp2p::identify::Behaviour,
}

/// A stranger the node dialed (its bootstrap peer) answers the node's Kademlia lookups with a
/// closer peer at a loopback address. A node that dials private addresses (`allow`) sends
/// that address packets; one that does not sends it none: the addresses Kademlia learns pass
/// the same scope rule as every other.
async fn kademlia_answer_naming_a_loopback_address(allow: bool) -> usize {
    use libp2p::swarm::SwarmEvent;
    use libp2p::{StreamProtocol, identify, kad};

    // Where the made-up closer peer "listens": a UDP socket that counts what arrives.
    let trap = tokio::net::UdpSocket::bind("127.0.0.77:0").await.unwrap();
    let trap_addr: libp2p::Multiaddr = format!(
        "/ip4/127.0.0.77/udp/{}/quic-v1",
        trap.local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let stranger_keys = libp2p::identity::Keypair::generate_ed25519();
    let id = stranger_keys.public().to_peer_id();
    let mut stranger = libp2p::SwarmBuilder::with_existing_identity(stranger_keys)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let config =
                kad::Config::new(StreamProtocol::new(wasmesh_protocol::wire::KAD_PROTOCOL));
            let mut kad = kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config);
            kad.set_mode(Some(kad::Mode::Server));
            KadStranger {
                kad,
                identify: identify::Behaviour::new(identify::Config::new(
                    wasmesh_protocol::wire::PROTOCOL_VERSION.into(),
                    key.public(),
                )),
            }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(std::time::Duration::from_secs(600)))
        .build();
    stranger
        .behaviour_mut()
        .kad
        .add_address(&libp2p::PeerId::random(), trap_addr);
    stranger
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let listening = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = stranger.select_next_some().await {
            break address.with_p2p(id).unwrap();
        }
    };
    let p = wasmesh_tests::publisher(1);
    let node = TestNode::start_with(&[p.public()], &[], move |config| {
        config.bootstrap = vec![listening];
        config.allow_private_addrs = allow;
    })
    .await;
    // A module published there makes the node look up its directory nodes.
    let published = wasmesh_tests::bundle(&p, wasmesh_tests::fixture("echo.wat"), "echo", 1);
    assert_eq!(wasmesh_tests::publish(&node, &published).await.status, 201);
    let mut answered = 0;
    let mut packets = 0;
    let mut buffer = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + MESH_DEADLINE;
    // Until the stranger has answered two lookups, and a while more: long enough for the
    // permissive node to send its first packets.
    let mut quiet_until = None;
    loop {
        let until = quiet_until.unwrap_or(deadline);
        tokio::select! {
            event = stranger.select_next_some() => {
                if let SwarmEvent::Behaviour(KadStrangerEvent::Kad(kad::Event::InboundRequest {
                    request: kad::InboundRequest::FindNode { .. },
                })) = event {
                    answered += 1;
                    if answered == 2 {
                        let quiet = std::time::Duration::from_secs(2);
                        quiet_until = Some(tokio::time::Instant::now() + quiet);
                    }
                }
            }
            received = trap.recv_from(&mut buffer) => {
                if received.is_ok() {
                    packets += 1;
                }
                if allow {
                    break;
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    assert!(answered >= 1, "the node never asked the stranger");
    drop(node);
    packets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kademlia_answer_naming_a_loopback_address_gets_no_packet() {
    assert!(
        kademlia_answer_naming_a_loopback_address(true).await > 0,
        "the permissive node dialed the address Kademlia learned"
    );
    assert_eq!(kademlia_answer_naming_a_loopback_address(false).await, 0);
}
