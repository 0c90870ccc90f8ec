//! A node's gateway called from async tests: the node's own client
//! ([`wasmesh_node::client::Gateway`]) run off the runtime, every answer kept whatever its
//! status (tests assert refusals as much as successes).

use wasmesh_node::client::{Answer, Gateway};
use wasmesh_protocol::PublishBundle;

async fn call(
    base: String,
    ask: impl FnOnce(&Gateway) -> Result<Answer, wasmesh_node::client::ClientError> + Send + 'static,
) -> Answer {
    tokio::task::spawn_blocking(move || {
        let gateway = Gateway::new(&base);
        ask(&gateway).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap()
}

/// GETs `path` of the node at `base`.
pub async fn get(base: &str, path: &str) -> Answer {
    let path = path.to_owned();
    call(base.to_owned(), move |gateway| gateway.get(&path)).await
}

/// POSTs `body` to `path` of the node at `base`, with `headers`.
pub async fn post(base: &str, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let path = path.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    call(base.to_owned(), move |gateway| {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        gateway.post(&path, &body, &headers)
    })
    .await
}

/// Publishes `bundle` through the node at `base`.
pub async fn publish(base: &str, bundle: &PublishBundle) -> Answer {
    post(base, "/v1/publish", bundle.encode(), &[]).await
}

/// Invokes `module_ref` with `input` through the node at `base`.
pub async fn invoke(base: &str, module_ref: &str, input: &[u8]) -> Answer {
    post(
        base,
        &format!("/v1/invoke/{module_ref}"),
        input.to_vec(),
        &[],
    )
    .await
}
