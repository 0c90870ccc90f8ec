//! The baseline of `scripts/bench-gateway.sh`: a plain axum server whose
//! `POST /v1/invoke/{module}` answers with the request body, as a native handler would. Prints
//! `listening on ADDR` and serves until killed.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let router = Router::new().route("/v1/invoke/{module}", post(|body: Bytes| async { body }));
    axum::serve(listener, router).await?;
    Ok(())
}
