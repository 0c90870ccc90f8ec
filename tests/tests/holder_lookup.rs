//! Holders beyond a node's neighbours: a node that is not a neighbour of the only holder (it
//! gets no status from it) finds it through the blob's directory nodes, and its request runs
//! there.

use wasmesh_node::config::Replicate;
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::Keypair;
use wasmesh_tests::{TestNode, bundle, fixture, invoke, publish, publisher};

/// A node that is never anyone's neighbour: it announces a libp2p address where nothing listens
/// and dials no loopback address it is told of. Its data plane is where it says, so requests
/// forwarded to it run.
async fn hidden_holder(p: &Keypair, bootstrap: &TestNode) -> TestNode {
    TestNode::start_with(&[p.public()], &[bootstrap], |config| {
        config.announce = vec!["/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap()];
        config.allow_private_addrs = false;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_is_not_a_neighbour_is_found_through_the_directory() {
    let p = publisher(1);
    // D introduces H and E to each other, but H announces a libp2p address where nothing
    // listens, so E's dials of H fail, and H dials no loopback address it is told of: H and E
    // are never neighbours, and E never gets H's status. H's data plane is where it says. D and
    // E hold nothing.
    let d = TestNode::start_with(&[p.public()], &[], |config| {
        config.replicate = Replicate::None
    })
    .await;
    let h = hidden_holder(&p, &d).await;
    let e = TestNode::start_with(&[p.public()], &[&d], |config| {
        config.replicate = Replicate::None;
    })
    .await;
    assert_eq!(
        publish(&h, &bundle(&p, fixture("reverse.wat"), "rev", 1))
            .await
            .status,
        201
    );
    wasmesh_tests::wait_until_async(
        "E and D hold the manifest",
        wasmesh_tests::MESH_DEADLINE,
        || async { e.version_of("rev") == Some(1) && d.version_of("rev") == Some(1) },
    )
    .await;
    let h_id = h.node.peer_id();
    let blob = h.node.blob_of(&"rev".parse().unwrap()).unwrap();
    let e_knows_h_holds_it = e
        .node
        .peer_views()
        .iter()
        .any(|p| p.peer_id == h_id && p.ready.contains(&blob));
    assert!(!e_knows_h_holds_it, "E heard of H's blob before asking");

    // H announces the blob to its directory nodes once it is ready; E's request asks them. The
    // announcement may still be on its way: E retries until it lands.
    let mut answer = invoke(&e, "rev", b"abc").await;
    let until = tokio::time::Instant::now() + wasmesh_tests::MESH_DEADLINE;
    while answer.status != 200 {
        assert!(
            tokio::time::Instant::now() < until,
            "E never found H: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        answer = invoke(&e, "rev", b"abc").await;
    }
    assert_eq!(answer.body, b"cba");
    assert_eq!(answer.header("x-wasmesh-route"), Some("forwarded"));
    assert_eq!(
        answer.header("x-wasmesh-executed-by"),
        Some(h_id.to_string().as_str())
    );
    assert!(
        e.node.metrics().holders_found.get() >= 1,
        "E learned of H through a directory"
    );
}

/// One key that announces thousands of made-up blobs to every node it can reach gets its quota
/// of each directory and no more: an honest holder announced after it is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_announcing_thousands_of_blobs_leaves_an_honest_holder_findable() {
    use futures::StreamExt;
    use libp2p::StreamProtocol;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use wasmesh_protocol::ContentHash;
    use wasmesh_protocol::coordinates::Coordinate;
    use wasmesh_protocol::holders::{HOLDERS_PROTOCOL, Holder, HolderRequest};
    use wasmesh_tests::raw_codec::RawCodec;

    let p = publisher(1);
    let d = TestNode::start_with(&[p.public()], &[], |config| {
        config.replicate = Replicate::None
    })
    .await;
    let e = TestNode::start_with(&[p.public()], &[&d], |config| {
        config.replicate = Replicate::None;
    })
    .await;

    // The flood: 16 announcements of 256 blobs each to D and to E, under one key.
    let keys = wasmesh_protocol::Keypair::from_seed([71; 32]);
    let record = Holder {
        node: keys.public(),
        quic_addr: "127.0.0.1:9".into(),
        p2p_addrs: Vec::new(),
        coordinate: Coordinate::default(),
        issued_ms: wasmesh_node::clock::now_ms(),
    }
    .sign(&keys);
    let mut swarm =
        wasmesh_tests::stranger::swarm(wasmesh_keys::identity::libp2p_keypair(&keys), |_| {
            request_response::Behaviour::<RawCodec>::new(
                [(StreamProtocol::new(HOLDERS_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        });
    let targets = [(&d, d.node.peer_id()), (&e, e.node.peer_id())];
    for (node, _) in &targets {
        swarm.dial(node.node.p2p_addrs()[0].clone()).unwrap();
    }
    let mut sent = 0;
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + wasmesh_tests::MESH_DEADLINE;
    while answered < 32 {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("the flood is answered");
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                for batch in 0..16u32 {
                    let blobs: Vec<ContentHash> = (0..256u32)
                        .map(|i| ContentHash::of(&(batch * 256 + i).to_le_bytes()))
                        .collect();
                    let request = HolderRequest::Announce {
                        holder: record.clone(),
                        blobs,
                    };
                    swarm
                        .behaviour_mut()
                        .send_request(&peer_id, request.encode());
                    sent += 1;
                }
            }
            SwarmEvent::Behaviour(request_response::Event::Message { .. }) => answered += 1,
            _ => {}
        }
    }
    assert_eq!(sent, 32);
    for (node, _) in &targets {
        assert!(
            node.node
                .metrics()
                .rejections_of(Rejection::DirectoryHolderQuota)
                >= 1
        );
    }

    // An honest holder H (whose libp2p address E cannot dial) publishes: E finds it through
    // the directories.
    let h = hidden_holder(&p, &d).await;
    assert_eq!(
        publish(&h, &bundle(&p, fixture("reverse.wat"), "rev", 1))
            .await
            .status,
        201
    );
    wasmesh_tests::wait_until_async("E finds H", wasmesh_tests::MESH_DEADLINE, || async {
        invoke(&e, "rev", b"abc").await.status == 200
    })
    .await;
    assert!(e.node.metrics().holders_found.get() >= 1);
}

/// A node that must forward and knows fewer holders than it would compare asks the directory in
/// the background while its requests go to the holder it knows: E's neighbour G holds the
/// module, E's requests run there, and E learns of H, which joins later and which no neighbour
/// names, from H's announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_knows_one_holder_looks_for_more_while_it_forwards() {
    let p = publisher(1);
    let d = TestNode::start_with(&[p.public()], &[], |config| {
        config.replicate = Replicate::None
    })
    .await;
    let g = TestNode::start(&[p.public()], &[&d]).await;
    let e = TestNode::start_with(&[p.public()], &[&d, &g], |config| {
        config.replicate = Replicate::None;
    })
    .await;
    let rev = bundle(&p, fixture("reverse.wat"), "rev", 1);
    assert_eq!(publish(&g, &rev).await.status, 201);
    wasmesh_tests::wait_until_async(
        "E's requests run on G",
        wasmesh_tests::MESH_DEADLINE,
        || async { invoke(&e, "rev", b"abc").await.status == 200 },
    )
    .await;

    // H joins once E's first search is over; as in the test above, it is never anyone's
    // neighbour but serves where it says. The module is published on it too; it announces the
    // blob once it holds it.
    let h = hidden_holder(&p, &d).await;
    assert_eq!(publish(&h, &rev).await.status, 201);
    h.wait_ready("rev").await;
    let blob = h.node.blob_of(&"rev".parse().unwrap()).unwrap();
    let h_id = h.node.peer_id();
    let e_knows_h = || {
        e.node
            .peer_views()
            .iter()
            .any(|p| p.peer_id == h_id && p.ready.contains(&blob))
    };
    assert!(!e_knows_h(), "E heard of H before asking");
    let found_before = e.node.metrics().holders_found.get();
    wasmesh_tests::wait_until_async(
        "E learns of H through the directory while its requests run on G",
        wasmesh_tests::MESH_DEADLINE * 2,
        || async {
            let answer = invoke(&e, "rev", b"abc").await;
            assert_eq!((answer.status, answer.body.as_slice()), (200, &b"cba"[..]));
            e.node.metrics().holders_found.get() > found_before && e_knows_h()
        },
    )
    .await;
}
