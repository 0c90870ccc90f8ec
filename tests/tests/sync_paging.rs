//! Sync beyond one response: a node holding more manifests than a sync response may carry hands
//! every one of them to a newcomer, a page at a time.

use wasmesh_node::config::Replicate;
use wasmesh_protocol::wire::MAX_SYNC_MANIFESTS;
use wasmesh_protocol::{Abi, ContentHash, Limits, Manifest};
use wasmesh_tests::{MESH_DEADLINE, TestNode, gateway, publisher, wait_until_async};

async fn modules_held(node: &TestNode) -> u64 {
    gateway::get(&node.url(), "/v1/status")
        .await
        .json()
        .unwrap()["modules"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newcomer_gets_more_manifests_than_one_sync_response_holds() {
    let p = publisher(1);
    let count = MAX_SYNC_MANIFESTS + 200;
    // The old node's store holds the manifests already (as files, the store's layout): it
    // restores them at start. Neither node replicates, so no blob is fetched.
    let holder = TestNode::start_with(&[p.public()], &[], |config| {
        config.replicate = Replicate::None;
        let dir = config
            .data_dir
            .join("manifests")
            .join(p.public().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            let name = format!("m-{i:05}");
            let signed = Manifest {
                name: name.clone(),
                version: 1,
                blob: ContentHash::of(name.as_bytes()),
                size: 8,
                abi: Abi::Raw,
                limits: Limits::default(),
                publisher: p.public(),
                issued_at_ms: 1,
            }
            .sign(&p);
            std::fs::write(dir.join(format!("{name}.manifest")), signed.encode()).unwrap();
        }
    })
    .await;
    assert_eq!(modules_held(&holder).await, count as u64);

    let newcomer = TestNode::start_with(&[p.public()], &[&holder], |config| {
        config.replicate = Replicate::None;
    })
    .await;
    wait_until_async(
        "the newcomer holds every manifest",
        MESH_DEADLINE,
        || async { modules_held(&newcomer).await == count as u64 },
    )
    .await;
    assert_eq!(newcomer.version_of(&format!("m-{:05}", count - 1)), Some(1));
}
