//! The committed example config parses, flags override the file, and a node asked for JSON
//! logs writes them.

use std::time::Duration;

use clap::Parser;
use wasmesh_node::config::{GatewayLimits, LogFormat, NodeArgs, NodeConfig};

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
    // The documented limits are the defaults.
    assert_eq!(config.gateway, GatewayLimits::default());
    assert_eq!(config.executor.max_queued, 256);
    assert!(config.hedging);
    assert_eq!(config.drain_timeout, Duration::from_secs(10));
    assert_eq!(config.otlp_endpoint, None);
    assert_eq!(config.trace_sample_ratio, 1.0);
}

#[test]
fn limits_come_from_the_file_and_nonsense_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let write_and_load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let args = Args::parse_from(["test", "--config", path.to_str().unwrap()]).node;
        NodeConfig::from_args(args)
    };
    let config = write_and_load(
        "hedging = false\ndrain_timeout_s = 3\notlp_endpoint = \"http://127.0.0.1:4318\"\n\
         trace_sample_ratio = 0.25\n[gateway]\nheader_read_timeout_ms = 1500\nmax_connections = 7\n\
         [executor]\nmax_concurrent = 3\nmax_queued = 9\n",
    )
    .unwrap();
    assert_eq!(
        config.gateway.header_read_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(
        config.gateway.body_timeout,
        GatewayLimits::default().body_timeout
    );
    assert_eq!(config.gateway.max_connections, 7);
    assert_eq!(
        (config.executor.max_concurrent, config.executor.max_queued),
        (3, 9)
    );
    assert!(!config.hedging);
    assert_eq!(config.drain_timeout, Duration::from_secs(3));
    assert_eq!(
        config.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(config.trace_sample_ratio, 0.25);
    for bad in [
        "trace_sample_ratio = 1.5\n",
        "[gateway]\nmax_connections = 0\n",
        "[gateway]\nbody_timeout_ms = 0\n",
        "[gateway]\nheader_timeout = 5\n",
        "[executor]\nmax_concurrent = 0\n",
    ] {
        assert!(write_and_load(bad).is_err(), "{bad:?} was accepted");
    }
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
    assert_eq!(config.log_format, LogFormat::Text);
}

/// `--log-format json`: every log line of a running node is one JSON object with a level and a
/// message.
#[test]
fn a_node_asked_for_json_logs_writes_json_lines() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(["node", "run", "--data-dir", ".", "--log-format", "json"])
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .args(["--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stderr = node.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The node logs its listen addresses at info once it listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let logged = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines_rx.recv_timeout(left).expect("a log line within 60 s");
        if line.starts_with('{') {
            break line;
        }
        // The start-up banner is printed for people, not logged.
        assert!(line.starts_with("node "), "a line that is not JSON: {line}");
    };
    let _ = node.kill();
    let _ = node.wait();
    let object: serde_json::Value = serde_json::from_str(&logged).unwrap();
    assert_eq!(object["level"], "INFO", "{logged}");
    assert!(object["fields"]["message"].is_string(), "{logged}");
}

#[test]
fn a_private_mesh_needs_a_certificate() {
    let args = Args::parse_from(["test", "--mesh-admin", &"cd".repeat(32)]).node;
    let err = NodeConfig::from_args(args).unwrap_err();
    assert!(err.to_string().contains("--cert"), "{err}");
}
