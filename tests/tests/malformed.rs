//! Malformed gossip, sync, status and blob messages from a hostile peer (random, truncated, oversized,
//! forged) are rejected and counted, and the node keeps serving.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, noise, tcp, yamux};
use quinn::crypto::rustls::QuicClientConfig;
use wasmesh_node::admission::Admission;
use wasmesh_node::rejection::Rejection;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::wire::{
    BLOB_ALPN, MANIFEST_TOPIC, STATUS_PROTOCOL, SYNC_PROTOCOL, StatusMessage, ready_version,
};
use wasmesh_protocol::{ContentHash, Keypair, SignedManifest};
use wasmesh_tests::stranger::RawCodec;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, invoke, publish, publisher, wait_until_async,
};

#[derive(NetworkBehaviour)]
struct Hostile {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    status: request_response::Behaviour<RawCodec>,
}

fn noise_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A hostile peer connected to `node`, once the node's subscription to the manifest topic is
/// known.
async fn hostile_peer(node: &TestNode) -> libp2p::Swarm<Hostile> {
    let hostile_keys = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(hostile_keys)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_quic()
        .with_behaviour(|key| Hostile {
            gossipsub: gossipsub::Behaviour::new(
                MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .max_transmit_size(1 << 20)
                    .build()
                    .unwrap(),
            )
            .unwrap(),
            sync: request_response::Behaviour::new(
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
            status: request_response::Behaviour::new(
                [(StreamProtocol::new(STATUS_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .build();
    let manifests = IdentTopic::new(MANIFEST_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&manifests)
        .unwrap();
    swarm.dial(node.node.p2p_addrs()[0].clone()).unwrap();

    // Wait until the node's subscription is known, answering nothing A asks.
    let mut subscribed = 0;
    let until = tokio::time::Instant::now() + MESH_DEADLINE;
    while subscribed < 1 {
        let event = tokio::time::timeout_at(until, swarm.select_next_some())
            .await
            .expect("A subscribes within the deadline");
        if let SwarmEvent::Behaviour(HostileEvent::Gossipsub(gossipsub::Event::Subscribed {
            ..
        })) = event
        {
            subscribed += 1;
        }
    }

    swarm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_gossip_and_sync_are_rejected_and_counted() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let published = bundle(&p, fixture("echo.wat"), "echo", 1);
    assert_eq!(publish(&a, &published).await.status, 201);
    a.wait_ready("echo").await;

    // Each identity gets three invalid manifests before it is graylisted and ignored; the
    // statuses come from others, on the status protocol.
    let mut swarm = hostile_peer(&a).await;
    let mut second = hostile_peer(&a).await;
    let manifests = IdentTopic::new(MANIFEST_TOPIC);
    let valid = published.manifest.encode();
    let forged_status = StatusMessage {
        node: Keypair::from_seed([5; 32]).public(),
        quic_addr: "127.0.0.1:1".into(),
        ready_version: ready_version(&[]),
        ready: Some(Vec::new()),
        in_flight: 0,
        capacity: 1,
        seq: 1,
        p2p_addrs: Vec::new(),
        manifests: ContentHash([0; 32]),
        coordinate: Default::default(),
        leaving: false,
    }
    .encode();
    let mut tampered = SignedManifest::decode(&valid).unwrap();
    tampered.manifest.version = 99;
    for bytes in [
        noise_bytes(200, 1),
        valid[..valid.len() / 2].to_vec(),
        tampered.encode(),
    ] {
        swarm
            .behaviour_mut()
            .gossipsub
            .publish(manifests.clone(), bytes)
            .unwrap();
    }
    let peer = a.node.peer_id();
    // Noise from one peer, a status for another key from a third: each refused, counted, and
    // its sender disconnected.
    second
        .behaviour_mut()
        .status
        .send_request(&peer, noise_bytes(300, 2));
    let metrics = a.node.metrics();
    let until = tokio::time::Instant::now() + MESH_DEADLINE;
    while metrics.rejections_of(Rejection::StatusMalformed) < 1 {
        assert!(
            tokio::time::Instant::now() < until,
            "noise status not counted"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), second.select_next_some()).await;
    }
    let mut third = hostile_peer(&a).await;
    third
        .behaviour_mut()
        .status
        .send_request(&peer, forged_status);
    for bytes in [noise_bytes(50, 3), noise_bytes(100_000, 4), Vec::new()] {
        swarm.behaviour_mut().sync.send_request(&peer, bytes);
    }

    let counted = || {
        metrics.rejections_of(Rejection::GossipMalformedManifest) >= 2
            && metrics.rejections_of(Rejection::BadSignature) >= 1
            && metrics.rejections_of(Rejection::BadStatus) >= 1
            && metrics.rejections_of(Rejection::SyncMalformed) >= 3
    };
    let until = tokio::time::Instant::now() + MESH_DEADLINE;
    while !counted() {
        assert!(
            tokio::time::Instant::now() < until,
            "not all rejections counted:\n{}",
            metrics.encode()
        );
        let both = futures::future::select(swarm.select_next_some(), third.select_next_some());
        let _ = tokio::time::timeout(Duration::from_millis(50), both).await;
    }
    assert_eq!(
        a.version_of("echo"),
        Some(1),
        "the tampered version was taken"
    );
    assert_eq!(invoke(&a, "echo", b"still fine").await.body, b"still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_blob_requests_are_rejected_and_counted() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    assert_eq!(
        publish(&a, &bundle(&p, fixture("echo.wat"), "echo", 1))
            .await
            .status,
        201
    );

    let identity = TlsIdentity::new(&Keypair::from_seed([8; 32]), None).unwrap();
    let tls = identity
        .client_config(a.node.public_key(), &Admission::Open, BLOB_ALPN)
        .unwrap();
    let client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint
        .connect_with(client, a.node.quic_addr(), "wasmesh")
        .unwrap()
        .await
        .unwrap();

    let requests: [Vec<u8>; 3] = [
        u32::MAX.to_le_bytes().to_vec(), // oversized length prefix
        [10u32.to_le_bytes().to_vec(), vec![1, 2, 3]].concat(), // truncated
        [40u32.to_le_bytes().to_vec(), noise_bytes(40, 7)].concat(), // garbage
    ];
    for request in requests {
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(&request).await.unwrap();
        send.finish().unwrap();
        // The node answers nothing useful and closes its side.
        let answer = recv.read_to_end(64).await.unwrap_or_default();
        assert!(
            answer.is_empty(),
            "answered a malformed request: {answer:?}"
        );
    }
    wait_until_async(
        "the three malformed requests are counted",
        MESH_DEADLINE,
        || async { a.node.metrics().rejections_of(Rejection::BlobRequest) >= 3 },
    )
    .await;
    assert_eq!(invoke(&a, "echo", b"still fine").await.body, b"still fine");
}
