//! Gateway benchmark: invoke throughput and latency through the HTTP gateway, against a plain
//! axum handler doing the same echo natively in the same process; and the latency a forward to
//! a peer adds over running locally.
//!
//! Run: `cargo bench -p wasmesh-node --bench gateway`. The load generator is in this file: N
//! keep-alive HTTP/1.1 connections, each sending requests back to back for a fixed time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wasmesh_node::config::{NodeConfig, Replicate};
use wasmesh_node::daemon::Node;
use wasmesh_protocol::Keypair;
use wasmesh_testkit::fixtures::{bundle, fixture};
use wasmesh_testkit::gateway;

const BODY: [u8; 64] = [b'x'; 64];
const RUN_FOR: Duration = Duration::from_secs(3);

struct Load {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: usize) -> Duration {
        self.latencies.sort_unstable();
        self.latencies[(self.latencies.len() * p / 100).min(self.latencies.len() - 1)]
    }
}

/// One keep-alive connection sending POSTs until `until`.
async fn connection(addr: SocketAddr, path: String, until: Instant) -> Vec<Duration> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request = [
        format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        )
        .into_bytes(),
        BODY.to_vec(),
    ]
    .concat();
    let mut latencies = Vec::new();
    let mut line = String::new();
    while Instant::now() < until {
        let start = Instant::now();
        write.write_all(&request).await.expect("write");
        let mut length = 0usize;
        let mut status_ok = false;
        loop {
            line.clear();
            read.read_line(&mut line).await.expect("read");
            if line.starts_with("HTTP/1.1 ") {
                status_ok = line.starts_with("HTTP/1.1 200");
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await.expect("body");
        assert!(status_ok && body == BODY, "bad answer");
        latencies.push(start.elapsed());
    }
    latencies
}

async fn load(addr: SocketAddr, path: &str, concurrency: usize) -> Load {
    let until = Instant::now() + RUN_FOR;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(connection(addr, path.to_owned(), until)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("connection"));
    }
    Load {
        requests: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

async fn native_echo_server() -> SocketAddr {
    let router = Router::new().route("/echo", post(|body: Bytes| async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn start(
    publisher: &Keypair,
    bootstrap: Option<&Node>,
    replicate: Replicate,
    dir: &std::path::Path,
) -> Node {
    let mut config = NodeConfig::local(dir);
    config.trust = vec![publisher.public().into()];
    config.replicate = replicate;
    // WASMESH_BENCH_SPOT_CHECK_RATE: the share of forwarded answers checked again (the
    // default of an open mesh otherwise), to measure what spot checks cost.
    if let Some(rate) = std::env::var("WASMESH_BENCH_SPOT_CHECK_RATE")
        .ok()
        .and_then(|rate| rate.parse().ok())
    {
        config.spot_check_rate = Some(rate);
    }
    if let Some(peer) = bootstrap {
        config.bootstrap = peer.p2p_addrs().to_vec();
    }
    Node::start(config).await.expect("node")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let publisher = Keypair::from_seed([7; 32]);
        let dirs = [tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir")];
        let holder = start(&publisher, None, Replicate::All, dirs[0].path()).await;
        let router = start(&publisher, Some(&holder), Replicate::None, dirs[1].path()).await;
        let echo = bundle(&publisher, fixture("echo.wat"), "echo", 1);
        let published = gateway::publish(&holder.url(), &echo).await.status;
        assert_eq!(published, 201);
        let native = native_echo_server().await;
        // Wait until the router node can forward.
        let module_ref = "echo".parse().expect("ref");
        let deadline = Instant::now() + Duration::from_secs(30);
        while router.held_version(&module_ref).is_none() || !router_can_forward(&router).await {
            assert!(Instant::now() < deadline, "router never learned of the holder");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        println!("## Invoke through the HTTP gateway: raw echo guest, 64-byte body, {} s per row\n", RUN_FOR.as_secs());
        println!("| concurrency | native axum echo (baseline) | wasmesh local invoke | share of baseline | wasmesh p50 / p99 | baseline p50 / p99 |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for concurrency in [1usize, 16, 64] {
            let mut base = load(native, "/echo", concurrency).await;
            let mut mesh = load(holder.http_addr(), "/v1/invoke/echo", concurrency).await;
            println!(
                "| {concurrency} | {:.0} req/s | {:.0} req/s | {:.0}% | {} / {} | {} / {} |",
                base.per_second(),
                mesh.per_second(),
                100.0 * mesh.per_second() / base.per_second(),
                us(mesh.percentile(50)),
                us(mesh.percentile(99)),
                us(base.percentile(50)),
                us(base.percentile(99)),
            );
        }

        println!("\n## Forwarded invoke: added latency over local (concurrency 1)\n");
        let mut local = load(holder.http_addr(), "/v1/invoke/echo", 1).await;
        let mut forwarded = load(router.http_addr(), "/v1/invoke/echo", 1).await;
        let rtt = peer_rtt_us(&router).await;
        let added = forwarded.percentile(50).saturating_sub(local.percentile(50));
        println!("| local p50 | forwarded p50 | added | QUIC/libp2p RTT (ping) | target: RTT + 150 us |");
        println!("| ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {} | {} | {} | {rtt} us | {} us |",
            us(local.percentile(50)),
            us(forwarded.percentile(50)),
            us(added),
            rtt + 150
        );
        router.shutdown().await;
        holder.shutdown().await;
    });
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

async fn router_can_forward(router: &Node) -> bool {
    let modules = gateway::get(&router.url(), "/v1/modules")
        .await
        .json()
        .expect("json");
    modules[0]["providers"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
}

async fn peer_rtt_us(node: &Node) -> u64 {
    let peers = gateway::get(&node.url(), "/v1/peers")
        .await
        .json()
        .expect("json");
    peers
        .as_array()
        .and_then(|list| list.iter().find_map(|p| p["rtt_us"].as_u64()))
        .unwrap_or(0)
}
