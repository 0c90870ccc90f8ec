//! Nodes started in the test's own process on 127.0.0.1 (real libp2p, quinn, wasmer and files),
//! each in its own temporary data folder, kept across restarts until the node is dropped.

use std::path::{Path, PathBuf};

use wasmesh_node::client::Answer;
use wasmesh_node::config::NodeConfig;
use wasmesh_node::daemon::Node;
use wasmesh_protocol::{PublicKey, PublishBundle};

use crate::gateway;
use crate::wait::{MESH_DEADLINE, wait_until_async};

/// A node with its own temporary data folder.
#[derive(Debug)]
pub struct TestNode {
    /// The node.
    pub node: Node,
    /// Its data folder.
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node trusting `trust`, joining through `bootstrap`.
    pub async fn start(trust: &[PublicKey], bootstrap: &[&TestNode]) -> Self {
        Self::start_with(trust, bootstrap, |_| {}).await
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

    /// Stops the node and starts it again on the same data folder, joining through `bootstrap`.
    pub async fn restart(self, trust: &[PublicKey], bootstrap: &[&TestNode]) -> Self {
        self.node.shutdown().await;
        let node = start_in(&self.dir, trust, bootstrap, |_| {}).await;
        Self {
            node,
            dir: self.dir,
            _temp: self._temp,
        }
    }

    /// The gateway's base URL.
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
        wait_until_async(
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

/// Publishes `bundle` through `node`.
pub async fn publish(node: &TestNode, bundle: &PublishBundle) -> Answer {
    gateway::publish(&node.url(), bundle).await
}

/// Invokes `module_ref` with `input` through `node`.
pub async fn invoke(node: &TestNode, module_ref: &str, input: &[u8]) -> Answer {
    gateway::invoke(&node.url(), module_ref, input).await
}
