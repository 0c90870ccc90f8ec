//! Overload is answered, not queued: with every slot busy and the queue full, a request gets
//! `503` of kind `busy` with `Retry-After` at once, and the node serves normally afterwards.

use wasmesh_tests::{TestNode, bundle, fixture, invoke, publish, publisher};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_busy_with_retry_after() {
    let keys = publisher(1);
    // One guest at a time and one waiting: the third concurrent request has no place.
    let node = TestNode::start_with(&[keys.public()], &[], |config| {
        config.executor.max_concurrent = 1;
        config.executor.max_queued = 1;
    })
    .await;
    let published = publish(&node, &bundle(&keys, fixture("spin.wat"), "spin", 1)).await;
    assert_eq!(
        published.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&published.body)
    );

    let requests: Vec<_> = (0..8u8)
        .map(|i| {
            let url = node.url();
            tokio::spawn(async move {
                wasmesh_tests::gateway::post(&url, "/v1/invoke/spin", vec![i], &[]).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let busy: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(busy.len() + ok, answers.len(), "{answers:?}");
    assert!(
        !busy.is_empty(),
        "eight requests fitted one slot and one place"
    );
    assert!(ok >= 1, "{answers:?}");
    for answer in busy {
        assert_eq!(answer.json().unwrap()["error"], "busy");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    // Nothing stays held: the next requests are served.
    for i in 0..3u8 {
        let answer = invoke(&node, "spin", &[i]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, [i]);
    }
}
