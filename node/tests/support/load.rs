//! Holders under load, for the tests that stop one: two holders of a module and a router that
//! holds nothing, as real `wasmesh node run` processes, and clients streaming requests through
//! the router until told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::process::{self, NodeProcess};
use super::wait::{DEADLINE, wait_until};
use super::{Gateway, fixture_path};

/// A and B hold the module, C routes to them (`--replicate none`).
pub struct Mesh {
    pub a: NodeProcess,
    pub b: NodeProcess,
    pub c: NodeProcess,
    _dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts the three nodes, publishes the WAT fixture `fixture` as `name`, and returns once
    /// C forwards it.
    pub fn start(fixture: &str, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = process::publisher_key(dir.path());
        let a = NodeProcess::start(&dir.path().join("a"), &public, &[], &[]);
        let b = NodeProcess::start(&dir.path().join("b"), &public, &[&a], &[]);
        let c = NodeProcess::start(
            &dir.path().join("c"),
            &public,
            &[&a, &b],
            &["--replicate", "none"],
        );
        process::publish(dir.path(), &key, &a, &fixture_path(fixture), name);
        wait_until(
            "the module is ready on A and B, and C knows both",
            DEADLINE,
            || a.is_ready(name) && b.is_ready(name) && c.providers_of(name) == 2,
        );
        let gateway = c.gateway(Duration::from_secs(30));
        wait_until("C forwards the module", DEADLINE, || {
            gateway.invoke(name, b"x").is_ok_and(|a| a.status == 200)
        });
        Self { a, b, c, _dir: dir }
    }

    /// The holder C forwards to now, and the other one.
    pub fn split_by_use(self, name: &str) -> (NodeProcess, NodeProcess, NodeProcess) {
        let gateway = self.c.gateway(Duration::from_secs(30));
        let answer = gateway.invoke(name, b"who").unwrap();
        let used = answer.executed_by().to_owned();
        let Self { a, b, c, .. } = self;
        let (used_holder, other) = if used == a.peer_id { (a, b) } else { (b, a) };
        assert_eq!(used, used_holder.peer_id, "C runs nothing itself");
        (used_holder, other, c)
    }
}

/// One request of the load.
pub struct Sample {
    pub sent: Instant,
    pub answered: Instant,
    /// 200 with the input echoed back.
    pub ok: bool,
    /// The status and body, or the error.
    pub detail: String,
    pub executed_by: String,
}

/// Clients sending echo requests through one node, each waiting for its answer.
pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `clients` clients sending to `name` through the node at `url`.
    pub fn start(url: &str, name: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|client| {
                let (stop, answered) = (stop.clone(), answered.clone());
                let (url, name) = (url.to_owned(), name.to_owned());
                std::thread::spawn(move || {
                    let gateway = Gateway::with_timeout(&url, Duration::from_secs(30));
                    let mut samples = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let input = format!("client {client} request {i}");
                        let sent = Instant::now();
                        let answer = gateway.invoke(&name, input.as_bytes());
                        let (ok, detail, executed_by) = match answer {
                            Ok(a) => (
                                a.status == 200 && a.body == input.as_bytes(),
                                format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
                                a.executed_by().to_owned(),
                            ),
                            Err(e) => (false, e.to_string(), String::new()),
                        };
                        answered.fetch_add(1, Ordering::Relaxed);
                        samples.push(Sample {
                            sent,
                            answered: Instant::now(),
                            ok,
                            detail,
                            executed_by,
                        });
                        i += 1;
                    }
                    samples
                })
            })
            .collect();
        Self {
            stop,
            answered,
            clients,
        }
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests beyond those answered now have been answered.
    pub fn wait_for_more(&self, more: usize) {
        let target = self.answered() + more;
        wait_until(
            &format!("the clients have {target} answers"),
            DEADLINE,
            || self.answered() >= target,
        );
    }

    /// Stops the clients; every request they sent.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .flat_map(|client| client.join().unwrap())
            .collect()
    }
}
