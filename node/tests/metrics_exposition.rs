//! The metrics page of a real node that has published and served a module: `promtool check
//! metrics` (Prometheus' own linter) finds nothing to say about it, the histograms and state
//! gauges hold what happened, and every metric the committed Grafana dashboard queries is on it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::fixture_path;
use support::process::{self, NodeProcess};

#[test]
fn the_metrics_page_passes_promtool_and_counts_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), &public, &[], &[]);
    process::publish(dir.path(), &key, &node, &fixture_path("echo.wat"), "echo");
    let gateway = node.gateway(Duration::from_secs(30));
    for _ in 0..3 {
        let answer = gateway.invoke("echo", b"hello").unwrap();
        assert_eq!(answer.status, 200);
    }
    // One refusal, so the rejections family has a member.
    let refused = gateway.post("/v1/publish", b"not a bundle", &[]).unwrap();
    assert_eq!(refused.status, 400);
    let page = gateway.metrics().unwrap();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let sample = |name: &str| {
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no sample {name} in\n{page}"))
    };
    assert_eq!(
        sample(r#"wasmesh_request_duration_seconds_count{route="local",outcome="ok"}"#),
        3.0
    );
    assert_eq!(sample("wasmesh_execution_duration_seconds_count"), 3.0);
    assert_eq!(sample("wasmesh_compile_duration_seconds_count"), 1.0);
    assert_eq!(sample(r#"wasmesh_modules{state="ready"}"#), 1.0);
    assert_eq!(sample("wasmesh_slots_busy"), 0.0);
    assert!(sample("wasmesh_request_duration_seconds_sum{route=\"local\",outcome=\"ok\"}") > 0.0);

    let dashboard = include_str!("../../packaging/grafana-dashboard.json");
    let typed: Vec<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let queried: std::collections::BTreeSet<&str> = dashboard
        .match_indices("wasmesh_")
        .map(|(start, _)| {
            let rest = &dashboard[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(queried.len() >= 10, "the dashboard queries {queried:?}");
    for name in queried {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            typed.contains(&family),
            "the dashboard queries {name}, which the node does not export"
        );
    }
}
