//! Routing end to end: any node answers; requests run on a holder, fail over when one dies,
//! spread under load, and fail fast with clear errors when nothing can run them.

use std::time::{Duration, Instant};

use wasmesh_node::config::Replicate;
use wasmesh_tests::{TestNode, bundle, fixture, invoke, publish, publisher};

/// Holders A and B, and C which replicates nothing; `wat` published as `name` through A, and C
/// aware that both A and B hold it.
/// Holders A and B and a router C that replicates nothing. The holders join through C, so C
/// is a peer they chose, not a stranger whose forwards get a stranger's small share.
async fn two_holders_and_a_router(wat: &str, name: &str) -> (TestNode, TestNode, TestNode) {
    let p = publisher(1);
    let c = TestNode::start_with(&[p.public()], &[], |config| {
        config.replicate = Replicate::None
    })
    .await;
    let a = TestNode::start(&[p.public()], &[&c]).await;
    let b = TestNode::start(&[p.public()], &[&c, &a]).await;
    assert_eq!(
        publish(&a, &bundle(&p, fixture(wat), name, 1)).await.status,
        201
    );
    b.wait_ready(name).await;
    wasmesh_tests::wait_until_async(
        "C knows both holders",
        wasmesh_tests::MESH_DEADLINE,
        || async {
            let modules = wasmesh_tests::gateway::get(&c.url(), "/v1/modules")
                .await
                .json()
                .unwrap();
            modules[0]["providers"].as_array().map_or(0, Vec::len) == 2
        },
    )
    .await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_the_module_forwards_to_a_holder_with_failover() {
    let (a, b, c) = two_holders_and_a_router("reverse.wat", "rev").await;
    assert!(!c.is_ready("rev"), "C replicated a module it should not");

    let via_a = invoke(&a, "rev", b"abc").await;
    assert_eq!(via_a.body, b"cba");
    assert_eq!(via_a.header("x-wasmesh-route"), Some("local"));
    assert_eq!(
        via_a.header("x-wasmesh-executed-by"),
        Some(a.node.peer_id().to_string().as_str())
    );

    let peers = wasmesh_tests::gateway::get(&a.url(), "/v1/peers")
        .await
        .json()
        .unwrap();
    let me = a.node.peer_id().to_string();
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["peer_id"] != me.as_str()),
        "a node lists itself among its peers: {peers}"
    );

    let via_c = invoke(&c, "rev", b"abc").await;
    assert_eq!(via_c.status, 200);
    assert_eq!(via_c.body, b"cba");
    assert_eq!(via_c.header("x-wasmesh-route"), Some("forwarded"));
    let served_by = via_c.header("x-wasmesh-executed-by").unwrap().to_owned();
    let (killed, survivor) = if served_by == a.node.peer_id().to_string() {
        (&a, &b)
    } else {
        assert_eq!(served_by, b.node.peer_id().to_string());
        (&b, &a)
    };
    assert!(via_c.header("server-timing").unwrap().contains("net;dur="));

    // Kill the holder that served C: the next requests succeed on the other one.
    killed.node.shutdown().await;
    let mut ok = 0;
    for i in 0..20u8 {
        let answer = invoke(&c, "rev", &[b'a', i]).await;
        if answer.status == 200 {
            assert_eq!(answer.body, [i, b'a']);
            assert_eq!(
                answer.header("x-wasmesh-executed-by"),
                Some(survivor.node.peer_id().to_string().as_str())
            );
            ok += 1;
        }
    }
    assert!(ok >= 19, "only {ok} of 20 succeeded after the kill");

    // No holder left: a prompt 503 with a JSON error.
    survivor.node.shutdown().await;
    let started = Instant::now();
    let answer = invoke(&c, "rev", b"anyone?").await;
    assert_eq!(
        answer.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json().unwrap()["error"], "no_provider");
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_modules_and_oversized_inputs_are_refused() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let mut small = bundle(&p, fixture("echo.wat"), "small", 1);
    small.manifest.manifest.limits.max_input = 16;
    let small = bundle_with_limits(&p, small);
    assert_eq!(publish(&a, &small).await.status, 201);
    assert_eq!(invoke(&a, "nothing-here", b"x").await.status, 404);
    assert_eq!(
        invoke(&a, "nothing-here", b"x").await.json().unwrap()["error"],
        "unknown_module"
    );
    let answer = invoke(&a, "small", &[0u8; 17]).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json().unwrap()["error"], "input_too_large");
    assert_eq!(invoke(&a, "small", &[0u8; 16]).await.status, 200);
}

/// Re-signs a bundle after its manifest was edited.
fn bundle_with_limits(
    keys: &wasmesh_protocol::Keypair,
    edited: wasmesh_protocol::PublishBundle,
) -> wasmesh_protocol::PublishBundle {
    wasmesh_protocol::PublishBundle {
        manifest: edited.manifest.manifest.sign(keys),
        module: edited.module,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_that_saturates_one_holder_spreads_to_the_other() {
    let (_a, _b, c) = two_holders_and_a_router("spin.wat", "spin").await;

    let requests: Vec<_> = (0..48u8)
        .map(|i| {
            let url = c.url();
            tokio::spawn(async move {
                wasmesh_tests::gateway::post(&url, "/v1/invoke/spin", vec![i], &[]).await
            })
        })
        .collect();
    let mut served_by = std::collections::HashMap::new();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        *served_by
            .entry(answer.header("x-wasmesh-executed-by").unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(
        served_by.len(),
        2,
        "all requests went to one holder: {served_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_over_its_blob_quota_routes_instead_of_replicating() {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let tight =
        TestNode::start_with(&[p.public()], &[&a], |config| config.blob_quota = Some(100)).await;
    let published = bundle(&p, fixture("reverse.wat"), "rev", 1);
    assert!(published.module.len() > 100);
    assert_eq!(publish(&a, &published).await.status, 201);
    wasmesh_tests::wait_until_async(
        "the tight node forwards",
        wasmesh_tests::MESH_DEADLINE,
        || async { invoke(&tight, "rev", b"ab").await.status == 200 },
    )
    .await;
    let answer = invoke(&tight, "rev", b"ab").await;
    assert_eq!(answer.body, b"ba");
    assert_eq!(answer.header("x-wasmesh-route"), Some("forwarded"));
    assert!(!tight.is_ready("rev"));
    let hash = wasmesh_protocol::ContentHash::of(&published.module).to_string();
    assert!(!tight.dir.join("blobs").join(hash).exists());
}
