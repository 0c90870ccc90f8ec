//! What a node keeps on disk, under damage and limits: a stored manifest that no longer decodes
//! stops the restart with a clear error instead of silently dropping that module's version floor,
//! and a publish that would exceed the blob quota is refused.

use wasmesh_node::config::NodeConfig;
use wasmesh_node::daemon::Node;
use wasmesh_tests::{TestNode, bundle, fixture, publish, publisher};

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
    assert_eq!(answer.json()["error"], "over_quota");
    assert!(!node.is_ready("echo"));
    assert_eq!(node.node.metrics().rejections_of("publish_over_quota"), 1);
}
