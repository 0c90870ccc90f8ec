//! Helpers for the end-to-end tests in `tests/tests/`: real nodes on 127.0.0.1 (real libp2p,
//! quinn, wasmer and files), publish bundles, HTTP calls, and waiting for a condition with a
//! deadline instead of sleeping.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod liar;
pub mod raw_codec;
pub mod stranger;

use wasmesh_node::config::NodeConfig;
use wasmesh_node::daemon::Node;
use wasmesh_protocol::{ContentHash, Keypair, Limits, Manifest, PublicKey, PublishBundle};

/// Generous deadline for anything that crosses the mesh.
pub const MESH_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `condition` holds, checking every 50 ms; panics with `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node with its own temporary data dir (kept for restarts until the `TestNode` drops).
#[derive(Debug)]
pub struct TestNode {
    pub node: Node,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node trusting `trust`, joining through `bootstrap`.
    pub async fn start(trust: &[PublicKey], bootstrap: &[&TestNode]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_owned();
        let node = start_in(&dir, trust, bootstrap, |_| {}).await;
        Self {
            node,
            dir,
            _temp: Some(temp),
        }
    }

    /// Starts a node with a config adjusted by `adjust`.
    pub async fn start_with(
        trust: &[PublicKey],
        bootstrap: &[&TestNode],
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_owned();
        let node = start_in(&dir, trust, bootstrap, adjust).await;
        Self {
            node,
            dir,
            _temp: Some(temp),
        }
    }

    /// Stops the node and starts it again on the same data dir, joining through `bootstrap`.
    pub async fn restart(self, trust: &[PublicKey], bootstrap: &[&TestNode]) -> Self {
        self.node.shutdown().await;
        let node = start_in(&self.dir, trust, bootstrap, |_| {}).await;
        Self {
            node,
            dir: self.dir,
            _temp: self._temp,
        }
    }

    /// The gateway base URL.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// Whether the module a reference names is ready here.
    pub fn is_ready(&self, module_ref: &str) -> bool {
        self.node.is_ready(&module_ref.parse().unwrap())
    }

    /// The version of the module held here.
    pub fn version_of(&self, module_ref: &str) -> Option<u64> {
        self.node.held_version(&module_ref.parse().unwrap())
    }

    /// Waits until the module is ready here.
    pub async fn wait_ready(&self, module_ref: &str) {
        wait_until(
            &format!("{module_ref} is ready on {}", self.url()),
            MESH_DEADLINE,
            || async { self.is_ready(module_ref) },
        )
        .await;
    }
}

async fn start_in(
    dir: &Path,
    trust: &[PublicKey],
    bootstrap: &[&TestNode],
    adjust: impl FnOnce(&mut NodeConfig),
) -> Node {
    let mut config = NodeConfig::local(dir);
    config.trust = trust.iter().copied().map(Into::into).collect();
    config.bootstrap = bootstrap
        .iter()
        .flat_map(|n| n.node.p2p_addrs().to_vec())
        .collect();
    adjust(&mut config);
    Node::start(config).await.unwrap()
}

/// A fixture's path (`guests/fixtures/NAME`).
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/fixtures")
        .join(name)
}

/// The Wasm binary of a fixture.
pub fn fixture(name: &str) -> Vec<u8> {
    wasmesh_node::module_file::read_module(&fixture_path(name)).unwrap()
}

/// A publisher key pair from a fixed seed.
pub fn publisher(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// A signed publish bundle of `wasm` as `name@version`.
pub fn bundle(keys: &Keypair, wasm: Vec<u8>, name: &str, version: u64) -> PublishBundle {
    let info = wasmesh_protocol::wasm::inspect(&wasm).unwrap();
    let manifest = Manifest {
        name: name.to_owned(),
        version,
        blob: ContentHash::of(&wasm),
        size: wasm.len() as u64,
        abi: info.abi,
        limits: Limits::default(),
        publisher: keys.public(),
        issued_at_ms: 1,
    };
    PublishBundle {
        manifest: manifest.sign(keys),
        module: wasm,
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// POSTs `body` to `url` (off the async runtime).
pub async fn post(url: String, body: Vec<u8>) -> Answer {
    post_with(url, body, &[]).await
}

/// POSTs `body` to `url` with `headers` (off the async runtime).
pub async fn post_with(url: String, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.post(&url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        to_answer(request.send(&body[..]).unwrap())
    })
    .await
    .unwrap()
}

/// GETs `url` (off the async runtime).
pub async fn get(url: String) -> Answer {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        to_answer(agent.get(&url).call().unwrap())
    })
    .await
    .unwrap()
}

fn to_answer(response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        body,
        headers,
    }
}

/// Publishes a bundle through `node`.
pub async fn publish(node: &TestNode, bundle: &PublishBundle) -> Answer {
    post(format!("{}/v1/publish", node.url()), bundle.encode()).await
}

/// Invokes `module_ref` through `node`.
pub async fn invoke(node: &TestNode, module_ref: &str, input: &[u8]) -> Answer {
    post(
        format!("{}/v1/invoke/{module_ref}", node.url()),
        input.to_vec(),
    )
    .await
}

/// The `wasmesh` binary built alongside the tests (`target/<profile>/wasmesh`).
pub fn wasmesh_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("wasmesh");
    assert!(
        bin.exists(),
        "{} not built; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// `len` bytes that do not compress (a BLAKE3 stream).
pub fn incompressible_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&ContentHash::of(&counter.to_le_bytes()).0);
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}

/// `len` bytes shaped like code: opcodes and small operands drawn from a BLAKE3 stream, which
/// zstd's fastest level shrinks to about 36%, as it does a compiled Rust guest (`thumbnail.wasm`,
/// 38%).
pub fn code_like_bytes(len: usize) -> Vec<u8> {
    const OPCODES: [&[u8]; 8] = [
        &[0x20],
        &[0x21],
        &[0x41],
        &[0x6a],
        &[0x28, 0x02],
        &[0x36, 0x02],
        &[0x10],
        &[0x0d],
    ];
    let mut bytes = Vec::with_capacity(len + 64);
    let mut counter = 0u64;
    while bytes.len() < len {
        let draw = ContentHash::of(&counter.to_le_bytes()).0;
        for byte in &draw[..8] {
            bytes.extend_from_slice(OPCODES[usize::from(byte % 8)]);
            bytes.push(byte % 16);
        }
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}
