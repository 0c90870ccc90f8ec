//! The `wasmesh-sim` binary: the scale model's output is the same for the same seed (apart
//! from `wall_ms`) and comes with its plot; bad scenarios get a one-line error.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmesh-sim"))
}

fn without_wall_clock(json: &str) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
    value.as_object_mut().unwrap().remove("wall_ms");
    value
}

#[test]
fn the_scale_model_is_deterministic_per_seed_and_plots_its_cdf() {
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for (run, seed) in [(0, "4"), (1, "4"), (2, "5")] {
        let json = dir.path().join(format!("scale-{run}.json"));
        let status = sim()
            .args([
                "scale",
                "--nodes",
                "300",
                "--requests",
                "1000",
                "--seed",
                seed,
                "--json",
            ])
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let svg = std::fs::read_to_string(json.with_extension("svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("polyline"),
            "not a line plot"
        );
        reports.push(without_wall_clock(&std::fs::read_to_string(&json).unwrap()));
    }
    assert_eq!(reports[0], reports[1], "same seed, different reports");
    assert_ne!(reports[0], reports[2], "different seeds, same report");
    assert_eq!(reports[0]["nodes"], 300);
    assert_eq!(reports[0]["reached_fraction"], 1.0);
    assert!(reports[0]["propagation_ms"]["p99"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_bad_scenario_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "nodes = 3\n[[publish]]\nmodule = \"x.wat\"\nname = \"x\"\nholders = [7]\n",
    )
    .unwrap();
    let output = sim().arg("run").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error:") && stderr.contains("node 7"),
        "{stderr}"
    );
}
