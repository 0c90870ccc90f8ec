//! One forwarded request, traced across two real `wasmesh node run` processes that export to a
//! receiver in this test (built on the official OTLP protobuf definitions): the trace the client
//! started with its `traceparent` header holds the spans of both nodes, and the executing
//! node's spans hang under the forwarding node's `forward` span. The nodes sample nothing of
//! their own accord, so the trace is there because the caller's `traceparent` said to record it.
//! And clients cannot make a node record every request: their sampled flag counts within a
//! rate, and what they send becomes an attribute only in part.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use support::fixture_path;
use support::process::{self, NodeProcess};
use support::wait::{DEADLINE, wait_until};

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    node: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    /// Its string attributes.
    attributes: Vec<(String, String)>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut spans = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let node = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.instance.id")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(id) => Some(id.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attributes = span
                .attributes
                .iter()
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(text) => Some((kv.key.clone(), text.clone())),
                    _ => None,
                })
                .collect();
            spans.push(Received {
                node: node.clone(),
                name: span.name,
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                attributes,
            });
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// Starts the receiver on 127.0.0.1; its base URL.
fn start_receiver(spans: Spans) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans);
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, runtime)
}

#[test]
fn a_forwarded_request_is_one_trace_across_both_nodes() {
    let spans: Spans = Arc::default();
    let (collector, _receiver) = start_receiver(spans.clone());
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    // Nothing is sampled unless the caller says so: the trace below is the client's decision.
    let otlp = [
        "--otlp-endpoint",
        collector.as_str(),
        "--trace-sample-ratio",
        "0",
    ];
    // Export every 100 ms rather than every 5 s.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let holder = NodeProcess::start_with_env(&dir.path().join("b"), &public, &[], &otlp, &env);
    let mut router_flags = vec!["--replicate", "none"];
    router_flags.extend(otlp);
    let router = NodeProcess::start_with_env(
        &dir.path().join("a"),
        &public,
        &[&holder],
        &router_flags,
        &env,
    );
    process::publish(dir.path(), &key, &holder, &fixture_path("echo.wat"), "echo");
    wait_until("the router knows the holder has echo", DEADLINE, || {
        router.providers_of("echo") == 1
    });

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let gateway = router.gateway(Duration::from_secs(30));
    let answer = gateway
        .post(
            "/v1/invoke/echo",
            b"traced",
            &[("traceparent", &traceparent)],
        )
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"traced");

    let wanted = hex(trace_id);
    let of_trace = || -> Vec<Received> {
        let spans = spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == wanted)
            .cloned()
            .collect()
    };
    let names_on = |spans: &[Received], node: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.node == node)
            .map(|s| s.name.clone())
            .collect()
    };
    wait_until("both nodes' spans of the trace arrive", DEADLINE, || {
        let spans = of_trace();
        let router_names = names_on(&spans, &router.peer_id);
        let holder_names = names_on(&spans, &holder.peer_id);
        ["gateway", "route", "forward"]
            .iter()
            .all(|n| router_names.iter().any(|r| r == n))
            && ["remote", "queue", "execute", "reply"]
                .iter()
                .all(|n| holder_names.iter().any(|h| h == n))
    });

    let spans = of_trace();
    let by_id: HashMap<Vec<u8>, &Received> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let find = |node: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.node == node && s.name == name)
            .unwrap_or_else(|| panic!("no {name} span from {node}: {spans:?}"))
    };
    let gateway = find(&router.peer_id, "gateway");
    assert_eq!(
        gateway.parent_span_id,
        hex("00f067aa0ba902b7"),
        "the gateway span continues the client's span"
    );
    let forward = find(&router.peer_id, "forward");
    let remote = find(&holder.peer_id, "remote");
    assert_eq!(
        remote.parent_span_id, forward.span_id,
        "the executing node's span is a child of the forward"
    );
    let execute = find(&holder.peer_id, "execute");
    let parent_of_execute = by_id
        .get(&execute.parent_span_id)
        .expect("execute has its parent in the trace");
    assert_eq!(parent_of_execute.name, "remote");
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A client that marks every request as sampled gets at most `--client-traces-per-second` of
/// them recorded, and a module reference of 10,000 characters becomes an attribute of 131.
#[test]
fn clients_cannot_make_a_node_record_every_request() {
    let spans: Spans = Arc::default();
    let (collector, _receiver) = start_receiver(spans.clone());
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let flags = [
        "--otlp-endpoint",
        collector.as_str(),
        "--trace-sample-ratio",
        "0",
        "--client-traces-per-second",
        "5",
    ];
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let node = NodeProcess::start_with_env(&dir.path().join("n"), &public, &[], &flags, &env);
    process::publish(dir.path(), &key, &node, &fixture_path("echo.wat"), "echo");
    wait_until("echo is ready", DEADLINE, || node.is_ready("echo"));
    let gateway = node.gateway(Duration::from_secs(30));
    let traced = |n: u32, path: &str| {
        let traceparent = format!("00-{n:032x}-00f067aa0ba902b7-01");
        gateway
            .post(
                &format!("/v1/invoke/{path}"),
                b"x",
                &[("traceparent", &traceparent)],
            )
            .unwrap()
            .status
    };
    let started = std::time::Instant::now();
    for n in 1..=100 {
        assert_eq!(traced(n, "echo"), 200);
    }
    let flood_secs = started.elapsed().as_secs_f64();
    // The rate refills: a request a second later is recorded, and arrives after the flood's.
    std::thread::sleep(Duration::from_millis(1_100));
    let long = "a".repeat(10_000);
    traced(1_000, &long);
    let gateway_of = |n: u32| {
        let id = hex(&format!("{n:032x}"));
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.trace_id == id && s.name == "gateway")
            .cloned()
    };
    wait_until("the last request's trace arrives", DEADLINE, || {
        gateway_of(1_000).is_some()
    });
    let recorded = (1..=100).filter(|n| gateway_of(*n).is_some()).count();
    let allowed = 5 + (5.0 * flood_secs).ceil() as usize;
    println!("{recorded} of 100 client-sampled requests recorded in {flood_secs:.2} s");
    assert!(
        recorded >= 1 && recorded <= allowed,
        "{recorded} recorded, at most {allowed}"
    );
    let module = gateway_of(1_000)
        .unwrap()
        .attributes
        .into_iter()
        .find(|(k, _)| k == "module")
        .map(|(_, v)| v)
        .unwrap_or_default();
    assert_eq!(module.chars().count(), 131, "{module}");
}
