//! Real `wasmesh node run` processes, as an operator starts them: on 127.0.0.1, or on a host of
//! the NAT harness ([`crate::nat`]) listening on every interface; and the CLI calls a publisher
//! makes. A process is killed (SIGKILL) when its handle drops.
//!
//! The binary is the one cargo built with the test or bench (`cargo test --workspace` builds
//! it for every test; a crate's own integration tests get it too).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmesh_node::client::Gateway;

use crate::nat::Host;

/// The `wasmesh` binary: `$WASMESH_BIN` if set (a bench binary copied elsewhere to compare
/// builds), else the one cargo built alongside the running test or bench
/// (`target/<profile>/wasmesh`).
pub fn wasmesh_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASMESH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("wasmesh");
    assert!(
        bin.exists(),
        "{} not built; run the tests with `cargo test --workspace`, or set WASMESH_BIN",
        bin.display()
    );
    bin
}

/// Runs the `wasmesh` binary in `dir` and returns its stdout; panics on failure.
pub fn wasmesh(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(wasmesh_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the wasmesh binary runs");
    assert!(
        out.status.success(),
        "wasmesh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A publisher key in `dir`; returns its path and public key.
pub fn publisher_key(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("publisher.key");
    wasmesh(dir, &["keys", "gen", "--out", "publisher.key"]);
    let shown = wasmesh(dir, &["keys", "show", "--key", "publisher.key"]);
    let key = shown.lines().next().expect("a key line").to_owned();
    (path, key)
}

/// A running node process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// Its gateway, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its libp2p address with `/p2p/<peer id>`, to bootstrap others from.
    pub p2p: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its data folder.
    pub dir: PathBuf,
    /// The harness host it runs on (`None`: this machine, on loopback).
    host: Option<Host>,
}

/// Where a node on loopback listens: libp2p, data plane, gateway.
const LOOPBACK_LISTEN: [&str; 3] = ["/ip4/127.0.0.1/udp/0/quic-v1", "127.0.0.1:0", "127.0.0.1:0"];
/// Where a node on a harness host listens: every interface (as `wasmesh node run` does by
/// default), with the gateway on the host's loopback.
const HOST_LISTEN: [&str; 3] = ["/ip4/0.0.0.0/udp/0/quic-v1", "0.0.0.0:0", "127.0.0.1:0"];

impl NodeProcess {
    /// Starts `wasmesh node run` on loopback with OS-chosen ports, trusting `trust`, joining
    /// through `bootstrap`, with `extra` flags. Returns once it serves HTTP.
    pub fn start(dir: &Path, trust: &str, bootstrap: &[&NodeProcess], extra: &[&str]) -> Self {
        Self::start_with_env(dir, trust, bootstrap, extra, &[])
    }

    /// As [`NodeProcess::start`], with `env` added to the process's environment.
    pub fn start_with_env(
        dir: &Path,
        trust: &str,
        bootstrap: &[&NodeProcess],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(wasmesh_bin());
        command.envs(env.iter().copied());
        Self::spawn(command, None, dir, trust, bootstrap, extra)
    }

    /// As [`NodeProcess::start`], on `host` of the NAT harness, listening on all its
    /// interfaces. Its gateway, metrics and status are called from inside the host.
    pub fn start_on(
        host: &Host,
        dir: &Path,
        trust: &str,
        bootstrap: &[&NodeProcess],
        extra: &[&str],
    ) -> Self {
        let command = host.command(wasmesh_bin());
        Self::spawn(command, Some(host.clone()), dir, trust, bootstrap, extra)
    }

    fn spawn(
        mut command: Command,
        host: Option<Host>,
        dir: &Path,
        trust: &str,
        bootstrap: &[&NodeProcess],
        extra: &[&str],
    ) -> Self {
        std::fs::create_dir_all(dir).expect("node dir");
        let [listen, quic, http] = if host.is_some() {
            HOST_LISTEN
        } else {
            LOOPBACK_LISTEN
        };
        let mut args: Vec<String> = [
            "node",
            "run",
            "--data-dir",
            ".",
            "--listen",
            listen,
            "--quic",
            quic,
            "--http",
            http,
            "--trust",
            trust,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for peer in bootstrap {
            args.push("--bootstrap".into());
            args.push(peer.p2p.clone());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut child = command
            .args(&args)
            .current_dir(dir)
            .env(
                "RUST_LOG",
                node_log_filter().unwrap_or_else(|| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wasmesh node run starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let banner = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("serving http://") => break line,
                Some(Ok(_)) => continue,
                _ => panic!("the node exited before serving: {:?}", child.wait()),
            }
        };
        // Keep draining its log so the node never blocks on a full pipe; shown with
        // `WASMESH_TEST_NODE_LOG` set (see `node_log_filter`).
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let shown = node_log_filter().is_some();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if shown {
                    eprintln!("[{}] {line}", name.as_deref().unwrap_or("node"));
                }
            }
        });
        let field = |prefix: &str| {
            banner
                .split_whitespace()
                .find(|w| w.starts_with(prefix))
                .map(|w| w.trim_end_matches(',').to_owned())
                .unwrap_or_else(|| panic!("no {prefix} in {banner:?}"))
        };
        let p2p = field("/ip4/");
        let peer_id = p2p.rsplit('/').next().expect("a peer id").to_owned();
        Self {
            child,
            url: field("http://"),
            p2p,
            peer_id,
            dir: dir.to_owned(),
            host,
        }
    }

    /// Runs `work` where this node's gateway can be reached: inside its harness host, or here.
    pub fn within<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        match &self.host {
            Some(host) => host.enter(work),
            None => work(),
        }
    }

    /// SIGTERM, as a service manager stops a node: it drains and exits on its own.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `deadline` for the process to exit; its exit status.
    pub fn wait_for_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "the node did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process dies at once, saying goodbye to nobody.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The value of a counter or gauge in `GET /metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        self.within(|| metric_at(&self.url, name))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its gateway; each call gives up after `timeout`. On a harness host, call it inside
    /// [`NodeProcess::within`].
    pub fn gateway(&self, timeout: Duration) -> Gateway {
        Gateway::with_timeout(&self.url, timeout)
    }

    /// `GET /v1/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        self.within(|| get_json(&format!("{}/v1/status", self.url)))
    }

    /// Whether the module `name` is ready on this node.
    pub fn is_ready(&self, name: &str) -> bool {
        let modules = self.within(|| get_json(&format!("{}/v1/modules", self.url)));
        modules.as_array().is_some_and(|list| {
            list.iter()
                .any(|m| m["name"] == name && m["ready"] == serde_json::Value::Bool(true))
        })
    }

    /// How many peers report `name` ready, as this node's `/v1/modules` lists them.
    pub fn providers_of(&self, name: &str) -> usize {
        let modules = self.within(|| get_json(&format!("{}/v1/modules", self.url)));
        modules
            .as_array()
            .and_then(|list| list.iter().find(|m| m["name"] == name))
            .and_then(|m| m["providers"].as_array().map(Vec::len))
            .unwrap_or(0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The log filter of the nodes tests start: `WASMESH_TEST_NODE_LOG` (for example `info` or
/// `wasmesh_node::data=debug`) when set, and their log lines then go to the test's stderr
/// under each node's directory name; else `warn`, and the lines are dropped.
fn node_log_filter() -> Option<String> {
    std::env::var("WASMESH_TEST_NODE_LOG").ok()
}

/// The value of a counter or gauge in the node at `url`'s `GET /metrics`, summed over its
/// labels (0 when absent or the node does not answer).
pub fn metric_at(url: &str, name: &str) -> u64 {
    let text = Gateway::new(url).metrics().unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The sum of histogram `name` in the node at `url`'s `GET /metrics`, over its labels, in the
/// histogram's unit (0 when absent or the node does not answer).
pub fn histogram_sum(url: &str, name: &str) -> f64 {
    let text = Gateway::new(url).metrics().unwrap_or_default();
    let prefix = format!("{name}_sum");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// `GET url` as JSON (`null` when the node does not answer).
pub fn get_json(url: &str) -> serde_json::Value {
    Gateway::new(url)
        .get("")
        .ok()
        .and_then(|answer| answer.json().ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Publishes a WAT fixture through `node` with the CLI.
pub fn publish(dir: &Path, key: &Path, node: &NodeProcess, fixture: &Path, name: &str) {
    wasmesh(
        dir,
        &[
            "publish",
            fixture.to_str().expect("utf-8 path"),
            "--name",
            name,
            "--version",
            "1",
            "--key",
            key.to_str().expect("utf-8 path"),
            "--node",
            &node.url,
        ],
    );
}
