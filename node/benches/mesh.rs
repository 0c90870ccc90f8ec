//! Mesh-core benchmark: blob fetch against a raw quinn stream of the same size, publish-to-ready
//! on 3 and 10 nodes, and the resident memory of an idle node process.
//!
//! Run: `cargo bench -p wasmesh-node --bench mesh`. Prints Markdown tables of medians.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmesh_node::admission::Admission;
use wasmesh_node::config::NodeConfig;
use wasmesh_node::daemon::Node;
use wasmesh_node::data::{DataPlane, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_testkit::Gateway;
use wasmesh_testkit::fixtures::{bundle, fixture};
use wasmesh_testkit::process::{NodeProcess, publisher_key};

#[path = "support/raw_quinn.rs"]
mod raw_quinn;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// CPU time (user and system) this process has used so far: both ends of a transfer here.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Wall-clock and CPU time of one transfer.
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

/// Times `transfer`, by the clock and by the CPU time this process used meanwhile.
async fn timed<F: std::future::Future<Output = ()>>(transfer: F) -> Timed {
    let (start, cpu) = (Instant::now(), cpu_time());
    transfer.await;
    Timed {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
    }
}

fn mib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// Rounds of each transfer measurement; raw quinn and the fetch alternate, so that both see the
/// same state of a shared machine.
const FETCH_ROUNDS: usize = 11;

/// The fetch and its baseline, ready to time one transfer each.
struct FetchBench {
    size: usize,
    raw: raw_quinn::RawClient,
    _raw_server: quinn::Endpoint,
    client: DataPlane,
    provider: PeerAddr,
    hash: ContentHash,
    dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl FetchBench {
    /// A provider holding a blob of `size` bytes, a client data plane, and a raw quinn server
    /// sending as many bytes.
    async fn new(size: usize) -> Self {
        let raw_server = raw_quinn::serve(size);
        let raw = raw_quinn::RawClient::connect(raw_server.local_addr().expect("addr")).await;
        let server_keys = Keypair::from_seed([3; 32]);
        let client_keys = Keypair::from_seed([4; 32]);
        let dirs = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let server_store = Store::open(dirs.0.path()).expect("store");
        let blob: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let hash = ContentHash::of(&blob);
        server_store.put_blob(hash, &blob).expect("put");
        let metrics = Arc::new(Metrics::default());
        let server = DataPlane::bind(
            local(),
            TlsIdentity::new(&server_keys, None).expect("identity"),
            Admission::Open,
            metrics.clone(),
        )
        .expect("bind");
        let provider = PeerAddr {
            key: server_keys.public(),
            addr: server.local_addr().expect("addr"),
        };
        tokio::spawn(server.clone().serve(server_store, None));
        let client = DataPlane::bind(
            local(),
            TlsIdentity::new(&client_keys, None).expect("identity"),
            Admission::Open,
            metrics,
        )
        .expect("bind");
        Self {
            size,
            raw,
            _raw_server: raw_server,
            client,
            provider,
            hash,
            dirs,
        }
    }

    /// Baseline: one raw quinn stream moving the bytes from memory to memory, same TLS setup.
    async fn raw_quinn(&self) -> Timed {
        timed(async {
            self.raw.time_stream(self.size).await;
        })
        .await
    }

    /// wasmesh: fetch the blob by hash, verify it while writing, fsync, move it into the store.
    async fn blob_fetch(&self) -> Timed {
        let store = Store::open(self.dirs.1.path()).expect("store");
        store.remove_blob(&self.hash).expect("clean");
        let time = timed(async {
            self.client
                .fetch_blob(self.provider, self.hash, self.size as u64, &store)
                .await
                .expect("fetch");
        })
        .await;
        assert!(store.has_blob(&self.hash));
        time
    }
}

/// Medians of raw quinn and of the fetch for `size` bytes, over alternating rounds (after one
/// round of each to warm up: connections, page cache).
async fn fetch_against_raw(size: usize) -> (Timed, Timed) {
    let bench = FetchBench::new(size).await;
    bench.raw_quinn().await;
    bench.blob_fetch().await;
    let (mut raw, mut fetch) = (Vec::new(), Vec::new());
    for _ in 0..FETCH_ROUNDS {
        raw.push(bench.raw_quinn().await);
        fetch.push(bench.blob_fetch().await);
    }
    let medians = |samples: Vec<Timed>| Timed {
        wall: median(samples.iter().map(|t| t.wall).collect()),
        cpu: median(samples.iter().map(|t| t.cpu).collect()),
    };
    (medians(raw), medians(fetch))
}

/// The store's part alone: hash, write, fsync and rename the same bytes, no network.
fn store_alone(size: usize, runs: usize) -> Duration {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let blob: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let hash = ContentHash::of(&blob);
    let samples = (0..runs)
        .map(|_| {
            store.remove_blob(&hash).expect("clean");
            let start = Instant::now();
            store.put_blob(hash, &blob).expect("put");
            start.elapsed()
        })
        .collect();
    median(samples)
}

async fn publish_to_ready(nodes: usize, publishes: usize) -> Duration {
    let publisher = Keypair::from_seed([5; 32]);
    let mut dirs = Vec::new();
    let mut mesh: Vec<Node> = Vec::new();
    for _ in 0..nodes {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = NodeConfig::local(dir.path());
        config.trust = vec![publisher.public().into()];
        if let Some(first) = mesh.first() {
            config.bootstrap = first.p2p_addrs().to_vec();
        }
        mesh.push(Node::start(config).await.expect("node"));
        dirs.push(dir);
    }
    // Let the mesh form: every node connected to the first one's gossip.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One client for every publish, so its connection is reused as a publisher's would be.
    let origin = Gateway::new(&mesh[0].url());
    let mut samples = Vec::new();
    for i in 0..publishes {
        let name = format!("m{i}");
        let body = bundle(&publisher, fixture("reverse.wat"), &name, 1).encode();
        let client = origin.clone();
        let start = Instant::now();
        let status = tokio::task::spawn_blocking(move || {
            client
                .post("/v1/publish", &body, &[])
                .expect("publish")
                .status
        })
        .await
        .expect("join");
        assert_eq!(status, 201);
        let module_ref = name.parse().expect("ref");
        while !mesh.iter().all(|n| n.is_ready(&module_ref)) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "publish did not reach all nodes"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(start.elapsed());
    }
    for node in &mesh {
        node.shutdown().await;
    }
    median(samples)
}

/// Resident memory of an idle `wasmesh node run` process, 5 s after it started serving.
fn idle_rss_kib() -> u64 {
    let dir = tempfile::tempdir().expect("dir");
    let (_, trust) = publisher_key(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), &trust, &[], &[]);
    std::thread::sleep(Duration::from_secs(5));
    node.rss_kib()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("## Blob fetch on loopback (median of {FETCH_ROUNDS} alternating rounds)\n");
        println!(
            "| size | raw quinn stream | wasmesh fetch (verify + fsync + rename) | ratio | CPU, both ends: raw / fetch | verify + store alone |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for mib in [16usize, 64] {
            let size = mib << 20;
            let (raw, fetch) = fetch_against_raw(size).await;
            let alone = store_alone(size, 5);
            println!(
                "| {mib} MiB | {:.0} MiB/s ({:.0} ms) | {:.0} MiB/s ({:.0} ms) | {:.0}% | {:.0} / {:.0} ms | {:.0} ms |",
                mib_per_s(size, raw.wall),
                raw.wall.as_secs_f64() * 1e3,
                mib_per_s(size, fetch.wall),
                fetch.wall.as_secs_f64() * 1e3,
                100.0 * raw.wall.as_secs_f64() / fetch.wall.as_secs_f64(),
                raw.cpu.as_secs_f64() * 1e3,
                fetch.cpu.as_secs_f64() * 1e3,
                alone.as_secs_f64() * 1e3
            );
        }
        println!("\n## Publish to ready on every node (loopback, median of 5 publishes)\n");
        println!("| nodes | publish-to-ready |");
        println!("| ---: | ---: |");
        for nodes in [3usize, 10] {
            let time = publish_to_ready(nodes, 5).await;
            println!("| {nodes} | {:.1} ms |", time.as_secs_f64() * 1e3);
        }
    });
    println!("\n## Idle node\n");
    println!(
        "resident memory after 5 s idle: {} MiB",
        idle_rss_kib() / 1024
    );
}
