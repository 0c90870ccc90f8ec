//! What `wasmesh node run` tells its operator besides metrics: log lines on stderr (text or
//! JSON), and, when a collector is named, its spans exported over OTLP/HTTP (protobuf).
//!
//! Also the W3C trace context of a request: read from its `traceparent` header at the gateway,
//! carried inside a forwarded request (`wasmesh_protocol::wire::TraceContext`) and taken as
//! the parent of the executing node's spans, so one trace shows every node a request crossed.
//! The spans are `gateway`, `route`, `forward`, and on the executing node `remote` with its
//! `queue`, `execute` and `reply`.
//!
//! Without a collector no OpenTelemetry layer is installed: spans then carry no trace context
//! and forwarded requests carry none either.
//!
//! A client's `traceparent` decides whether its request is traced only within a rate
//! ([`ClientSampling`]: `client_traces_per_second`, default 10);
//! beyond it the request keeps the client's trace id but is not recorded, so clients cannot
//! make a node export every request. Attributes taken from requests are cut to
//! [`MAX_ATTRIBUTE_CHARS`] ([`attribute`]).

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context as _;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use wasmesh_protocol::wire::TraceContext;

use crate::config::{DEFAULT_CLIENT_TRACES_PER_SECOND, LogFormat};

/// Most characters of a span attribute taken from a request (a module reference, say).
pub(crate) const MAX_ATTRIBUTE_CHARS: usize = 128;

/// How many requests a client may have traced by setting the sampled flag: a token bucket of
/// `per_second` tokens a second, holding at most a second's worth.
#[derive(Debug)]
pub(crate) struct ClientSampling {
    per_second: f64,
    /// Tokens left, and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl ClientSampling {
    /// At most `per_second` client-sampled requests a second are honoured (0: never).
    pub(crate) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            bucket: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Whether one more client-sampled request may be traced at `now`.
    pub(crate) fn allow(&self, now: Instant) -> bool {
        let mut bucket = crate::lock::lock(&self.bucket);
        let (tokens, at) = *bucket;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        let allowed = refilled >= 1.0;
        *bucket = (if allowed { refilled - 1.0 } else { refilled }, now);
        allowed
    }
}

/// The node's rate of honoured client-sampled traces (set by [`Telemetry::init`]).
static CLIENT_SAMPLING: OnceLock<ClientSampling> = OnceLock::new();

fn client_sampling() -> &'static ClientSampling {
    CLIENT_SAMPLING.get_or_init(|| ClientSampling::new(DEFAULT_CLIENT_TRACES_PER_SECOND))
}

/// `text` as a span attribute: at most [`MAX_ATTRIBUTE_CHARS`] characters, marked when cut.
pub(crate) fn attribute(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_ATTRIBUTE_CHARS) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}...", &text[..cut])),
    }
}

/// The node's log and trace output; dropping it flushes the spans not yet exported.
#[derive(Debug)]
pub(crate) struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: log lines in `format` (filtered by `RUST_LOG`, default
    /// `info` with libp2p and quinn at `warn`), and the node's spans exported to
    /// `otlp_endpoint` (its `/v1/traces`) as the service instance `node_id`, if given, with
    /// at most `client_traces_per_second` traces a second decided by clients.
    /// Call it before starting an async runtime (the exporter's HTTP client has its own).
    pub(crate) fn init(
        format: LogFormat,
        otlp_endpoint: Option<&str>,
        sample_ratio: f64,
        client_traces_per_second: u32,
        node_id: &str,
    ) -> anyhow::Result<Self> {
        let _ = CLIENT_SAMPLING.set(ClientSampling::new(client_traces_per_second));
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,libp2p=warn,quinn=warn"));
        let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let lines = match format {
            LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
            LogFormat::Json => lines.json().boxed(),
        }
        .with_filter(filter);
        let traces = otlp_endpoint
            .map(|endpoint| tracer_provider(endpoint, sample_ratio, node_id))
            .transpose()?;
        // The node's own spans, whatever RUST_LOG says about log lines. The request path's
        // spans are at debug level: without a collector, a node logging at info does not
        // create them at all (they cost about 7% of throughput at 64 connections).
        let spans = traces.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("wasmesh"))
                .with_filter(Targets::new().with_target("wasmesh_node", LevelFilter::DEBUG))
        });
        // A subscriber installed already (a test harness) keeps its place.
        let _ = tracing_subscriber::registry()
            .with(lines)
            .with(spans)
            .try_init();
        Ok(Self { traces })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("traces not all exported: {error}");
        }
    }
}

/// The OTLP/HTTP exporter to `endpoint` (a collector's base URL, or its full `/v1/traces`
/// URL), batching spans on its own thread; a trace the caller did not start is recorded for
/// `sample_ratio` of the requests.
fn tracer_provider(
    endpoint: &str,
    sample_ratio: f64,
    node_id: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let base = endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .with_context(|| format!("cannot export traces to {url}"))?;
    let resource = Resource::builder()
        .with_service_name("wasmesh")
        .with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Reads a request's headers for the OpenTelemetry propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Makes the span of an incoming HTTP request a child of the caller's, if its `traceparent`
/// header names one; the caller's sampled flag counts only within the node's rate
/// ([`ClientSampling`]).
pub(crate) fn continue_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    continue_from_headers_within(span, headers, client_sampling());
}

fn continue_from_headers_within(
    span: &tracing::Span,
    headers: &HeaderMap,
    sampling: &ClientSampling,
) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let remote = parent.span().span_context().clone();
    if !remote.is_valid() {
        return;
    }
    let parent = if remote.is_sampled() && !sampling.allow(Instant::now()) {
        let unsampled = SpanContext::new(
            remote.trace_id(),
            remote.span_id(),
            TraceFlags::default(),
            true,
            remote.trace_state().clone(),
        );
        Context::new().with_remote_span_context(unsampled)
    } else {
        parent
    };
    let _ = span.set_parent(parent);
}

/// The trace context a forwarded request carries: `span`'s, when it is traced.
pub(crate) fn wire_context(span: &tracing::Span) -> Option<TraceContext> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        sampled: span_context.is_sampled(),
    })
}

/// Makes `span` a child of the forwarding node's span that `context` names.
pub(crate) fn continue_from_wire(span: &tracing::Span, context: &TraceContext) {
    let flags = if context.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(context.trace_id),
        SpanId::from_bytes(context.span_id),
        flags,
        true,
        TraceState::default(),
    );
    if remote.is_valid() {
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sampled_traces_are_honoured_within_the_rate() {
        let sampling = ClientSampling::new(10);
        let start = Instant::now();
        let allowed = (0..100).filter(|_| sampling.allow(start)).count();
        assert_eq!(allowed, 10, "a second's worth at once");
        assert!(!sampling.allow(start));
        assert!(sampling.allow(start + std::time::Duration::from_millis(100)));
        let never = ClientSampling::new(0);
        assert!(!never.allow(start + std::time::Duration::from_secs(60)));
    }

    #[test]
    fn attributes_from_requests_are_cut() {
        assert_eq!(attribute("echo"), "echo");
        let long = "é".repeat(10_000);
        let cut = attribute(&long);
        assert_eq!(cut.chars().count(), MAX_ATTRIBUTE_CHARS + 3);
    }

    #[test]
    fn an_invalid_wire_context_is_not_taken_as_a_parent() {
        let span = tracing::Span::none();
        continue_from_wire(
            &span,
            &TraceContext {
                trace_id: [0; 16],
                span_id: [0; 8],
                sampled: true,
            },
        );
        assert_eq!(wire_context(&span), None);
    }
}
