//! Hostile peers on the QUIC data plane, against real nodes and real quinn: a peer that opens
//! connection after connection, one that claims an oversized frame, a provider that trickles a
//! blob, and a peer whose forwarded requests would take every slot. Each test asserts the bound,
//! and that the node still serves.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use wasmesh_node::admission::Admission;
use wasmesh_node::connection_limits::MAX_CONNECTIONS_PER_PEER;
use wasmesh_node::data::{DataPlane, FetchError, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::wire::{
    BLOB_ALPN, BlobHeader, INVOKE_ALPN, InvokeRefusal, InvokeReply, InvokeRequest, ready_version,
};
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::stranger::StatusSender;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, get, invoke, publish, publisher, wait_until,
};

/// A QUIC client endpoint of a stranger with key `seed`.
fn stranger(seed: u8) -> (TlsIdentity, quinn::Endpoint) {
    let identity = TlsIdentity::new(&Keypair::from_seed([seed; 32]), None).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (identity, endpoint)
}

async fn connect(
    identity: &TlsIdentity,
    endpoint: &quinn::Endpoint,
    node: &TestNode,
    alpn: &[u8],
) -> quinn::Connection {
    let tls = identity
        .client_config(node.node.public_key(), alpn)
        .unwrap();
    let client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    endpoint
        .connect_with(client, node.node.quic_addr(), "wasmesh")
        .unwrap()
        .await
        .unwrap()
}

async fn serving_echo() -> (TestNode, Keypair) {
    let p = publisher(1);
    let node = TestNode::start(&[p.public()], &[]).await;
    let answer = publish(&node, &bundle(&p, fixture("echo.wat"), "echo", 1)).await;
    assert_eq!(answer.status, 201);
    (node, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_peer_holds_at_most_a_few_connections() {
    let (node, _) = serving_echo().await;
    let (identity, endpoint) = stranger(21);
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_PEER + 4 {
        held.push(connect(&identity, &endpoint, &node, BLOB_ALPN).await);
    }
    // The node closes the connections past the peer's share (whichever its handshakes finish
    // last); the others stay open.
    let closed_for_the_share = || {
        held.iter()
            .filter(|c| {
                matches!(c.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(close))
                    if close.error_code == quinn::VarInt::from_u32(4))
            })
            .count()
    };
    wait_until(
        "the connections past the share are closed",
        MESH_DEADLINE,
        || async { closed_for_the_share() == 4 },
    )
    .await;
    assert_eq!(
        held.iter().filter(|c| c.close_reason().is_none()).count(),
        MAX_CONNECTIONS_PER_PEER
    );
    assert_eq!(
        node.node.metrics().rejections_of("quic_connection_limit"),
        4
    );
    // Another peer still gets in, and the node serves.
    let (other, other_endpoint) = stranger(22);
    let fresh = connect(&other, &other_endpoint, &node, BLOB_ALPN).await;
    assert!(fresh.close_reason().is_none());
    assert_eq!(
        invoke(&node, "echo", b"still fine").await.body,
        b"still fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_invoke_frame_is_refused_and_counted() {
    let (node, _) = serving_echo().await;
    let (identity, endpoint) = stranger(23);
    let connection = connect(&identity, &endpoint, &node, INVOKE_ALPN).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // A frame that claims 4 GiB, and a little of it. The node may stop the stream as soon as it
    // has read the length, so a write can fail: that is the refusal, not a test failure.
    send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    let _ = send.write_all(&[7; 1024]).await;
    let answer = tokio::time::timeout(MESH_DEADLINE, recv.read_to_end(1 << 20))
        .await
        .expect("the node ends the stream")
        .unwrap_or_default();
    assert!(answer.is_empty(), "answered an oversized frame: {answer:?}");
    wait_until("the frame is counted", MESH_DEADLINE, || async {
        node.node.metrics().rejections_of("invoke_request") >= 1
    })
    .await;
    assert_eq!(
        invoke(&node, "echo", b"still fine").await.body,
        b"still fine"
    );
}

/// A provider that answers every blob request with a header for `size` bytes, then sends one
/// byte every 200 ms.
async fn trickling_provider(keys: &Keypair, size: u64) -> quinn::Endpoint {
    let identity = TlsIdentity::new(keys, None).unwrap();
    let tls = identity
        .server_config(Admission::Open, &[BLOB_ALPN])
        .unwrap();
    let server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let accepting = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = recv.read_to_end(1024).await;
                        let header = BlobHeader::Found { size }.encode();
                        if send.write_all(&header).await.is_err() {
                            return;
                        }
                        let mut tick = tokio::time::interval(Duration::from_millis(200));
                        loop {
                            tick.tick().await;
                            if send.write_all(&[0]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickling_provider_is_dropped_for_the_next_one() {
    let (node, _) = serving_echo().await;
    let blob = fixture("echo.wat");
    let hash = ContentHash::of(&blob);
    let trickler_keys = Keypair::from_seed([24; 32]);
    let trickler = trickling_provider(&trickler_keys, blob.len() as u64).await;

    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(scratch.path()).unwrap();
    let plane = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&Keypair::from_seed([25; 32]), None).unwrap(),
        Admission::Open,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let providers = [
        PeerAddr {
            key: trickler_keys.public(),
            addr: trickler.local_addr().unwrap(),
        },
        PeerAddr {
            key: node.node.public_key(),
            addr: node.node.quic_addr(),
        },
    ];
    let failures = tokio::time::timeout(
        MESH_DEADLINE,
        plane.fetch_from_any(&providers, hash, blob.len() as u64, &store),
    )
    .await
    .expect("the fetch ends")
    .expect("the second provider delivers")
    .failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0.key, trickler_keys.public());
    assert!(
        matches!(failures[0].1, FetchError::Stalled),
        "{:?}",
        failures[0].1
    );
    assert_eq!(store.read_blob(&hash).unwrap(), blob);
    // Nothing of the trickled attempt is left behind.
    let leftovers = std::fs::read_dir(scratch.path().join("blobs").join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_peers_forwards_cannot_fill_the_queue_ahead_of_local_requests() {
    let p = publisher(1);
    let node = TestNode::start_with(&[p.public()], &[], |config| {
        config.executor.max_concurrent = 2;
        config.executor.max_queued = 4;
    })
    .await;
    for (wasm, name) in [("infinite_loop.wat", "spin"), ("echo.wat", "echo")] {
        assert_eq!(
            publish(&node, &bundle(&p, fixture(wasm), name, 1))
                .await
                .status,
            201
        );
    }
    let spin = node.node.blob_of(&"spin".parse().unwrap()).unwrap();

    // A stranger forwards six requests that each hold a slot for up to a second. (One module
    // gets at most half of the slots; the others wait in the queue.)
    let plane = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&Keypair::from_seed([26; 32]), None).unwrap(),
        Admission::Open,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let target = PeerAddr {
        key: node.node.public_key(),
        addr: node.node.quic_addr(),
    };
    let flood: Vec<_> = (0..6)
        .map(|i| {
            let plane = plane.clone();
            tokio::spawn(async move {
                let request = InvokeRequest {
                    hash: spin,
                    input: Vec::new(),
                    deadline_ms: 1_000,
                    hops: 1,
                    trace_id: i,
                    trace: None,
                };
                plane
                    .invoke(
                        target,
                        &request,
                        Duration::from_secs(10),
                        Duration::from_secs(5),
                    )
                    .await
            })
        })
        .collect();
    // Three are taken, half of the slots and queue places (one running, two queued: one
    // module gets at most half of the slots); the other three are refused at once.
    wait_until(
        "the stranger's forwards are taken or refused",
        MESH_DEADLINE,
        || async {
            let status = get(format!("{}/v1/status", node.url())).await.json();
            let held = status["running"].as_u64().unwrap() + status["queued"].as_u64().unwrap();
            held == 3 && node.node.metrics().rejections_of("forward_share") == 3
        },
    )
    .await;
    // A local request still finds a place in the queue, and runs once a slot frees.
    let local = invoke(&node, "echo", b"mine").await;
    assert_eq!(
        (local.status, local.body.as_slice()),
        (200, &b"mine"[..]),
        "{:?}",
        String::from_utf8_lossy(&local.body)
    );
    let mut refused = 0;
    for forward in flood {
        match forward.await.unwrap().unwrap() {
            InvokeReply::Refused {
                reason: InvokeRefusal::Busy(detail),
            } if detail.contains("share") => refused += 1,
            InvokeReply::Refused { reason } => panic!("refused for another reason: {reason}"),
            InvokeReply::GuestFailed { .. } | InvokeReply::Ok { .. } => {}
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(node.node.metrics().rejections_of("forward_share"), refused);
}

/// A peer that claims, in signed statuses, to hold `hash`, and answers every forwarded request
/// with made-up output under a signature that is not a receipt. Returns its gossip side (kept
/// alive by the caller).
async fn lying_holder(seed: u8, node: &TestNode, hash: ContentHash) -> StatusSender {
    use wasmesh_protocol::Signature;
    use wasmesh_protocol::coordinates::Coordinate;
    use wasmesh_protocol::wire::StatusMessage;

    let keys = Keypair::from_seed([seed; 32]);
    // The data plane: every request gets the same forged answer.
    let identity = TlsIdentity::new(&keys, None).unwrap();
    let tls = identity
        .server_config(Admission::Open, &[INVOKE_ALPN])
        .unwrap();
    let server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let quic_addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let _ = recv.read_to_end(1 << 20).await;
                    let reply = InvokeReply::Ok {
                        output: b"forged".to_vec(),
                        queue_us: 0,
                        exec_us: 1,
                        receipt: Signature([7; 64]),
                    }
                    .encode();
                    let _ = send.write_all(&(reply.len() as u32).to_le_bytes()).await;
                    let _ = send.write_all(&reply).await;
                    let _ = send.finish();
                }
            });
        }
    });

    // The control plane: statuses saying the blob is ready there, until the node takes one.
    let liar = wasmesh_keys::identity::peer_id(&keys.public()).unwrap();
    let mut sender = StatusSender::connect([seed; 32], node);
    let status = StatusMessage {
        node: keys.public(),
        quic_addr: quic_addr.to_string(),
        ready_version: ready_version(&[hash]),
        ready: Some(vec![hash]),
        in_flight: 0,
        capacity: 64,
        seq: 0,
        p2p_addrs: Vec::new(),
        manifests: ContentHash::of(b"nothing"),
        coordinate: Coordinate::default(),
        leaving: false,
    };
    let closed = sender
        .send_until("the node takes the liar's status", status, || {
            node.node
                .peer_views()
                .iter()
                .any(|p| p.peer_id == liar && p.ready.contains(&hash))
        })
        .await;
    assert!(!closed, "the node closed the liar's connection");
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_answer_is_caught_by_its_receipt() {
    let p = publisher(1);
    let holder = TestNode::start(&[p.public()], &[]).await;
    let router = TestNode::start_with(&[p.public()], &[&holder], |config| {
        config.replicate = wasmesh_node::config::Replicate::None;
    })
    .await;
    let published = bundle(&p, fixture("echo.wat"), "echo", 1);
    assert_eq!(publish(&holder, &published).await.status, 201);
    // The router forwards to the honest holder, and hands its receipt to the client.
    wait_until(
        "the router serves echo through the holder",
        MESH_DEADLINE,
        || async { invoke(&router, "echo", b"abc").await.status == 200 },
    )
    .await;
    let answer = invoke(&router, "echo", b"abc").await;
    assert_eq!(answer.body, b"abc");
    let receipt = answer
        .header("x-wasmesh-receipt")
        .expect("a forwarded answer has a receipt");
    let receipt =
        wasmesh_protocol::receipt::SignedReceipt::decode(&hex::decode(receipt).unwrap()).unwrap();
    assert_eq!(receipt.verify(), Ok(()));
    assert_eq!(receipt.receipt.executor, holder.node.public_key());
    assert_eq!(receipt.receipt.input, ContentHash::of(b"abc"));
    assert_eq!(receipt.receipt.outcome, ContentHash::of(b"abc"));
    assert_eq!(receipt.receipt.module, ContentHash::of(&published.module));

    // The honest holder leaves; a liar claims the module.
    holder.node.shutdown().await;
    let _liar = lying_holder(31, &router, ContentHash::of(&published.module)).await;
    let answer = invoke(&router, "echo", b"abc").await;
    assert_ne!(answer.body, b"forged", "a forged answer reached the client");
    assert_eq!(
        answer.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(router.node.metrics().rejections_of("bad_receipt"), 1);
    // The liar is marked down: the next request does not go to it.
    let again = invoke(&router, "echo", b"abc").await;
    assert_eq!(again.status, 503);
    assert_eq!(router.node.metrics().rejections_of("bad_receipt"), 1);
}
