//! The mesh core end to end, with real nodes on 127.0.0.1: publish and replicate, trust, late
//! joiners, versions and rollback, lying providers, and restarts from a node's own store.

use std::io::Write;
use std::process::{Command, Stdio};

use wasmesh_node::rejection::Rejection;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, invoke, publish, publisher, wait_until_async,
    wasmesh_bin,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_on_one_node_ready_on_all_and_callable_via_another() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    let c = TestNode::start(&[p.public()], &[&a]).await;

    let answer = publish(&a, &bundle(&p, fixture("reverse.wat"), "rev", 1)).await;
    assert_eq!(
        answer.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    for node in [&a, &b, &c] {
        node.wait_ready("rev").await;
    }

    let url = c.url();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(wasmesh_bin())
            .args(["call", "rev", "--node", &url, "--input", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello mesh")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"hsem olleh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_publisher_is_refused_and_reaches_no_node() {
    let trusted = publisher(1);
    let stranger = publisher(2);
    let a = TestNode::start(&[trusted.public()], &[]).await;
    let b = TestNode::start(&[trusted.public()], &[&a]).await;
    let c = TestNode::start(&[trusted.public()], &[&b]).await;

    for via in [&a, &c] {
        let answer = publish(via, &bundle(&stranger, fixture("echo.wat"), "evil", 1)).await;
        assert_eq!(answer.status, 403);
        assert_eq!(answer.json().unwrap()["error"], "untrusted_publisher");
    }
    // A trusted module published after the refusals reaches everyone; the refused one did not.
    let answer = publish(&a, &bundle(&trusted, fixture("echo.wat"), "good", 1)).await;
    assert_eq!(answer.status, 201);
    for node in [&a, &b, &c] {
        node.wait_ready("good").await;
        assert_eq!(node.version_of("evil"), None);
    }
    assert_eq!(invoke(&b, "evil", b"x").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_later_gets_every_module() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    for (name, wat) in [
        ("echo", "echo.wat"),
        ("rev", "reverse.wat"),
        ("wasi", "wasi_echo.wat"),
    ] {
        assert_eq!(
            publish(&a, &bundle(&p, fixture(wat), name, 1)).await.status,
            201
        );
        b.wait_ready(name).await;
    }
    let late = TestNode::start(&[p.public()], &[&b]).await;
    for name in ["echo", "rev", "wasi"] {
        late.wait_ready(name).await;
    }
    let answer = invoke(&late, "wasi", b"late but complete").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"late but complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_two_replaces_version_one_and_one_cannot_come_back() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    let c = TestNode::start(&[p.public()], &[&a]).await;
    let v1 = bundle(&p, fixture("echo.wat"), "svc", 1);
    let v2 = bundle(&p, fixture("reverse.wat"), "svc", 2);

    assert_eq!(publish(&a, &v1).await.status, 201);
    for node in [&a, &b, &c] {
        node.wait_ready("svc@1").await;
    }
    assert_eq!(publish(&b, &v2).await.status, 201);
    for node in [&a, &b, &c] {
        node.wait_ready("svc@2").await;
    }
    assert_eq!(invoke(&c, "svc", b"abc").await.body, b"cba");

    for via in [&a, &c] {
        let answer = publish(via, &v1).await;
        assert_eq!(answer.status, 409, "{:?}", answer.json().unwrap());
        assert_eq!(answer.json().unwrap()["error"], "not_newer");
    }
    for node in [&a, &b, &c] {
        assert_eq!(node.version_of("svc"), Some(2));
    }
    // The superseded blob was collected.
    let old = wasmesh_protocol::ContentHash::of(&v1.module).to_string();
    assert!(!a.dir.join("blobs").join(old).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_provider_is_detected_and_the_blob_comes_from_another() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let liar = TestNode::start(&[p.public()], &[&a]).await;
    let published = bundle(&p, fixture("reverse.wat"), "rev", 1);
    let hash = wasmesh_protocol::ContentHash::of(&published.module);
    assert_eq!(publish(&a, &published).await.status, 201);
    liar.wait_ready("rev").await;

    // The liar's stored blob is replaced by other bytes of the same size; it still says ready.
    let blob_path = liar.dir.join("blobs").join(hash.to_string());
    let size = std::fs::metadata(&blob_path).unwrap().len() as usize;
    std::fs::write(&blob_path, vec![0x42u8; size]).unwrap();
    a.node.shutdown().await;

    let c = TestNode::start(&[p.public()], &[&liar]).await;
    wait_until_async("the newcomer detects the lie", MESH_DEADLINE, || async {
        c.node.metrics().rejections_of(Rejection::BlobHashMismatch) >= 1
    })
    .await;
    assert!(!c.is_ready("rev"));
    let c_blob = c.dir.join("blobs").join(hash.to_string());
    assert!(!c_blob.exists(), "an unverified blob was stored");

    // An honest provider comes back: the newcomer gets the real blob from it.
    let a = a.restart(&[p.public()], &[&liar, &c]).await;
    c.wait_ready("rev").await;
    let stored = std::fs::read(&c_blob).unwrap();
    assert_eq!(wasmesh_protocol::ContentHash::of(&stored), hash);
    assert_eq!(invoke(&c, "rev", b"truth").await.body, b"hturt");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_node_leaves_the_others_serving_and_it_restarts_from_its_own_store() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    let c = TestNode::start(&[p.public()], &[&a]).await;
    assert_eq!(
        publish(&a, &bundle(&p, fixture("reverse.wat"), "rev", 1))
            .await
            .status,
        201
    );
    assert_eq!(
        publish(&a, &bundle(&p, fixture("wasi_echo.wat"), "wasi", 1))
            .await
            .status,
        201
    );
    for node in [&a, &b, &c] {
        node.wait_ready("rev").await;
        node.wait_ready("wasi").await;
    }

    b.node.shutdown().await;
    assert_eq!(invoke(&a, "rev", b"ab").await.body, b"ba");
    assert_eq!(invoke(&c, "rev", b"cd").await.body, b"dc");

    // Restarted alone: no peers, everything from its own store and artifact cache.
    let b = b.restart(&[p.public()], &[]).await;
    b.wait_ready("rev").await;
    b.wait_ready("wasi").await;
    assert_eq!(
        b.node.metrics().modules_compiled.get(),
        0,
        "recompiled after restart"
    );
    assert_eq!(b.node.metrics().modules_loaded.get(), 2);
    assert_eq!(invoke(&b, "wasi", b"back").await.body, b"back");
}

/// A stopped node gives its QUIC port back at once, though its connections to peers are still
/// closing (a few probe timeouts): a node restarted in the same process binds the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_releases_its_quic_port_at_once() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    assert_eq!(
        publish(&a, &bundle(&p, fixture("reverse.wat"), "rev", 1))
            .await
            .status,
        201
    );
    // B fetched the blob from A: the two have a QUIC connection.
    b.wait_ready("rev").await;
    let port = a.node.quic_addr();
    a.node.shutdown().await;
    let rebound = std::net::UdpSocket::bind(port);
    assert!(rebound.is_ok(), "{port} still bound: {rebound:?}");
    drop(b);
}

/// Each node counts its traffic by kind: the blob's bytes once on each side, sync both ways,
/// every status copy gossip delivered, and the libp2p transport's bytes; `/metrics` shows
/// the same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_counts_its_traffic_by_kind() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    let wasm = fixture("reverse.wat");
    let published = bundle(&p, wasm, "rev", 1);
    let size = published.manifest.manifest.size;
    assert_eq!(publish(&a, &published).await.status, 201);
    b.wait_ready("rev").await;
    // Statuses go out every status interval; wait for one of each side's to arrive.
    wait_until_async("statuses counted", MESH_DEADLINE, || async {
        [&a, &b]
            .iter()
            .all(|n| n.node.metrics().traffic().status.received_messages > 0)
    })
    .await;

    let (sent, received) = (a.node.metrics().traffic(), b.node.metrics().traffic());
    assert_eq!(sent.blob.sent_bytes, size);
    assert_eq!(received.blob.received_bytes, size);
    assert_eq!(sent.blob.received_bytes + received.blob.sent_bytes, 0);
    for traffic in [&sent, &received] {
        assert!(traffic.sync.sent_messages > 0 && traffic.sync.received_messages > 0);
        assert!(traffic.sync.sent_bytes > 0 && traffic.sync.received_bytes > 0);
        assert!(traffic.status.sent_bytes > 0 && traffic.status.received_bytes > 0);
        // The transport carries every message body, plus framing and gossip control.
        assert!(traffic.control_plane.received_bytes >= traffic.status.received_bytes);
        assert!(traffic.control_plane.sent_bytes >= traffic.status.sent_bytes);
        assert_eq!(
            traffic.invoke.sent_messages + traffic.invoke.received_messages,
            0
        );
    }
    assert!(received.manifest.received_messages + received.sync.received_messages > 0);
    let exposition = b.node.metrics().encode();
    assert!(
        exposition.contains("wasmesh_traffic_bytes_total{kind=\"Blob\",direction=\"Received\"}")
    );
    assert!(exposition.contains("_bandwidth_bytes_total{"));
}
