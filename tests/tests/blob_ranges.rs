//! Blobs in verified ranges, from several real providers at once (real quinn data planes and
//! real stores on 127.0.0.1): a provider that lies at a chunk group in the middle of every range
//! it serves is caught at that group and dropped while the others complete the blob, a fetch
//! that failed midway resumes from the groups on disk that still verify, and a blob that
//! compresses crosses the wire compressed from providers tens of milliseconds away (through the
//! simulator's delaying UDP relays, and with more requests in flight to each), plain from one
//! on the same host, and is checked all the same.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use wasmesh_node::admission::Admission;
use wasmesh_node::data::{DataPlane, FetchError, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::rejection::Rejection;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::wire::{BLOB_GROUP_SIZE, MAX_BLOB_REQUEST_GROUPS};
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_sim::relay::{LatencyNet, node_ip};
use wasmesh_tests::{MESH_DEADLINE, code_like_bytes, incompressible_bytes};

/// Bytes of one request's range (64 groups).
const PIECE: u64 = MAX_BLOB_REQUEST_GROUPS as u64 * BLOB_GROUP_SIZE;

/// A data plane with its own key and store, serving the store's blobs.
struct Peer {
    plane: DataPlane,
    keys: Keypair,
    store: Store,
    metrics: Arc<Metrics>,
    dir: tempfile::TempDir,
}

impl Peer {
    fn start(seed: u8) -> Self {
        Self::start_at(seed, Ipv4Addr::LOCALHOST)
    }

    /// A peer whose sockets are bound to `ip` (for a [`LatencyNet`], which knows senders by it).
    fn start_at(seed: u8, ip: Ipv4Addr) -> Self {
        let keys = Keypair::from_seed([seed; 32]);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let plane = DataPlane::bind(
            SocketAddr::from((ip, 0)),
            TlsIdentity::new(&keys, None).unwrap(),
            Admission::Open,
            metrics.clone(),
        )
        .unwrap();
        tokio::spawn(plane.clone().serve(store.clone(), None));
        Self {
            plane,
            keys,
            store,
            metrics,
            dir,
        }
    }

    fn addr(&self) -> PeerAddr {
        PeerAddr {
            key: self.keys.public(),
            addr: self.plane.local_addr().unwrap(),
        }
    }

    fn blob_path(&self, hash: &ContentHash) -> std::path::PathBuf {
        self.dir.path().join("blobs").join(hash.to_string())
    }

    fn blob_bytes_sent(&self) -> u64 {
        self.metrics.traffic().blob.sent_bytes
    }
}

/// `pieces` requests' worth of bytes that do not compress, and a short tail.
fn blob(pieces: u64) -> Vec<u8> {
    incompressible_bytes((pieces * PIECE + 1000) as usize)
}

/// `pieces` requests' worth of bytes shaped like code, and a short tail.
fn code_like_blob(pieces: u64) -> Vec<u8> {
    code_like_bytes((pieces * PIECE + 1000) as usize)
}

/// Overwrites one byte of the stored file at `offset`: the peer keeps serving it, with the
/// hashes of the true blob.
fn corrupt(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_at(&mut byte, offset).unwrap_or(0);
    file.write_all_at(&[byte[0] ^ 0xff], offset).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_liar_among_three_providers_is_caught_at_its_first_bad_group() {
    let data = blob(6);
    let hash = ContentHash::of(&data);
    let size = data.len() as u64;
    let providers: Vec<Peer> = (1..=3).map(Peer::start).collect();
    for provider in &providers {
        provider.store.put_blob(hash, &data).unwrap();
    }
    // The second provider lies in the middle of every range it could be asked for.
    let liar = &providers[1];
    for piece in 0..6 {
        corrupt(&liar.blob_path(&hash), piece * PIECE + PIECE / 2 + 7);
    }

    let receiver = Peer::start(9);
    let addrs: Vec<PeerAddr> = providers.iter().map(Peer::addr).collect();
    let report = tokio::time::timeout(
        MESH_DEADLINE,
        receiver
            .plane
            .fetch_from_any(&addrs, hash, size, &receiver.store),
    )
    .await
    .expect("the fetch ends")
    .expect("the honest providers complete the blob");

    // The liar was caught at a group in the middle of a range, and dropped.
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].0.key, liar.keys.public());
    let FetchError::Lied { group: Some(group) } = report.failures[0].1 else {
        panic!("not caught as a liar: {:?}", report.failures[0].1);
    };
    assert_eq!(
        group % u64::from(MAX_BLOB_REQUEST_GROUPS),
        u64::from(MAX_BLOB_REQUEST_GROUPS) / 2
    );
    assert_eq!(
        receiver.metrics.rejections_of(Rejection::BlobHashMismatch),
        1
    );

    // The blob is complete and verified, every byte received once.
    assert_eq!(receiver.store.read_blob(&hash).unwrap(), data);
    assert_eq!(report.received, size);
    assert_eq!(report.resumed, 0);
    // Both honest providers served ranges: the blob came from several at once.
    for honest in [&providers[0], &providers[2]] {
        assert!(
            honest.blob_bytes_sent() >= PIECE,
            "an honest provider idled"
        );
    }
    // Nothing of the liar's falsified data is anywhere: the receiver serves the true blob.
    let downstream = Peer::start(10);
    downstream
        .plane
        .fetch_blob(receiver.addr(), hash, size, &downstream.store)
        .await
        .expect("the receiver serves what it verified");
    assert_eq!(downstream.store.read_blob(&hash).unwrap(), data);
    let partial = receiver.dir.path().join("blobs").join("partial");
    let left: Vec<_> = std::fs::read_dir(partial)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_resumes_from_the_groups_that_still_verify() {
    let data = blob(6);
    let hash = ContentHash::of(&data);
    let size = data.len() as u64;
    // The first provider's copy goes bad from its fourth range on.
    let failing = Peer::start(1);
    failing.store.put_blob(hash, &data).unwrap();
    for piece in 3..6 {
        corrupt(&failing.blob_path(&hash), piece * PIECE);
    }
    let receiver = Peer::start(9);

    let failures = receiver
        .plane
        .fetch_from_any(&[failing.addr()], hash, size, &receiver.store)
        .await
        .expect_err("the blob cannot be completed from a provider whose copy is bad");
    assert!(
        matches!(failures[..], [(_, FetchError::Lied { .. })]),
        "{failures:?}"
    );
    assert!(
        !receiver.store.has_blob(&hash),
        "an unverified blob was stored"
    );

    // What verified is kept. One group of it goes bad on disk before the next attempt.
    let kept = receiver
        .store
        .partial_blob(hash, size)
        .unwrap()
        .verified_bytes();
    assert!((PIECE..=3 * PIECE).contains(&kept), "kept {kept} bytes");
    let partial_data = receiver
        .dir
        .path()
        .join("blobs")
        .join("partial")
        .join(hash.to_string());
    corrupt(&partial_data, 10 * BLOB_GROUP_SIZE + 3);

    let honest = Peer::start(2);
    honest.store.put_blob(hash, &data).unwrap();
    let report = receiver
        .plane
        .fetch_from_any(&[honest.addr()], hash, size, &receiver.store)
        .await
        .expect("the honest provider completes the blob");
    assert_eq!(report.resumed, kept - BLOB_GROUP_SIZE);
    assert_eq!(report.received, size - report.resumed);
    assert!(honest.blob_bytes_sent() >= report.received);
    assert_eq!(receiver.store.read_blob(&hash).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_that_compresses_crosses_the_wire_compressed_from_afar_and_a_liar_is_still_caught() {
    let data = code_like_blob(4);
    let hash = ContentHash::of(&data);
    let size = data.len() as u64;
    // Nodes 0 and 1 provide, node 2 fetches; every link is 20 ms each way, far enough for a
    // third lane per provider.
    let net = LatencyNet::start(&vec![vec![20.0; 3]; 3]).unwrap();
    let honest = Peer::start_at(1, node_ip(0));
    let liar = Peer::start_at(2, node_ip(1));
    for provider in [&honest, &liar] {
        provider.store.put_blob(hash, &data).unwrap();
    }
    for piece in 0..4 {
        corrupt(&liar.blob_path(&hash), piece * PIECE + PIECE / 2 + 7);
    }
    let far = |index: usize, peer: &Peer| PeerAddr {
        addr: net.relay(index, peer.addr().addr).unwrap(),
        ..peer.addr()
    };

    let receiver = Peer::start_at(9, node_ip(2));
    let report = tokio::time::timeout(
        MESH_DEADLINE,
        receiver.plane.fetch_from_any(
            &[far(0, &honest), far(1, &liar)],
            hash,
            size,
            &receiver.store,
        ),
    )
    .await
    .expect("the fetch ends")
    .expect("the honest provider completes the blob");

    // The liar's ranges came compressed too: its falsified group was caught once inflated.
    assert!(
        matches!(
            report.failures[..],
            [(_, FetchError::Lied { group: Some(_) })]
        ),
        "{:?}",
        report.failures
    );
    assert_eq!(
        receiver.metrics.rejections_of(Rejection::BlobHashMismatch),
        1
    );
    assert_eq!(receiver.store.read_blob(&hash).unwrap(), data);
    assert_eq!(report.received, size);
    // What crossed the wire was well under the blob (36% of it, compressed).
    let sent = honest.blob_bytes_sent() + liar.blob_bytes_sent();
    assert!(sent > 0 && sent < size / 2, "{sent} bytes sent for {size}");

    // From a provider on the same host, the same blob comes plain.
    let near = Peer::start(3);
    near.store.put_blob(hash, &data).unwrap();
    let downstream = Peer::start(10);
    downstream
        .plane
        .fetch_blob(near.addr(), hash, size, &downstream.store)
        .await
        .expect("the near provider serves the blob");
    assert_eq!(downstream.store.read_blob(&hash).unwrap(), data);
    assert!(near.blob_bytes_sent() >= size);
}
