//! `POST /v1/invoke/{module_ref}`: the request's body read within the module's input limit,
//! routed (`crate::request`), and the answer or the failure as HTTP, with where it ran, its
//! timings and the executor's receipt in headers.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use tracing::Instrument;
use wasmesh_protocol::ModuleRef;

use super::{Api, Node, error};
use crate::executor::{FailureKind, GuestError};
use crate::rejection::Rejection;
use crate::request::{AGREE_HEADER, Invocation, InvokeError, MAX_AGREE};

/// `POST /v1/invoke/{module_ref}`, in a span that continues the caller's trace (`traceparent`).
pub(super) async fn invoke(
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
    let (module_ref, input) = match read_request(&node, &module_ref, &headers, body).await {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let started = Instant::now();
    let agree = match agreement(&headers) {
        Ok(agree) => agree,
        Err(response) => return *response,
    };
    let result = match agree {
        Some(wanted) => node.router.invoke_agreed(&module_ref, input, wanted).await,
        None => node.router.invoke(&module_ref, input).await,
    };
    let (route, outcome) = route_and_outcome(&result);
    node.metrics
        .observe_request(route, outcome, started.elapsed());
    match result {
        Ok(invocation) => answer(&node, invocation),
        Err(error) => failure(&module_ref, error),
    }
}

/// The module a request names and its body, read within the module's input limit; the error
/// answer otherwise.
async fn read_request(
    node: &Api,
    module_ref: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ModuleRef, Vec<u8>), Box<Response>> {
    let module_ref: ModuleRef = module_ref
        .parse()
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "bad_module_ref", e)))?;
    let Some(limit) = node
        .views
        .load()
        .registry
        .resolve(&module_ref)
        .map(|e| e.signed.manifest.limits.max_input as usize)
    else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "unknown_module",
            format!("no module {module_ref} is known here"),
        )));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        node.metrics.count_rejection(Rejection::InputTooLarge);
        return Err(Box::new(error_response_too_large(limit)));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok((module_ref, bytes.to_vec())),
        Err(e) => Err(Box::new(body_failure(node, &e, limit))),
    }
}

/// The guest's output, with where it ran, its timings and the executor's receipt in headers.
fn answer(node: &Api, invocation: Invocation) -> Response {
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
    let timing = format!("queue;dur={queue_ms:.3}, exec;dur={exec_ms:.3}, net;dur={net_ms:.3}");
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

/// The error answer to a request that failed.
fn failure(module_ref: &ModuleRef, failed: InvokeError) -> Response {
    match failed {
        InvokeError::UnknownModule(name) => error(
            StatusCode::NOT_FOUND,
            "unknown_module",
            format!("no module {name}"),
        ),
        e @ InvokeError::NoProvider(_) => error(StatusCode::SERVICE_UNAVAILABLE, "no_provider", e),
        e @ InvokeError::Busy { .. } => busy(e),
        InvokeError::Guest(e @ GuestError::Busy { .. }) => busy(e),
        InvokeError::Guest(e) => {
            tracing::info!(module = %module_ref, error = %e, "guest failed");
            error(status_of_kind(e.kind()), e.kind().as_str(), e)
        }
        InvokeError::RemoteGuest {
            kind,
            message,
            executed_by,
            ..
        } => {
            let mut response = error(status_of_kind(kind), kind.as_str(), message);
            if let Ok(value) = HeaderValue::from_str(&executed_by.to_string()) {
                response.headers_mut().insert(EXECUTED_BY, value);
            }
            response
        }
        e @ InvokeError::Deadline { .. } => error(StatusCode::GATEWAY_TIMEOUT, "timeout", e),
        e @ InvokeError::Disagreement { .. } => error(StatusCode::BAD_GATEWAY, "disagreement", e),
        e @ InvokeError::NotDeterministic(_) => {
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
fn body_failure(node: &Api, failure: &axum::Error, limit: usize) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(failed) = cause {
        if failed.is::<http_body_util::LengthLimitError>() {
            node.metrics.count_rejection(Rejection::InputTooLarge);
            return error_response_too_large(limit);
        }
        if failed.is::<tower_http::timeout::TimeoutError>() {
            node.metrics.count_rejection(Rejection::BodyTimeout);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stopped arriving",
            );
        }
        cause = failed.source();
    }
    node.metrics.count_rejection(Rejection::BodyRead);
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
