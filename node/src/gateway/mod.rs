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

mod api;
mod invoke;
mod page;
pub(crate) mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;
use wasmesh_protocol::PublishBundle;
use wasmesh_protocol::bundle::MAX_BUNDLE_SIZE;

pub(crate) use self::api::Api;
use crate::core::manifests::Refusal;
use crate::core::registry::ModuleState;
use crate::publish::PublishError;
use crate::rejection::Rejection;

type Node = Arc<Api>;

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
            post(invoke::invoke).layer(DefaultBodyLimit::disable()),
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
            node.metrics.count_rejection(Rejection::PublishMalformed);
            return error(StatusCode::BAD_REQUEST, "malformed_bundle", e);
        }
    };
    match node.publisher.publish(bundle).await {
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

async fn status(State(node): State<Node>) -> Response {
    let view = node.views.load_full();
    let modules = view.registry.entries().count();
    let ready = view.registry.ready_blobs().len();
    let table = &view.peers;
    let (peers, peers_known) = (table.values().filter(|p| p.connected).count(), table.len());
    let (running, queued) = node.local.executor_load();
    axum::Json(json!({
        "peer_id": node.peer_id.to_string(),
        "public_key": node.public_key.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": node.clock.started().elapsed().as_secs(),
        "modules": modules,
        "ready": ready,
        "peers": peers,
        "peers_known": peers_known,
        "in_flight": node.local.load().in_flight(),
        "capacity": node.local.load().capacity(),
        "running": running,
        "queued": queued,
        "private_mesh": node.private_mesh,
        "stopping": node.local.load().is_stopping(),
        "coordinate": coordinate_json(&view.coordinate),
        "addresses": view.addresses,
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
        "uptime_ms": node.clock.started().elapsed().as_millis() as u64,
        "routes": routes,
    }))
    .into_response()
}

async fn peers(State(node): State<Node>) -> Response {
    let now_ms = node.clock.now_ms();
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
                "control_path": p.connected.then_some(if p.relayed { "relayed" } else { "direct" }),
                "neighbour": p.neighbour,
                "rtt_us": p.rtt_us,
                "in_flight": p.in_flight,
                "capacity": p.capacity,
                "modules": p.ready.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "addrs": p.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "quic_addr": p.data_addr().map(|a| a.to_string()),
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
