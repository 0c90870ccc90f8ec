//! The HTTP gateway (axum): publish, list, invoke, status, peers, health and metrics.
//!
//! Errors are JSON `{"error": kind, "message": text}` with a status that says who is at fault:
//! 400 a malformed request, 403 an untrusted publisher, 404 an unknown module, 409 a version
//! that is not newer, 413 a body over the limit (checked from `content-length` before reading),
//! 422 a refused manifest or module, or a guest failure, 503 no reachable provider or no free
//! slot, 504 the deadline passed. A `503` of kind `busy` carries `Retry-After`: every node that
//! could run the request is at its limit now, and the same request may succeed a second later.
//!
//! How connections are served (limits, timeouts, draining) is [`server`]'s job; the live mesh
//! page at `GET /` is [`page`]'s.

mod page;
pub(crate) mod server;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::Instrument;
use wasmesh_protocol::bundle::MAX_BUNDLE_SIZE;
use wasmesh_protocol::{ModuleRef, PublishBundle};

use crate::core::registry::ModuleState;
use crate::executor::{FailureKind, GuestError};
use crate::node::{NodeInner, Refusal};
use crate::publish::PublishError;
use crate::request::{AGREE_HEADER, Invocation, InvokeError, MAX_AGREE};

type Node = Arc<NodeInner>;

/// The gateway's routes. A request body whose next bytes take longer than `body_timeout` fails.
pub(crate) fn router(node: Node, body_timeout: Duration) -> Router {
    Router::new()
        .route(
            "/v1/publish",
            post(publish).layer(DefaultBodyLimit::max(MAX_BUNDLE_SIZE)),
        )
        .route("/v1/modules", get(modules))
        .route(
            "/v1/invoke/{module_ref}",
            post(invoke).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/stats", get(stats))
        .merge(page::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .with_state(node)
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({ "error": kind, "message": message.to_string() })),
    )
        .into_response()
}

async fn publish(State(node): State<Node>, body: Bytes) -> Response {
    let bundle = match PublishBundle::decode(&body, MAX_BUNDLE_SIZE) {
        Ok(bundle) => bundle,
        Err(e) => {
            node.metrics.count_rejection("publish_malformed");
            return error(StatusCode::BAD_REQUEST, "malformed_bundle", e);
        }
    };
    match node.publish(bundle).await {
        Ok(signed) => {
            let m = &signed.manifest;
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "name": m.name,
                    "version": m.version,
                    "hash": m.blob.to_string(),
                    "abi": m.abi,
                })),
            )
                .into_response()
        }
        Err(e) => {
            let status = match &e {
                PublishError::Refused(
                    Refusal::Invalid(wasmesh_protocol::VerifyError::UntrustedPublisher { .. })
                    | Refusal::OutOfScope { .. },
                ) => StatusCode::FORBIDDEN,
                PublishError::Refused(Refusal::Rollback(_) | Refusal::NameOwned { .. }) => {
                    StatusCode::CONFLICT
                }
                PublishError::Refused(Refusal::Store(_)) => StatusCode::INTERNAL_SERVER_ERROR,
                PublishError::OverQuota { .. } | PublishError::DiskFull { .. } => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                PublishError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error(status, e.kind(), e)
        }
    }
}

async fn modules(State(node): State<Node>) -> Response {
    let view = node.views.load_full();
    let providers = |hash| {
        view.peers
            .values()
            .filter(|p| p.ready.contains(hash))
            .map(|p| p.peer_id.to_string())
            .collect::<Vec<_>>()
    };
    let list: Vec<_> = view
        .registry
        .entries()
        .map(|e| {
            let m = &e.signed.manifest;
            let mut provider_list = providers(&m.blob);
            if e.is_ready() {
                provider_list.insert(0, node.peer_id.to_string());
            }
            let not_runnable = match &e.state {
                ModuleState::NotRunnable(reason) => Some(reason.clone()),
                _ => None,
            };
            json!({
                "name": m.name,
                "version": m.version,
                "publisher": m.publisher.to_string(),
                "hash": m.blob.to_string(),
                "size": m.size,
                "abi": m.abi,
                "limits": m.limits,
                "ready": e.is_ready(),
                "not_runnable": not_runnable,
                "providers": provider_list,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `POST /v1/invoke/{module_ref}`, in a span that continues the caller's trace (`traceparent`).
async fn invoke(
    State(node): State<Node>,
    Path(module_ref): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::debug_span!(
        "gateway",
        module = %crate::telemetry::attribute(&module_ref)
    );
    crate::telemetry::continue_from_headers(&span, &headers);
    serve_invoke(node, module_ref, headers, body)
        .instrument(span)
        .await
}

async fn serve_invoke(node: Node, module_ref: String, headers: HeaderMap, body: Body) -> Response {
    let module_ref: ModuleRef = match module_ref.parse() {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_module_ref", e),
    };
    let Some(limit) = node
        .views
        .load()
        .registry
        .resolve(&module_ref)
        .map(|e| e.signed.manifest.limits.max_input as usize)
    else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_module",
            format!("no module {module_ref} is known here"),
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        node.metrics.count_rejection("input_too_large");
        return error_response_too_large(limit);
    }
    let input = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => return body_failure(&node, &e, limit),
    };
    let started = Instant::now();
    let agree = match agreement(&headers) {
        Ok(agree) => agree,
        Err(response) => return *response,
    };
    let result = match agree {
        Some(wanted) => node.invoke_agreed(&module_ref, input, wanted).await,
        None => node.invoke(&module_ref, input).await,
    };
    let (route, outcome) = route_and_outcome(&result);
    node.metrics
        .observe_request(route, outcome, started.elapsed());
    match result {
        Ok(invocation) => {
            let mut response = Response::new(Body::from(invocation.output.bytes));
            let headers = response.headers_mut();
            let (executed_by, route) = if invocation.local {
                (
                    node.peer_id_header.clone(),
                    HeaderValue::from_static("local"),
                )
            } else {
                let peer = HeaderValue::from_str(&invocation.executed_by.to_string());
                (
                    peer.unwrap_or(HeaderValue::from_static("")),
                    HeaderValue::from_static("forwarded"),
                )
            };
            let exec_ms = invocation.output.exec_time.as_secs_f64() * 1e3;
            let net_ms = invocation.network.as_secs_f64() * 1e3;
            let queue_ms = invocation.queue.as_secs_f64() * 1e3;
            let timing =
                format!("queue;dur={queue_ms:.3}, exec;dur={exec_ms:.3}, net;dur={net_ms:.3}");
            headers.insert(EXECUTED_BY, executed_by);
            headers.insert(ROUTE, route);
            if let Ok(timing) = HeaderValue::from_str(&timing) {
                headers.insert(SERVER_TIMING, timing);
            }
            if let Some(receipt) = invocation.receipt
                && let Ok(value) = HeaderValue::from_str(&hex::encode(receipt.encode()))
            {
                headers.insert(RECEIPT, value);
            }
            response
        }
        Err(InvokeError::UnknownModule(name)) => error(
            StatusCode::NOT_FOUND,
            "unknown_module",
            format!("no module {name}"),
        ),
        Err(e @ InvokeError::NoProvider(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "no_provider", e)
        }
        Err(e @ InvokeError::Busy { .. }) => busy(e),
        Err(InvokeError::Guest(e @ GuestError::Busy { .. })) => busy(e),
        Err(InvokeError::Guest(e)) => {
            tracing::info!(module = %module_ref, error = %e, "guest failed");
            error(status_of_kind(e.kind()), e.kind().as_str(), e)
        }
        Err(InvokeError::RemoteGuest {
            kind,
            message,
            executed_by,
            ..
        }) => {
            let mut response = error(status_of_kind(kind), kind.as_str(), message);
            if let Ok(value) = HeaderValue::from_str(&executed_by.to_string()) {
                response.headers_mut().insert(EXECUTED_BY, value);
            }
            response
        }
        Err(e @ InvokeError::Deadline { .. }) => error(StatusCode::GATEWAY_TIMEOUT, "timeout", e),
        Err(e @ InvokeError::Disagreement { .. }) => {
            error(StatusCode::BAD_GATEWAY, "disagreement", e)
        }
        Err(e @ InvokeError::NotDeterministic(_)) => {
            error(StatusCode::BAD_REQUEST, "not_deterministic", e)
        }
    }
}

/// How many holders must agree on the answer, if the client asked ([`AGREE_HEADER`]).
fn agreement(headers: &HeaderMap) -> Result<Option<usize>, Box<Response>> {
    let Some(value) = headers.get(AGREE_HEADER) else {
        return Ok(None);
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(1) => Ok(None),
        Some(wanted) if (2..=MAX_AGREE).contains(&wanted) => Ok(Some(wanted)),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_agreement",
            format!("{AGREE_HEADER} must be a number from 1 to {MAX_AGREE}"),
        ))),
    }
}

/// Where a request ran (`local`, `forwarded`, or `none`) and how it ended, as metric labels.
fn route_and_outcome(result: &Result<Invocation, InvokeError>) -> (&'static str, &'static str) {
    match result {
        Ok(invocation) if invocation.local => ("local", "ok"),
        Ok(_) => ("forwarded", "ok"),
        Err(InvokeError::Guest(e)) => ("local", e.kind().as_str()),
        Err(InvokeError::RemoteGuest { kind, .. }) => ("forwarded", kind.as_str()),
        Err(InvokeError::UnknownModule(_)) => ("none", "unknown_module"),
        Err(InvokeError::NoProvider(_)) => ("none", "no_provider"),
        Err(InvokeError::Busy { .. }) => ("none", "busy"),
        Err(InvokeError::Deadline { .. }) => ("none", "timeout"),
        Err(InvokeError::Disagreement { .. }) => ("none", "disagreement"),
        Err(InvokeError::NotDeterministic(_)) => ("none", "not_deterministic"),
    }
}

const EXECUTED_BY: HeaderName = HeaderName::from_static("x-wasmesh-executed-by");
const ROUTE: HeaderName = HeaderName::from_static("x-wasmesh-route");
/// A forwarded answer's signed receipt (`protocol::receipt::SignedReceipt`), hex-encoded.
const RECEIPT: HeaderName = HeaderName::from_static("x-wasmesh-receipt");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// `503 busy` with `Retry-After`: the request was refused at once rather than queued.
fn busy(message: impl std::fmt::Display) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    response
}

/// Seconds a client told `busy` should wait before trying again: guests take milliseconds, so
/// the queues have turned over by then.
const RETRY_AFTER_S: &str = "1";

/// The answer to a request body that could not be read: too large, too slow, or broken off.
fn body_failure(node: &NodeInner, failure: &axum::Error, limit: usize) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(failed) = cause {
        if failed.is::<http_body_util::LengthLimitError>() {
            node.metrics.count_rejection("input_too_large");
            return error_response_too_large(limit);
        }
        if failed.is::<tower_http::timeout::TimeoutError>() {
            node.metrics.count_rejection("body_timeout");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stopped arriving",
            );
        }
        cause = failed.source();
    }
    node.metrics.count_rejection("body_read");
    error(StatusCode::BAD_REQUEST, "body_read", failure)
}

fn error_response_too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "input_too_large",
        format!("the body exceeds the module's input limit of {limit} bytes"),
    )
}

/// The HTTP status of a guest failure kind.
/// The HTTP status of a guest failure: the one place the two meet.
fn status_of_kind(kind: FailureKind) -> StatusCode {
    match kind {
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        FailureKind::InputTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        FailureKind::FuelExhausted
        | FailureKind::MemoryLimit
        | FailureKind::Trap
        | FailureKind::Exit
        | FailureKind::BadOutput
        | FailureKind::InvalidModule
        | FailureKind::UnsupportedImport => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn status(State(node): State<Node>) -> Response {
    let view = node.views.load_full();
    let modules = view.registry.entries().count();
    let ready = view.registry.ready_blobs().len();
    let table = &view.peers;
    let (peers, peers_known) = (table.values().filter(|p| p.connected).count(), table.len());
    let (running, queued) = node.executor.load();
    axum::Json(json!({
        "peer_id": node.peer_id.to_string(),
        "public_key": node.public_key().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": node.started.elapsed().as_secs(),
        "modules": modules,
        "ready": ready,
        "peers": peers,
        "peers_known": peers_known,
        "in_flight": node.in_flight.load(Ordering::Relaxed),
        "capacity": node.executor.capacity(),
        "running": running,
        "queued": queued,
        "private_mesh": node.admission.is_private(),
        "stopping": node.stopping.load(Ordering::Relaxed),
        "coordinate": coordinate_json(&view.coordinate),
    }))
    .into_response()
}

/// A network coordinate as JSON (its position, height and error).
fn coordinate_json(coordinate: &wasmesh_protocol::coordinates::Coordinate) -> serde_json::Value {
    json!({
        "vec": coordinate.vec,
        "height": coordinate.height,
        "error": coordinate.error,
    })
}

/// Requests through this gateway since start, by route: how many, how many failed, and their
/// summed latency (the live page turns two readings into rates and means).
async fn stats(State(node): State<Node>) -> Response {
    let routes: serde_json::Map<String, serde_json::Value> = node
        .metrics
        .routes
        .snapshot()
        .into_iter()
        .map(|(route, total)| (route.to_owned(), json!(total)))
        .collect();
    axum::Json(json!({
        "uptime_ms": node.started.elapsed().as_millis() as u64,
        "routes": routes,
    }))
    .into_response()
}

async fn peers(State(node): State<Node>) -> Response {
    let now_ms = node.clock_ms(Instant::now());
    let list: Vec<_> = node
        .views
        .load_full()
        .peers
        .values()
        .map(|p| {
            let down = p
                .feedback
                .down_until_ms()
                .is_some_and(|until| until > now_ms);
            let state = match () {
                () if p.leaving => "leaving",
                () if down => "down",
                () if p.connected && p.neighbour => "neighbour",
                () if p.connected => "connected",
                () => "known",
            };
            json!({
                "peer_id": p.peer_id.to_string(),
                "state": state,
                "coordinate": p.coordinate.as_ref().map(coordinate_json),
                "connected": p.connected,
                "neighbour": p.neighbour,
                "rtt_us": p.rtt_us,
                "in_flight": p.in_flight,
                "capacity": p.capacity,
                "modules": p.ready.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "addrs": p.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "quic_addr": p.quic_addr.map(|a| a.to_string()),
                "gossip_score": p.gossip_score,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// The metrics: OpenMetrics for clients that ask for it (Prometheus does), Prometheus' classic
/// text format otherwise.
async fn metrics(State(node): State<Node>, headers: HeaderMap) -> Response {
    node.refresh_gauges();
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    if open_metrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            node.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            node.metrics.encode_prometheus_text(),
        )
            .into_response()
    }
}
