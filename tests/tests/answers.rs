//! What a node believes about who holds a module and what it answers, against holders that lie
//! (`wasmesh_tests::liar`): a claim to hold a blob is routed to only once proved, a signed
//! forgery is caught by a spot check and its signer never routed to again, and a client that
//! asks for agreement gets only an answer two holders gave.

use wasmesh_node::config::Replicate;
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::ContentHash;
use wasmesh_tests::liar::{FORGED, Signing, lying_holder};
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, invoke, publish, publisher, wait_until_async,
};

/// Honest holders A and B, and a router R that replicates nothing and checks every forwarded
/// answer (`spot_check_rate` 1); `echo` published through A and ready on both.
async fn two_holders_and_a_router() -> (TestNode, TestNode, TestNode, Vec<u8>) {
    let p = publisher(1);
    let a = TestNode::start(&[p.public()], &[]).await;
    let b = TestNode::start(&[p.public()], &[&a]).await;
    let r = TestNode::start_with(&[p.public()], &[&a, &b], |config| {
        config.replicate = Replicate::None;
        config.spot_check_rate = Some(1.0);
    })
    .await;
    let published = bundle(&p, fixture("echo.wat"), "echo", 1);
    assert_eq!(publish(&a, &published).await.status, 201);
    b.wait_ready("echo").await;
    wait_until_async("R serves echo", MESH_DEADLINE, || async {
        invoke(&r, "echo", b"warm").await.status == 200
    })
    .await;
    (a, b, r, published.module)
}

/// A peer that claims to hold the blob without holding it never proves it, and is never
/// routed to, however attractive its claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_holder_that_cannot_prove_it_is_never_routed_to() {
    let (_a, _b, r, module) = two_holders_and_a_router().await;
    let hash = ContentHash::of(&module);
    let liar = lying_holder(61, &r, hash, None, Signing::Receipt).await;
    for i in 0..30u8 {
        let answer = invoke(&r, "echo", &[i]).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &[i][..]));
        assert_ne!(
            answer.header("x-wasmesh-executed-by"),
            Some(liar.peer_id.to_string().as_str())
        );
    }
    wait_until_async("the failed proof is counted", MESH_DEADLINE, || async {
        r.node
            .metrics()
            .rejections_of(Rejection::PossessionUnproven)
            >= 1
    })
    .await;
}

/// A peer that holds the blob (it proves possession) and signs valid receipts of forged
/// answers gets requests, but a spot check runs each again on the honest holders: the first
/// forgery it signs is contradicted by both, and it is never routed to again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_signs_forged_answers_is_caught_by_spot_checks() {
    let (_a, _b, r, module) = two_holders_and_a_router().await;
    let hash = ContentHash::of(&module);
    let liar = lying_holder(62, &r, hash, Some(&module), Signing::Receipt).await;
    let liar_id = liar.peer_id.to_string();
    let forged = std::sync::atomic::AtomicUsize::new(0);
    wait_until_async("the liar is caught", MESH_DEADLINE, || async {
        let answer = invoke(&r, "echo", b"who").await;
        if answer.body == FORGED {
            assert_eq!(
                answer.header("x-wasmesh-executed-by"),
                Some(liar_id.as_str())
            );
            forged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r.node
            .metrics()
            .rejections_of(Rejection::ReceiptContradicted)
            >= 1
    })
    .await;
    let forged = forged.into_inner();
    println!("the liar answered {forged} requests before it was caught");
    for i in 0..30u8 {
        let answer = invoke(&r, "echo", &[i]).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &[i][..]));
    }
    assert_eq!(
        r.node
            .metrics()
            .rejections_of(Rejection::ReceiptContradicted),
        1
    );
}

/// A client that asks for two holders to agree gets the answer the honest holders gave, even
/// when the liar answers first, and the liar, outvoted, is not routed to again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_asking_for_agreement_gets_only_an_agreed_answer() {
    let (a, _b, r, module) = two_holders_and_a_router().await;
    let hash = ContentHash::of(&module);
    let _liar = lying_holder(63, &r, hash, Some(&module), Signing::Receipt).await;
    for i in 0..10u8 {
        let answer = wasmesh_tests::gateway::post(
            &r.url(),
            "/v1/invoke/echo",
            vec![i],
            &[("x-wasmesh-agree", "2")],
        )
        .await;
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &[i][..]),
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    // More holders than may be asked, or a WASI module, whose answers may differ by design:
    // refused.
    let too_many = wasmesh_tests::gateway::post(
        &r.url(),
        "/v1/invoke/echo",
        Vec::new(),
        &[("x-wasmesh-agree", "9")],
    )
    .await;
    assert_eq!(too_many.json().unwrap()["error"], "bad_agreement");
    let p = publisher(1);
    let wasi = bundle(&p, fixture("wasi_echo.wat"), "wasi-echo", 1);
    assert_eq!(publish(&a, &wasi).await.status, 201);
    wait_until_async("R knows wasi-echo", MESH_DEADLINE, || async {
        r.version_of("wasi-echo") == Some(1)
    })
    .await;
    let refused = wasmesh_tests::gateway::post(
        &r.url(),
        "/v1/invoke/wasi-echo",
        Vec::new(),
        &[("x-wasmesh-agree", "2")],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json().unwrap()["error"], "not_deterministic");
}
