//! The live mesh page in a real headless browser (Debian's chromium, driven by playwright-core
//! from `node/tests/browser`), on a mesh of three real `wasmesh node run` processes: the page
//! of A lists both peers; after a publish, the module appears with its three providers; after
//! requests, the request rate moves; the console shows no error. The screenshot is saved in
//! `target/test-artifacts/live-page.png` (and, with `WASMESH_UPDATE_SCREENSHOT=1`, becomes the
//! README's `docs/live-page.png`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use support::fixture_path;
use support::process::{self, NodeProcess, get_json};
use support::wait::{DEADLINE, wait_until};

#[test]
fn the_live_page_shows_peers_modules_and_rates() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/install-test-tools.sh (npm ci in {})",
        browser_dir.display()
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("live-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let a = NodeProcess::start(&dir.path().join("a"), &public, &[], &[]);
    let b = NodeProcess::start(&dir.path().join("b"), &public, &[&a], &[]);
    let c = NodeProcess::start(&dir.path().join("c"), &public, &[&a, &b], &[]);
    wait_until("A is connected to B and C", DEADLINE, || {
        let peers = get_json(&format!("{}/v1/peers", a.url));
        [&b.peer_id, &c.peer_id].iter().all(|id| {
            peers.as_array().is_some_and(|list| {
                list.iter()
                    .any(|p| p["peer_id"] == id.as_str() && p["connected"] == true)
            })
        })
    });

    let mut driver = Command::new("node")
        .arg("live_page.mjs")
        .args([
            &a.url,
            "echo",
            screenshot.to_str().unwrap(),
            &b.peer_id,
            &c.peer_id,
        ])
        .current_dir(&browser_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js) runs");
    let mut to_driver = driver.stdin.take();
    let (steps, step_rx) = mpsc::channel();
    let stdout = driver.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(step) = line.strip_prefix("STEP ") {
                let _ = steps.send(step.to_owned());
            }
        }
    });
    let mut stderr = driver.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(&mut stderr).lines().map_while(Result::ok) {
            eprintln!("browser: {line}");
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    for wanted in ["peers", "module", "rates", "done"] {
        let got = step_rx.recv_timeout(DEADLINE * 2);
        if got.as_deref() != Ok(wanted) {
            let _ = driver.kill();
            panic!(
                "the browser did not reach step {wanted:?} (got {got:?}): {}",
                errors.join().unwrap_or_default()
            );
        }
        if let Some(mut to_driver) = to_driver.take() {
            process::publish(dir.path(), &key, &a, &fixture_path("echo.wat"), "echo");
            to_driver.write_all(b"published\n").unwrap();
        }
    }
    let status = driver.wait().unwrap();
    assert!(status.success(), "the browser driver exited with {status}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    if std::env::var_os("WASMESH_UPDATE_SCREENSHOT").is_some() {
        let readme_image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/live-page.png");
        std::fs::copy(&screenshot, readme_image).unwrap();
    }
}
