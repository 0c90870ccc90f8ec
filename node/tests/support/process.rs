//! Real `wasmesh node run` processes on 127.0.0.1, as an operator starts them, and the CLI calls
//! a publisher makes. A process is killed (SIGKILL) when its handle drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous deadline for anything that crosses processes on a busy CI machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `condition` holds, checking every 20 ms; panics with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the `wasmesh` binary in `dir` and returns its stdout; panics on failure.
pub fn wasmesh(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmesh"))
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
}

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
        std::fs::create_dir_all(dir).expect("node dir");
        let mut args: Vec<String> = [
            "node",
            "run",
            "--data-dir",
            ".",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmesh"))
            .args(&args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
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
        // Keep draining its log so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let field = |prefix: &str| {
            banner
                .split_whitespace()
                .find(|w| w.starts_with(prefix))
                .map(|w| w.trim_end_matches(',').to_owned())
                .unwrap_or_else(|| panic!("no {prefix} in {banner:?}"))
        };
        let p2p = field("/ip4/127.0.0.1/udp/");
        let peer_id = p2p.rsplit('/').next().expect("a peer id").to_owned();
        Self {
            child,
            url: field("http://"),
            p2p,
            peer_id,
            dir: dir.to_owned(),
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
        metric_at(&self.url, name)
    }

    /// `GET /v1/status` as JSON.
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn status(&self) -> serde_json::Value {
        get_json(&format!("{}/v1/status", self.url))
    }

    /// Whether the module `name` is ready on this node.
    pub fn is_ready(&self, name: &str) -> bool {
        let modules = get_json(&format!("{}/v1/modules", self.url));
        modules.as_array().is_some_and(|list| {
            list.iter()
                .any(|m| m["name"] == name && m["ready"] == serde_json::Value::Bool(true))
        })
    }

    /// How many peers report `name` ready, as this node's `/v1/modules` lists them.
    pub fn providers_of(&self, name: &str) -> usize {
        let modules = get_json(&format!("{}/v1/modules", self.url));
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

/// The value of a counter or gauge in the node at `url`'s `GET /metrics` (0 when absent).
pub fn metric_at(url: &str, name: &str) -> u64 {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .ok()
        .and_then(|mut response| response.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `GET url` as JSON (`null` when the node does not answer).
pub fn get_json(url: &str) -> serde_json::Value {
    ureq::get(url)
        .call()
        .ok()
        .and_then(|mut response| response.body_mut().read_to_vec().ok())
        .and_then(|body| serde_json::from_slice(&body).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// An answer to an invoke: status, executing peer, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub executed_by: String,
    pub body: Vec<u8>,
}

/// `POST /v1/invoke/{module}` with `input`, answered whatever the status.
pub fn invoke(
    agent: &ureq::Agent,
    url: &str,
    module: &str,
    input: &[u8],
) -> Result<Answer, String> {
    let mut response = agent
        .post(&format!("{url}/v1/invoke/{module}"))
        .send(input)
        .map_err(|e| e.to_string())?;
    let executed_by = response
        .headers()
        .get("x-wasmesh-executed-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        status: response.status().as_u16(),
        executed_by,
        body,
    })
}

/// An HTTP agent that returns 4xx/5xx answers instead of errors, with a whole-call timeout.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
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
