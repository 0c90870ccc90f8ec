//! The HTTP gateway (axum): publish, list, invoke, status, peers, health and metrics.
//!
//! Errors are JSON `{"error": kind, "message": text}` with a status that says who is at fault:
//! 400 a malformed request, 403 an untrusted publisher, 404 an unknown module, 409 a version
//! that is not newer, 413 a body over the limit (checked from `content-length` before reading),
//! 422 a refused manifest or module, or a guest failure, 503 no reachable provider or no free
//! slot, 504 the deadline passed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use wasmesh_protocol::bundle::MAX_BUNDLE_SIZE;
use wasmesh_protocol::{ModuleRef, PublishBundle};

use crate::node::{InvokeError, NodeInner, PublishError, Refusal};
use crate::registry::ModuleState;

type Node = Arc<NodeInner>;

/// The gateway's routes.
pub(crate) fn router(node: Node) -> Router {
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
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
                PublishError::Refused(Refusal::Invalid(
                    wasmesh_protocol::VerifyError::UntrustedPublisher { .. },
                )) => StatusCode::FORBIDDEN,
                PublishError::Refused(Refusal::Rollback(_)) => StatusCode::CONFLICT,
                PublishError::Refused(Refusal::Store(_)) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error(status, e.kind(), e)
        }
    }
}

async fn modules(State(node): State<Node>) -> Response {
    let providers = |hash| {
        node.peers()
            .values()
            .filter(|p| p.ready.contains(hash))
            .map(|p| p.peer_id.to_string())
            .collect::<Vec<_>>()
    };
    let entries: Vec<_> = node.registry().entries().cloned().collect();
    let list: Vec<_> = entries
        .iter()
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

async fn invoke(
    State(node): State<Node>,
    Path(module_ref): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let module_ref: ModuleRef = match module_ref.parse() {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_module_ref", e),
    };
    let Some(limit) = node
        .registry()
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
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "input_too_large",
            format!("the body exceeds the module's input limit of {limit} bytes"),
        );
    }
    let input = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => {
            node.metrics.count_rejection("input_too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "input_too_large",
                format!("the body exceeds the module's input limit of {limit} bytes"),
            );
        }
    };
    match node.invoke(&module_ref, input).await {
        Ok(invocation) => {
            let mut response = Response::new(Body::from(invocation.output.bytes));
            let headers = response.headers_mut();
            let route = if invocation.local {
                "local"
            } else {
                "forwarded"
            };
            let exec_ms = invocation.output.exec_time.as_secs_f64() * 1e3;
            let net_ms = invocation.network.as_secs_f64() * 1e3;
            let queue_ms = invocation.queue.as_secs_f64() * 1e3;
            let pairs = [
                ("x-wasmesh-executed-by", invocation.executed_by.to_string()),
                ("x-wasmesh-route", route.to_owned()),
                (
                    "server-timing",
                    format!("queue;dur={queue_ms:.3}, exec;dur={exec_ms:.3}, net;dur={net_ms:.3}"),
                ),
            ];
            for (name, value) in pairs {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
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
        Err(InvokeError::Guest(e)) => error(status_of_kind(e.kind()), e.kind(), e),
        Err(InvokeError::RemoteGuest {
            kind,
            message,
            executed_by,
        }) => {
            let mut response = error(status_of_kind(&kind), &kind, message);
            if let Ok(value) = HeaderValue::from_str(&executed_by.to_string()) {
                response
                    .headers_mut()
                    .insert("x-wasmesh-executed-by", value);
            }
            response
        }
        Err(e @ InvokeError::Deadline { .. }) => error(StatusCode::GATEWAY_TIMEOUT, "timeout", e),
    }
}

/// The HTTP status of a guest failure kind.
fn status_of_kind(kind: &str) -> StatusCode {
    match kind {
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "busy" => StatusCode::SERVICE_UNAVAILABLE,
        "input_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn status(State(node): State<Node>) -> Response {
    let (modules, ready) = {
        let registry = node.registry();
        let modules = registry.entries().count();
        (modules, registry.ready_blobs().len())
    };
    let peers = node.peers().values().filter(|p| p.connected).count();
    axum::Json(json!({
        "peer_id": node.peer_id.to_string(),
        "public_key": node.public_key().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": node.started.elapsed().as_secs(),
        "modules": modules,
        "ready": ready,
        "peers": peers,
        "in_flight": node.in_flight.load(Ordering::Relaxed),
        "capacity": node.executor.capacity(),
        "private_mesh": node.admission.is_private(),
    }))
    .into_response()
}

async fn peers(State(node): State<Node>) -> Response {
    let list: Vec<_> = node
        .peers()
        .values()
        .map(|p| {
            json!({
                "peer_id": p.peer_id.to_string(),
                "connected": p.connected,
                "rtt_us": p.rtt_us,
                "in_flight": p.in_flight,
                "capacity": p.capacity,
                "modules": p.ready.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "addrs": p.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "quic_addr": p.quic_addr.map(|a| a.to_string()),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

async fn metrics(State(node): State<Node>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.encode(),
    )
        .into_response()
}
