//! `wasmesh node init`: what a new operator needs to run a node as a service, in one folder:
//! a commented config (`node/config.example.toml` with this node's settings), a fresh node key
//! and the systemd unit (`packaging/wasmesh.service`). Nothing is ever overwritten: if any of the
//! three files exists, nothing is written.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use libp2p::Multiaddr;
use wasmesh_keys::{TrustEntry, key_file};

/// The example config, whose comments the written config keeps.
const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");
/// The systemd unit.
const UNIT: &str = include_str!("../../../packaging/wasmesh.service");

/// Where the service keeps its state (systemd's `StateDirectory=wasmesh`).
pub(super) const SERVICE_DATA_DIR: &str = "/var/lib/wasmesh";

/// Arguments of `wasmesh node init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to write `config.toml`, `node.key` and `wasmesh.service` in (created if
    /// missing).
    #[arg(long, default_value = "wasmesh-node")]
    pub dir: PathBuf,
    /// A peer of the mesh to join through (repeatable), e.g.
    /// /ip4/203.0.113.7/udp/4001/quic-v1/p2p/12D3KooW...
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// A publisher whose modules this node runs (repeatable), as `wasmesh node run --trust`.
    #[arg(long = "trust", value_name = "HEX[=NAMES]")]
    pub trust: Vec<TrustEntry>,
    /// Where the node keeps its data [default: /var/lib/wasmesh, the unit's state directory].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The files `init` writes, by name.
const FILES: [&str; 3] = ["config.toml", "node.key", "wasmesh.service"];

pub(super) fn init(args: InitArgs) -> anyhow::Result<()> {
    let existing: Vec<PathBuf> = FILES
        .iter()
        .map(|name| args.dir.join(name))
        .filter(|path| path.exists())
        .collect();
    if !existing.is_empty() {
        let names: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{} already exists; nothing was written (move it away, or choose another --dir)",
            names.join(", ")
        );
    }
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(SERVICE_DATA_DIR));
    let config = node_config(&data_dir, &args.bootstrap, &args.trust)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let key_path = args.dir.join("node.key");
    let keys = key_file::generate_file(&key_path)?;
    write_new(&args.dir.join("config.toml"), &config)?;
    write_new(&args.dir.join("wasmesh.service"), UNIT)?;
    let peer_id = wasmesh_keys::identity::libp2p_keypair(&keys)
        .public()
        .to_peer_id();
    let dir = args.dir.display();
    super::emit(&format!(
        "wrote {dir}/config.toml, {dir}/node.key (mode 0600) and {dir}/wasmesh.service\n\
         node id {peer_id}\n\
         \n\
         To run it as a service (systemd):\n\
         \x20 sudo install -D -m 0644 {dir}/config.toml /etc/wasmesh/config.toml\n\
         \x20 sudo install -D -m 0600 {dir}/node.key /etc/wasmesh/node.key\n\
         \x20 sudo install -m 0644 {dir}/wasmesh.service /etc/systemd/system/wasmesh.service\n\
         \x20 sudo systemctl daemon-reload && sudo systemctl enable --now wasmesh\n\
         \n\
         Or in the foreground: wasmesh node run --config {dir}/config.toml --key {dir}/node.key\n"
    ))
}

/// The example config with this node's data folder, bootstrap peers and trusted publishers.
fn node_config(
    data_dir: &Path,
    bootstrap: &[Multiaddr],
    trust: &[TrustEntry],
) -> anyhow::Result<String> {
    let quoted = |items: Vec<String>| {
        let items: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    let data_dir = data_dir
        .to_str()
        .context("the data folder's path is not UTF-8")?;
    let replacements = [
        (
            "data_dir = \"wasmesh-data\"",
            format!("data_dir = {data_dir:?}"),
        ),
        (
            "# key = \"wasmesh-data/node.key\"",
            "# The service passes it with --key (a systemd credential from /etc/wasmesh/node.key)."
                .to_owned(),
        ),
        (
            "bootstrap = []",
            format!(
                "bootstrap = {}",
                quoted(bootstrap.iter().map(|a| a.to_string()).collect())
            ),
        ),
        (
            "trust = []",
            format!(
                "trust = {}",
                quoted(trust.iter().map(|t| t.to_string()).collect())
            ),
        ),
    ];
    let mut config = format!(
        "# Written by `wasmesh node init`; see node/config.example.toml for every setting.\n{}",
        EXAMPLE_CONFIG
            .lines()
            .skip_while(|line| line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (from, to) in replacements {
        if !config.contains(from) {
            bail!("the example config no longer holds {from:?}");
        }
        config = config.replacen(from, &to, 1);
    }
    config.push('\n');
    Ok(config)
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_is_a_valid_node_config_with_the_given_settings() {
        let bootstrap: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let trust: TrustEntry = format!("{}=echo", "ab".repeat(32)).parse().unwrap();
        let text = node_config(Path::new("/var/lib/wasmesh"), &[bootstrap], &[trust]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        let config = crate::config::NodeConfig::from_args(crate::config::NodeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/var/lib/wasmesh"));
        assert_eq!(config.bootstrap.len(), 1);
        assert_eq!(config.trust.len(), 1);
        assert!(text.contains("# Publishers whose manifests this node accepts"));
    }
}
