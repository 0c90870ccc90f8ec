//! Publishers against each other, on real nodes: a name belongs to the first publisher a node
//! accepted it from, so a second trusted publisher cannot take it over; a key scoped to some
//! names publishes only those, and keys the operator scoped to one name share it, each reached
//! by `name~<key prefix>`; and a publisher that signs two blobs under one version gets the same
//! one kept on every node.

use wasmesh_keys::TrustEntry;
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::ContentHash;
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, invoke, publish, publisher, wait_until_async,
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
        let reason = takeover.json().unwrap();
        assert_eq!(reason["error"], "name_owned");
        let owner_hex = owner.public().to_string();
        assert!(
            reason["message"].as_str().unwrap().contains(&owner_hex),
            "{reason}"
        );
        assert!(node.node.metrics().rejections_of(Rejection::NameOwned) >= 1);
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

/// Starts a node trusting `entries` (`HEX` or `HEX=names`).
async fn node_trusting(entries: &[String], bootstrap: &[&TestNode]) -> TestNode {
    let trust: Vec<TrustEntry> = entries.iter().map(|e| e.parse().unwrap()).collect();
    TestNode::start_with(&[], bootstrap, move |config| config.trust = trust).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scoped_key_publishes_only_the_names_in_its_scope() {
    let (owner, images) = (publisher(1), publisher(2));
    let trust = [
        owner.public().to_string(),
        format!("{}=img-*", images.public()),
    ];
    let a = node_trusting(&trust, &[]).await;
    let b = node_trusting(&trust, &[&a]).await;

    let outside = publish(&a, &bundle(&images, fixture("echo.wat"), "echo", 1)).await;
    assert_eq!(
        outside.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&outside.body)
    );
    assert_eq!(outside.json().unwrap()["error"], "name_out_of_scope");
    assert_eq!(a.node.metrics().rejections_of(Rejection::NameOutOfScope), 1);

    let inside = publish(&a, &bundle(&images, fixture("reverse.wat"), "img-flip", 1)).await;
    assert_eq!(inside.status, 201);
    b.wait_ready("img-flip").await;
    // The refused one reached nobody: the owner can still take the name.
    let echo = publish(&b, &bundle(&owner, fixture("echo.wat"), "echo", 1)).await;
    assert_eq!(echo.status, 201);
    a.wait_ready("echo").await;
    assert_eq!(a.version_of("echo"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_scoped_to_one_name_share_it_and_references_pick_the_publisher() {
    let (owner, second) = (publisher(1), publisher(2));
    let trust = [
        owner.public().to_string(),
        format!("{}=echo", second.public()),
    ];
    let a = node_trusting(&trust, &[]).await;
    let b = node_trusting(&trust, &[&a]).await;
    assert_eq!(
        publish(&a, &bundle(&owner, fixture("echo.wat"), "echo", 1))
            .await
            .status,
        201
    );
    b.wait_ready("echo").await;
    // The operator named `echo` in the second key's scope: it may publish the name beside its
    // owner, even at a higher version.
    let shared = publish(&b, &bundle(&second, fixture("reverse.wat"), "echo", 7)).await;
    assert_eq!(
        shared.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&shared.body)
    );
    let second_ref = format!("echo~{}", &second.public().to_string()[..12]);
    let owner_ref = format!("echo~{}@1", &owner.public().to_string()[..8]);
    a.wait_ready(&second_ref).await;
    for node in [&a, &b] {
        // A bare name is the owner's module.
        let plain = invoke(node, "echo", b"abc").await;
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"abc"[..]));
        let by_owner = invoke(node, &owner_ref, b"abc").await;
        assert_eq!(
            (by_owner.status, by_owner.body.as_slice()),
            (200, &b"abc"[..])
        );
        let by_second = invoke(node, &second_ref, b"abc").await;
        assert_eq!(
            (by_second.status, by_second.body.as_slice()),
            (200, &b"cba"[..])
        );
    }
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
    wait_until_async("both nodes keep the lower hash", MESH_DEADLINE, || async {
        [&a, &b]
            .iter()
            .all(|n| n.node.blob_of(&"twice".parse().unwrap()) == Some(lower))
    })
    .await;
    let seen: u64 = [&a, &b]
        .iter()
        .map(|n| n.node.metrics().rejections_of(Rejection::EquivocationSeen))
        .sum();
    assert!(seen >= 1, "the equivocation was not counted");
}
