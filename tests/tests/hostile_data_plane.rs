//! Hostile peers on the QUIC data plane, against real nodes and real quinn: a peer that opens
//! connection after connection, one that claims an oversized frame, a provider that trickles a
//! blob, and a peer whose forwarded requests would take every slot. Each test asserts the bound,
//! and that the node still serves.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use wasmesh_node::admission::Admission;
use wasmesh_node::connection_limits::MAX_CONNECTIONS_PER_PEER;
use wasmesh_node::data::MAX_DIAL_BACKS;
use wasmesh_node::data::relay::MAX_RELAY_SESSIONS_PER_NODE;
use wasmesh_node::data::{CloseCode, DataPlane, FetchError, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::rejection::Rejection;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::wire::{
    BLOB_ALPN, BlobHeader, INVOKE_ALPN, InvokeRefusal, InvokeReply, InvokeRequest, PunchAck,
    PunchRequest, REACH_ALPN, ReachReply, ReachRequest,
};
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::liar::{Signing, lying_holder};
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, gateway, invoke, publish, publisher, wait_until_async,
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
        .client_config(node.node.public_key(), &Admission::Open, alpn)
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
                    if close.error_code == CloseCode::TooManyConnections.code())
            })
            .count()
    };
    wait_until_async(
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
        node.node
            .metrics()
            .rejections_of(Rejection::QuicConnectionLimit),
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
    wait_until_async("the frame is counted", MESH_DEADLINE, || async {
        node.node.metrics().rejections_of(Rejection::InvokeRequest) >= 1
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
async fn throwaway_keys_cannot_fill_the_queue_ahead_of_local_requests() {
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
    let target = PeerAddr {
        key: node.node.public_key(),
        addr: node.node.quic_addr(),
    };

    // Two throwaway keys forward six requests each that would hold a slot for a second. A key
    // the node has no record with gets a sixteenth of its slots and queue places (at least
    // one): each has one taken, the other five refused at once.
    let mut flood = Vec::new();
    for seed in [26u8, 27] {
        let plane = DataPlane::bind(
            "127.0.0.1:0".parse().unwrap(),
            TlsIdentity::new(&Keypair::from_seed([seed; 32]), None).unwrap(),
            Admission::Open,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        for i in 0..6u64 {
            let plane = plane.clone();
            flood.push(tokio::spawn(async move {
                let request = InvokeRequest {
                    hash: spin,
                    input: Vec::new(),
                    deadline_ms: 1_000,
                    hops: 1,
                    trace_id: i,
                    trace: None,
                    nonce: i,
                };
                plane
                    .invoke(
                        target,
                        &request,
                        Duration::from_secs(10),
                        Duration::from_secs(5),
                    )
                    .await
            }));
        }
    }
    wait_until_async(
        "the strangers' forwards are taken or refused",
        MESH_DEADLINE,
        || async {
            let status = gateway::get(&node.url(), "/v1/status")
                .await
                .json()
                .unwrap();
            let held = status["running"].as_u64().unwrap() + status["queued"].as_u64().unwrap();
            held == 2 && node.node.metrics().rejections_of(Rejection::ForwardShare) == 10
        },
    )
    .await;
    // Local requests still find places, and run once a slot frees.
    for input in [&b"mine"[..], b"mine too"] {
        let local = invoke(&node, "echo", input).await;
        assert_eq!(
            (local.status, local.body.as_slice()),
            (200, input),
            "{:?}",
            String::from_utf8_lossy(&local.body)
        );
    }
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
    assert_eq!(refused, 10);
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
    wait_until_async(
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

    // The honest holder leaves; a liar that holds the blob (it proves possession) claims the
    // module and answers with a signature that is no receipt.
    holder.node.shutdown().await;
    let hash = ContentHash::of(&published.module);
    let _liar = lying_holder(31, &router, hash, Some(&published.module), Signing::Garbage).await;
    let answer = invoke(&router, "echo", b"abc").await;
    assert_ne!(answer.body, b"forged", "a forged answer reached the client");
    assert_eq!(
        answer.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        router.node.metrics().rejections_of(Rejection::BadReceipt),
        1
    );
    // The liar is marked down: the next request does not go to it.
    let again = invoke(&router, "echo", b"abc").await;
    assert_eq!(again.status, 503);
    assert_eq!(
        router.node.metrics().rejections_of(Rejection::BadReceipt),
        1
    );
}

/// The first packet of a QUIC handshake with the node at `server` (key `server_key`): an
/// Initial, from a client that will never answer.
fn initial_packet(
    server: std::net::SocketAddr,
    server_key: wasmesh_protocol::PublicKey,
) -> Vec<u8> {
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let tls = TlsIdentity::new(&Keypair::from_seed([99; 32]), None)
        .unwrap()
        .client_config(server_key, &Admission::Open, BLOB_ALPN)
        .unwrap();
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let now = std::time::Instant::now();
    let (_, mut connection) = endpoint.connect(now, config, server, "wasmesh").unwrap();
    let mut packet = Vec::new();
    let transmit = connection.poll_transmit(now, 1, &mut packet).unwrap();
    packet.truncate(transmit.size);
    packet
}

/// 512 half-open handshakes, an Initial packet each from a port that never answers (as a
/// stranger with spoofed source addresses would send them), take no place of peers that
/// connect for real: beyond a few, unproven handshakes must first answer a Retry, so a fresh
/// peer still connects within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_handshakes_leave_room_for_a_real_peer() {
    let p = publisher(1);
    let node = TestNode::start(&[p.public()], &[]).await;
    let server = node.node.quic_addr();
    let key = node.node.public_key();
    let mut silent = Vec::new();
    for _ in 0..512 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(&initial_packet(server, key), server)
            .unwrap();
        silent.push(socket);
    }
    wait_until_async(
        "the node has seen the handshakes",
        MESH_DEADLINE,
        || async { node.node.metrics().rejections_of(Rejection::QuicRetry) >= 400 },
    )
    .await;
    let (identity, endpoint) = stranger(43);
    let started = std::time::Instant::now();
    let connected = tokio::time::timeout(
        Duration::from_secs(1),
        connect(&identity, &endpoint, &node, BLOB_ALPN),
    )
    .await;
    assert!(
        connected.is_ok(),
        "a real peer could not connect within a second of 512 half-open handshakes"
    );
    println!(
        "a real peer connected in {:?} after 512 half-open handshakes ({} sent a Retry)",
        started.elapsed(),
        node.node.metrics().rejections_of(Rejection::QuicRetry)
    );
    drop(silent);
}

/// Writes `message` framed (a 4-byte little-endian length, then the bytes) and finishes.
async fn write_frame(send: &mut quinn::SendStream, message: &[u8]) {
    let len = u32::try_from(message.len()).unwrap();
    send.write_all(&len.to_le_bytes()).await.unwrap();
    send.write_all(message).await.unwrap();
    send.finish().unwrap();
}

/// Reads one framed message of at most 256 bytes.
async fn read_frame(recv: &mut quinn::RecvStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.unwrap();
    let mut message = vec![0u8; u32::from_le_bytes(len) as usize];
    assert!(message.len() <= 256, "an oversized reach frame");
    recv.read_exact(&mut message).await.unwrap();
    message
}

/// Acknowledges every punch request the node sends on `connection`, as a NATed node does.
fn acknowledge_punches(connection: quinn::Connection) {
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = connection.accept_bi().await {
            PunchRequest::decode(&read_frame(&mut recv).await).unwrap();
            write_frame(&mut send, &PunchAck.encode()).await;
        }
    });
}

/// Asks the node, over the reach connection `connection`, for a relay session to `target`.
async fn ask_for_relay(
    connection: &quinn::Connection,
    target: wasmesh_protocol::PublicKey,
) -> ReachReply {
    reach_exchange(connection, ReachRequest::Relay { target }).await
}

/// Strangers stand on a node as NATed nodes do, and one asks it for relay session after
/// relay session to another: past its share the node refuses, counts the refusal, and another
/// asker still gets a session; the node meanwhile serves its own requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_sessions_past_an_askers_share_are_refused_and_the_relay_keeps_serving() {
    let (node, _) = serving_echo().await;
    let (target_identity, target_endpoint) = stranger(31);
    let target = connect(&target_identity, &target_endpoint, &node, REACH_ALPN).await;
    acknowledge_punches(target);
    let target_key = Keypair::from_seed([31; 32]).public();
    let (asker_identity, asker_endpoint) = stranger(32);
    let asker = connect(&asker_identity, &asker_endpoint, &node, REACH_ALPN).await;
    // The target's standing connection is served as soon as the handshake ends; wait for the
    // first session rather than for that.
    wait_until_async("a first relay session opens", MESH_DEADLINE, || async {
        matches!(
            ask_for_relay(&asker, target_key).await,
            ReachReply::Relayed(_)
        )
    })
    .await;
    for _ in 1..MAX_RELAY_SESSIONS_PER_NODE {
        let reply = ask_for_relay(&asker, target_key).await;
        assert!(matches!(reply, ReachReply::Relayed(_)), "{reply:?}");
    }
    assert_eq!(
        node.node.metrics().relay_sessions.get(),
        MAX_RELAY_SESSIONS_PER_NODE as i64
    );
    assert_eq!(ask_for_relay(&asker, target_key).await, ReachReply::Unknown);
    assert_eq!(node.node.metrics().rejections_of(Rejection::RelayFull), 1);
    assert_eq!(
        invoke(&node, "echo", b"serving while relaying").await.body,
        b"serving while relaying"
    );
    let (other_identity, other_endpoint) = stranger(33);
    let other = connect(&other_identity, &other_endpoint, &node, REACH_ALPN).await;
    let reply = ask_for_relay(&other, target_key).await;
    assert!(
        matches!(reply, ReachReply::Relayed(_)),
        "another asker: {reply:?}"
    );
}

/// Sends `request` on the reach connection `connection` and reads the reply.
async fn reach_exchange(connection: &quinn::Connection, request: ReachRequest) -> ReachReply {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &request.encode()).await;
    let reply = tokio::time::timeout(MESH_DEADLINE, read_frame(&mut recv))
        .await
        .expect("the node answers a reach request");
    ReachReply::decode(&reply).unwrap()
}

/// A stranger asks for dial back after dial back at once (a client endpoint, so none gets
/// in): past the cap the node refuses and counts the refusal, and answers the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dial_backs_past_the_cap_are_refused_and_counted() {
    let (node, _) = serving_echo().await;
    let (identity, endpoint) = stranger(34);
    let connection = connect(&identity, &endpoint, &node, REACH_ALPN).await;
    let asks = (0..MAX_DIAL_BACKS + 2).map(|_| reach_exchange(&connection, ReachRequest::DialBack));
    let replies = futures::future::join_all(asks).await;
    let refused = replies
        .iter()
        .filter(|r| **r == ReachReply::Unknown)
        .count();
    assert_eq!(refused, 2, "{replies:?}");
    assert!(
        replies.contains(&ReachReply::DialedBack(false)),
        "a client endpoint lets no handshake in: {replies:?}"
    );
    assert_eq!(
        node.node.metrics().rejections_of(Rejection::DialBackFull),
        2
    );
    assert_eq!(
        invoke(&node, "echo", b"still here").await.body,
        b"still here"
    );
}
