//! What a node keeps on disk, under damage and limits: a stored manifest that no longer decodes
//! stops the restart with a clear error instead of silently dropping that module's version floor;
//! a publish that would exceed the blob quota is refused; and a node without room on its disk
//! fetches nothing, says why, and waits.

use wasmesh_node::config::NodeConfig;
use wasmesh_node::daemon::Node;
use wasmesh_node::rejection::Rejection;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, publish, publisher, wait_until_async,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_stored_manifest_stops_the_restart_and_names_the_file() {
    let keys = publisher(1);
    let node = TestNode::start(&[keys.public()], &[]).await;
    let answer = publish(&node, &bundle(&keys, fixture("echo.wat"), "echo", 4)).await;
    assert_eq!(answer.status, 201);
    node.node.shutdown().await;

    let manifest = node
        .dir
        .join("manifests")
        .join(keys.public().to_string())
        .join("echo.manifest");
    std::fs::write(&manifest, b"not a manifest").unwrap();
    let mut config = NodeConfig::local(&node.dir);
    config.trust = vec![keys.public().into()];
    let error = Node::start(config).await.unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains(&manifest.display().to_string()), "{text}");
    assert!(text.contains("move it away"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_over_the_blob_quota_is_refused() {
    let keys = publisher(1);
    let node = TestNode::start_with(&[keys.public()], &[], |config| {
        config.blob_quota = Some(16);
    })
    .await;
    let answer = publish(&node, &bundle(&keys, fixture("echo.wat"), "echo", 1)).await;
    assert_eq!(
        answer.status,
        507,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json().unwrap()["error"], "over_quota");
    assert!(!node.is_ready("echo"));
    assert_eq!(
        node.node
            .metrics()
            .rejections_of(Rejection::PublishOverQuota),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_room_on_its_disk_fetches_nothing_and_waits() {
    let keys = publisher(1);
    let a = TestNode::start(&[keys.public()], &[]).await;
    // B keeps more disk free than any disk has: every blob is a shortfall.
    let b = TestNode::start_with(&[keys.public()], &[&a], |config| {
        config.min_free_disk = u64::MAX / 2;
    })
    .await;
    assert_eq!(
        publish(&a, &bundle(&keys, fixture("echo.wat"), "echo", 1))
            .await
            .status,
        201
    );
    wait_until_async("B finds no room for the blob", MESH_DEADLINE, || async {
        b.node.metrics().rejections_of(Rejection::DiskFull) >= 1
    })
    .await;
    assert_eq!(
        b.node.metrics().blobs_fetched.get(),
        0,
        "B downloaded a blob it has no room for"
    );
    assert!(!b.is_ready("echo"));
    // B knows the module and routes requests for it to A meanwhile.
    wait_until_async("B serves the module from A", MESH_DEADLINE, || async {
        let answer = wasmesh_tests::invoke(&b, "echo", b"abc").await;
        (answer.status, answer.body.as_slice()) == (200, &b"abc"[..])
    })
    .await;
    // A served B nothing but the one chunk group B checked A holds the blob with, which B
    // verified and dropped.
    assert!(a.node.metrics().blobs_served.get() <= 1);
    assert_eq!(b.node.metrics().blobs_fetched.get(), 0);

    // A publish to B is refused the same way, with 507.
    let refused = publish(&b, &bundle(&keys, fixture("reverse.wat"), "rev", 1)).await;
    assert_eq!(
        refused.status,
        507,
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.json().unwrap()["error"], "disk_full");
}
