//! The committed example config parses, and flags override the file.

use clap::Parser;
use wasmesh_node::config::{NodeArgs, NodeConfig};

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml").to_owned()
}

#[test]
fn the_example_config_parses() {
    let args = Args::parse_from(["test", "--config", &example()]).node;
    let config = NodeConfig::from_args(args).unwrap();
    assert_eq!(config.http.to_string(), "127.0.0.1:8080");
    assert_eq!(config.quic.to_string(), "0.0.0.0:4002");
    assert_eq!(config.listen.len(), 2);
    assert!(config.trust.is_empty());
}

#[test]
fn flags_win_over_the_file() {
    let args = Args::parse_from([
        "test",
        "--config",
        &example(),
        "--http",
        "127.0.0.1:9999",
        "--trust",
        &"ab".repeat(32),
    ])
    .node;
    let config = NodeConfig::from_args(args).unwrap();
    assert_eq!(config.http.to_string(), "127.0.0.1:9999");
    assert_eq!(config.trust.len(), 1);
}

#[test]
fn a_private_mesh_needs_a_certificate() {
    let args = Args::parse_from(["test", "--mesh-admin", &"cd".repeat(32)]).node;
    let err = NodeConfig::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--cert"), "{err}");
}
