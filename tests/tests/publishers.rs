//! Publishers against each other, on real nodes: a name belongs to the first publisher a node
//! accepted it from, so a second trusted publisher cannot take it over; and a publisher that
//! signs two blobs under one version gets the same one kept on every node.

use wasmesh_protocol::ContentHash;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, invoke, publish, publisher, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_publisher_cannot_take_over_a_name() {
    let (owner, rival) = (publisher(1), publisher(2));
    let trust = [owner.public(), rival.public()];
    let a = TestNode::start(&trust, &[]).await;
    let b = TestNode::start(&trust, &[&a]).await;
    let first = publish(&a, &bundle(&owner, fixture("echo.wat"), "echo", 1)).await;
    assert_eq!(first.status, 201);
    b.wait_ready("echo").await;

    // The rival's higher version is refused through either node, naming the owner.
    for node in [&a, &b] {
        let takeover = publish(node, &bundle(&rival, fixture("reverse.wat"), "echo", 5)).await;
        assert_eq!(
            takeover.status,
            409,
            "{:?}",
            String::from_utf8_lossy(&takeover.body)
        );
        let reason = takeover.json();
        assert_eq!(reason["error"], "name_owned");
        let owner_hex = owner.public().to_string();
        assert!(
            reason["message"].as_str().unwrap().contains(&owner_hex),
            "{reason}"
        );
        assert!(node.node.metrics().rejections_of("name_owned") >= 1);
    }
    // Requests still run the owner's module everywhere.
    for node in [&a, &b] {
        let answer = invoke(node, "echo", b"abc").await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(node.version_of("echo"), Some(1));
    }
    // Another name is the rival's to take.
    let own_name = publish(&b, &bundle(&rival, fixture("reverse.wat"), "rev", 1)).await;
    assert_eq!(own_name.status, 201);
    a.wait_ready("rev").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_blobs_under_one_version_converge_on_the_lower_hash() {
    let keys = publisher(1);
    let a = TestNode::start(&[keys.public()], &[]).await;
    let b = TestNode::start(&[keys.public()], &[&a]).await;
    let (echo, reverse) = (fixture("echo.wat"), fixture("reverse.wat"));
    let lower = ContentHash::of(&echo).min(ContentHash::of(&reverse));

    let first = publish(&a, &bundle(&keys, echo, "twice", 2)).await;
    assert_eq!(first.status, 201);
    b.wait_ready("twice").await;
    // The same version with the other blob, through the other node: accepted only if its hash
    // is lower; either way both nodes end with the lower one.
    let second = publish(&b, &bundle(&keys, reverse, "twice", 2)).await;
    assert!(
        [201, 409].contains(&second.status),
        "{:?}",
        String::from_utf8_lossy(&second.body)
    );
    wait_until("both nodes keep the lower hash", MESH_DEADLINE, || async {
        [&a, &b]
            .iter()
            .all(|n| n.node.blob_of(&"twice".parse().unwrap()) == Some(lower))
    })
    .await;
    let seen: u64 = [&a, &b]
        .iter()
        .map(|n| n.node.metrics().rejections_of("equivocation_seen"))
        .sum();
    assert!(seen >= 1, "the equivocation was not counted");
}
