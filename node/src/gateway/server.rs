//! Serving the gateway's HTTP/1.1 connections within limits a stranger cannot stretch.
//!
//! - **Connections**: at most `max_connections` at once; one more is closed at accept and
//!   counted (`gateway_connection_cap`). Each open connection holds a semaphore permit, given back
//!   when its task ends, however it ends.
//! - **Header read**: hyper's `header_read_timeout`, which also runs while a keep-alive
//!   connection waits for its next request, so a connection that sends nothing (or half a header)
//!   is closed after it.
//! - **Body read**: tower-http's request-body timeout (see [`super::router`]): a body whose next
//!   bytes do not arrive in time fails the request, and hyper closes the connection.
//! - **Stop**: on shutdown the listener closes, every connection finishes the request it is
//!   serving (hyper's graceful shutdown), and the serve loop returns once all have ended or
//!   `drain` has passed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::GatewayLimits;
use crate::metrics::Metrics;
use crate::rejection::Rejection;

/// Serves `router` on `listener` until `shutdown` turns true, then drains for at most `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: GatewayLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
            // Reap finished connection tasks so the set stays as small as the open connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or a connection reset before accept: keep serving.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.count_rejection(Rejection::GatewayConnectionCap);
            tracing::debug!(%peer, cap = limits.max_connections, "HTTP connection refused: at the cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async move { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "HTTP connections still open after the drain period; closing them"
        );
        connections.shutdown().await;
    }
}

/// Pause after a failed accept (usually: out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
