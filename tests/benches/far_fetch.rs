//! Blob fetch from a provider 2 ms away (one way), through the simulator's delaying UDP relay:
//! 16 MiB of bytes shaped like code, which cross the wire compressed with zstd, against 16 MiB
//! that do not compress, which cross it as they are. The relay forwards every datagram on one
//! thread, so it is also a link slower than loopback, as a link between sites is.
//!
//! Run: `cargo bench -p wasmesh-tests --bench far_fetch`. Prints a Markdown table of medians.
//! `FAR_FETCH_ONE_WAY_MS` and `FAR_FETCH_MIB` change the delay (2 ms) and the size (16 MiB).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmesh_node::admission::Admission;
use wasmesh_node::data::{DataPlane, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_sim::relay::{LatencyNet, node_ip};
use wasmesh_tests::{code_like_bytes, incompressible_bytes};

const RUNS: usize = 7;

/// A setting from the environment, or its default.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A data plane on node `index`'s address, its metrics and a store in `dir`.
fn plane(index: usize, dir: &tempfile::TempDir) -> (DataPlane, Arc<Metrics>, Store, Keypair) {
    let keys = Keypair::from_seed([index as u8 + 1; 32]);
    let metrics = Arc::new(Metrics::default());
    let plane = DataPlane::bind(
        SocketAddr::from((node_ip(index), 0)),
        TlsIdentity::new(&keys, None).expect("identity"),
        Admission::Open,
        metrics.clone(),
    )
    .expect("bind");
    (
        plane,
        metrics,
        Store::open(dir.path()).expect("store"),
        keys,
    )
}

/// The median time of fetching `blob` from the far provider, and the bytes it sent per fetch.
async fn far_fetch(blob: &[u8], one_way_ms: f64) -> (Duration, u64) {
    let net = LatencyNet::start(&vec![vec![one_way_ms; 2]; 2]).expect("relays");
    let dirs = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (provider, provider_metrics, provider_store, provider_keys) = plane(0, &dirs.0);
    let hash = ContentHash::of(blob);
    provider_store.put_blob(hash, blob).expect("put");
    let provider_addr = PeerAddr {
        key: provider_keys.public(),
        addr: net
            .relay(0, provider.local_addr().expect("addr"))
            .expect("relay"),
    };
    tokio::spawn(provider.clone().serve(provider_store, None));
    let (client, _, store, _) = plane(1, &dirs.1);
    let mut times = Vec::new();
    for run in 0..=RUNS {
        store.remove_blob(&hash).expect("clean");
        let started = Instant::now();
        client
            .fetch_blob(provider_addr, hash, blob.len() as u64, &store)
            .await
            .expect("fetch");
        // The first run opens the connection and warms the caches.
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    let sent = provider_metrics.traffic().blob.sent_bytes / (RUNS as u64 + 1);
    (times[times.len() / 2], sent)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let one_way_ms: f64 = setting("FAR_FETCH_ONE_WAY_MS", 2.0);
    let size: usize = setting("FAR_FETCH_MIB", 16) << 20;
    runtime.block_on(async {
        println!(
            "## Blob fetch from a provider {one_way_ms} ms away, {} MiB (median of {RUNS})\n",
            size >> 20
        );
        println!("| content | fetch | MiB/s | bytes on the wire |");
        println!("| --- | ---: | ---: | ---: |");
        for (name, blob) in [
            (
                "does not compress: sent as it is",
                incompressible_bytes(size),
            ),
            ("shaped like code: sent compressed", code_like_bytes(size)),
        ] {
            let (time, sent) = far_fetch(&blob, one_way_ms).await;
            println!(
                "| {name} | {:.0} ms | {:.0} | {:.0}% |",
                time.as_secs_f64() * 1e3,
                size as f64 / (1 << 20) as f64 / time.as_secs_f64(),
                100.0 * sent as f64 / size as f64
            );
        }
    });
}
