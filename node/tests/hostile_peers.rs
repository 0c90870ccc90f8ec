//! Strangers against a real `wasmesh node run` process in an open mesh: 2,000 throwaway
//! identities, each from a loopback address of its own, connect, send one status (4,000
//! made-up ready blobs, 8 loopback addresses where nothing listens) and leave. The node tracks
//! at most `MAX_TRACKED_PEERS` peers, its memory stays within 64 MiB of what it held before,
//! it dials none of the made-up addresses, and it keeps serving. From one address, strangers
//! get no more than `--max-inbound-per-address` connections.

mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use support::fixture_path;
use support::process::{self, NodeProcess};
use support::raw_codec::RawCodec;
use support::wait::{DEADLINE, wait_until};
use tokio::sync::watch;
use wasmesh_node::core::peers::MAX_TRACKED_PEERS;
use wasmesh_protocol::wire::{STATUS_PROTOCOL, StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair};

const STRANGERS: usize = 2_000;
const AT_ONCE: usize = 50;
/// Made-up ready blobs in each stranger's status.
const MADE_UP_READY: u32 = 4_000;
/// What the flood may add to the node's memory.
const RSS_GROWTH_KIB: u64 = 64 << 10;

/// A stranger's swarm: its connections come from `ip` (it listens there, and dials from the
/// same socket).
fn stranger_swarm(keys: &Keypair, ip: Ipv4Addr) -> Swarm<request_response::Behaviour<RawCodec>> {
    let mut swarm =
        libp2p::SwarmBuilder::with_existing_identity(wasmesh_keys::identity::libp2p_keypair(keys))
            .with_tokio()
            .with_quic()
            .with_behaviour(|_| {
                request_response::Behaviour::new(
                    [(StreamProtocol::new(STATUS_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default(),
                )
            })
            .expect("behaviour")
            .build();
    swarm
        .listen_on(format!("/ip4/{ip}/udp/0/quic-v1").parse().unwrap())
        .expect("listen");
    swarm
}

/// The loopback address stranger `n` connects from (none is 127.0.0.1, the nodes').
fn stranger_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 2 + (n / 250) as u8, 0, 1 + (n % 250) as u8)
}

/// The key of stranger `n`.
fn stranger_keys(n: usize) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    Keypair::from_seed(seed)
}

/// A status signed by `keys`: made-up ready blobs and addresses where nothing listens.
fn made_up_status(keys: &Keypair, n: usize) -> Vec<u8> {
    let ready: Vec<ContentHash> = (0..MADE_UP_READY)
        .map(|i| ContentHash::of(&[n.to_le_bytes().as_slice(), &i.to_le_bytes()].concat()))
        .collect();
    let p2p_addrs = (0..8)
        .map(|i| format!("/ip4/127.0.{}.{}/udp/9/quic-v1", 200 + i, 1 + n % 250))
        .collect();
    StatusMessage {
        node: keys.public(),
        quic_addr: "127.0.0.1:9".into(),
        ready_version: ready_version(&ready),
        ready: Some(ready),
        in_flight: 0,
        capacity: 4,
        seq: 1,
        p2p_addrs,
        manifests: ContentHash([0; 32]),
        coordinate: Default::default(),
        leaving: false,
    }
    .encode()
}

/// One stranger: connects to every node, sends each its status once connected, and stays until
/// its batch is done (so the message is surely taken), then leaves.
async fn stranger(
    nodes: Vec<Multiaddr>,
    keys: Keypair,
    ip: Ipv4Addr,
    status: Vec<u8>,
    mut batch_done: watch::Receiver<bool>,
) {
    let mut swarm = stranger_swarm(&keys, ip);
    // Dial once listening, so that the connection comes from the stranger's own address.
    loop {
        if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
            break;
        }
    }
    for node in &nodes {
        swarm.dial(node.clone()).expect("dial");
    }
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut sent_to = std::collections::HashSet::<PeerId>::new();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event
                    && sent_to.insert(peer_id)
                {
                    swarm.behaviour_mut().send_request(&peer_id, status.clone());
                }
            }
            _ = batch_done.wait_for(|done| *done) => return,
            _ = tokio::time::sleep_until(until) => panic!("the batch never completed"),
        }
    }
}

/// Strangers `0..count` flood `nodes`, `AT_ONCE` at a time; each batch ends once every node
/// has taken its statuses. `after_batch` sees how many have been sent.
async fn flood(nodes: &[Arc<NodeProcess>], count: usize, mut after_batch: impl FnMut(usize)) {
    let addresses: Vec<Multiaddr> = nodes.iter().map(|n| n.p2p.parse().unwrap()).collect();
    for batch in 0..count / AT_ONCE {
        let (done, batch_done) = watch::channel(false);
        let strangers: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let n = batch * AT_ONCE + i;
                let keys = stranger_keys(n);
                let status = made_up_status(&keys, n);
                tokio::spawn(stranger(
                    addresses.clone(),
                    keys,
                    stranger_ip(n),
                    status,
                    batch_done.clone(),
                ))
            })
            .collect();
        let sent = (batch + 1) * AT_ONCE;
        let watched = nodes.to_vec();
        tokio::task::spawn_blocking(move || {
            wait_until("the batch's statuses are taken", DEADLINE, || {
                watched
                    .iter()
                    .all(|node| node.metric("wasmesh_statuses_total") >= sent as u64)
            });
        })
        .await
        .unwrap();
        done.send_replace(true);
        for stranger in strangers {
            stranger.await.unwrap();
        }
        after_batch(sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_from_thousands_of_fresh_keys_leave_the_node_bounded_and_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), &public, &[], &[]);
    process::publish(dir.path(), &key, &node, &fixture_path("echo.wat"), "echo");
    wait_until("echo is ready", DEADLINE, || node.is_ready("echo"));
    let rss_before = node.rss_kib();
    let node = Arc::new(node);
    let mut rss_peak = 0;
    flood(std::slice::from_ref(&node), STRANGERS, |sent| {
        rss_peak = rss_peak.max(node.rss_kib());
        if sent % 500 == 0 {
            println!(
                "after {sent} strangers: {} peers known, RSS {} MiB",
                node.status()["peers_known"],
                node.rss_kib() >> 10
            );
        }
    })
    .await;

    let node = Arc::try_unwrap(node).unwrap();
    let tracked = node.status()["peers_known"].as_u64().unwrap_or(u64::MAX) as usize;
    let rss_after = node.rss_kib();
    let dials = node.metric("wasmesh_dials_total");
    println!(
        "{STRANGERS} strangers: {tracked} peers tracked, RSS {} MiB before, {} MiB at the peak, \
         {} MiB after, {} statuses taken, {dials} dials",
        rss_before >> 10,
        rss_peak >> 10,
        rss_after >> 10,
        node.metric("wasmesh_statuses_total")
    );
    assert!(tracked <= MAX_TRACKED_PEERS, "{tracked} peers tracked");
    // Strangers keep at most 64 made-up ready blobs each, and their addresses are never
    // dialed.
    assert!(
        rss_after <= rss_before + RSS_GROWTH_KIB,
        "RSS {rss_after} KiB after {STRANGERS} strangers, {rss_before} KiB before"
    );
    assert_eq!(dials, 0, "a stranger's made-up address was dialed");
    let gateway = node.gateway(Duration::from_secs(10));
    let answer = gateway.invoke("echo", b"still serving").unwrap();
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"still serving"[..])
    );
}

/// Addresses in statuses are taken only when private addresses are this node's kind: a node
/// told that they are not (`--allow-private-addrs false`) refuses the loopback addresses
/// strangers list; and neither it nor a node on a loopback mesh dials a stranger's addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_addresses_are_never_dialed_and_private_ones_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = process::publisher_key(dir.path());
    let permissive = Arc::new(NodeProcess::start(&dir.path().join("a"), &public, &[], &[]));
    let strict = Arc::new(NodeProcess::start(
        &dir.path().join("b"),
        &public,
        &[],
        &["--allow-private-addrs", "false"],
    ));
    flood(&[permissive.clone(), strict.clone()], 200, |_| {}).await;
    println!(
        "dials: permissive {}, strict {}; strict refused {} statuses' addresses",
        permissive.metric("wasmesh_dials_total"),
        strict.metric("wasmesh_dials_total"),
        strict.metric("wasmesh_rejections_total{reason=\"peer_address_not_global\"}")
    );
    assert_eq!(permissive.metric("wasmesh_dials_total"), 0);
    assert_eq!(strict.metric("wasmesh_dials_total"), 0);
    assert!(strict.metric("wasmesh_rejections_total{reason=\"peer_address_not_global\"}") >= 200);
}

/// From one address, strangers get at most `--max-inbound-per-address` connections: the rest
/// are refused before their handshake and counted, and none of their statuses is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_from_one_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = process::publisher_key(dir.path());
    let node = Arc::new(NodeProcess::start(
        &dir.path().join("n"),
        &public,
        &[],
        &["--max-inbound-per-address", "4"],
    ));
    let address: Multiaddr = node.p2p.parse().unwrap();
    let (done, batch_done) = watch::channel(false);
    let one_host = Ipv4Addr::new(127, 1, 0, 9);
    let strangers: Vec<_> = (0..12)
        .map(|n| {
            let keys = stranger_keys(3_000_000 + n);
            let status = made_up_status(&keys, n);
            tokio::spawn(stranger(
                vec![address.clone()],
                keys,
                one_host,
                status,
                batch_done.clone(),
            ))
        })
        .collect();
    let watched = node.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("8 strangers are refused", DEADLINE, || {
            watched.metric("wasmesh_rejections_total{reason=\"inbound_per_address\"}") >= 8
        });
    })
    .await
    .unwrap();
    assert!(node.metric("wasmesh_statuses_total") <= 4);
    done.send_replace(true);
    for stranger in strangers {
        stranger.abort();
    }
}

/// Sends `status` to `node` as `keys`, and waits until `seen` holds for the node.
async fn send_as(
    node: &Arc<NodeProcess>,
    keys: Keypair,
    status: Vec<u8>,
    seen: impl Fn(&NodeProcess) -> bool + Send + 'static,
) {
    let (done, publishing_done) = watch::channel(false);
    let address: Multiaddr = node.p2p.parse().unwrap();
    let publisher = tokio::spawn(stranger(
        vec![address],
        keys,
        Ipv4Addr::new(127, 1, 0, 1),
        status,
        publishing_done,
    ));
    let watched = node.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the node sees the status", DEADLINE, || seen(&watched));
    })
    .await
    .unwrap();
    done.send_replace(true);
    publisher.await.unwrap();
}

/// A node process of its own, in a temporary folder (kept while the folder lives).
fn lone_node() -> (tempfile::TempDir, Arc<NodeProcess>) {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = process::publisher_key(dir.path());
    let node = NodeProcess::start(&dir.path().join("n"), &public, &[], &[]);
    (dir, Arc::new(node))
}

/// A status is its sender's own word: a stranger that sends node H's status under its own
/// identity is refused, and H's own copy of the very same bytes is still taken afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_status_does_not_suppress_the_genuine_one() {
    let (_dir, node) = lone_node();
    let honest = stranger_keys(1_000_001);
    let status = made_up_status(&honest, 1);
    send_as(&node, stranger_keys(1_000_002), status.clone(), |n| {
        n.metric("wasmesh_rejections_total{reason=\"bad_status\"}") >= 1
    })
    .await;
    assert_eq!(node.metric("wasmesh_statuses_total"), 0);
    send_as(&node, honest, status, |n| {
        n.metric("wasmesh_statuses_total") >= 1
    })
    .await;
}

/// A peer sending a status that does not decode is refused, counted and disconnected: no
/// honest node sends one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_a_malformed_status_is_disconnected() {
    let (_dir, node) = lone_node();
    let keys = stranger_keys(2_000_001);
    let mut swarm = stranger_swarm(&keys, Ipv4Addr::new(127, 1, 0, 2));
    swarm.dial(node.p2p.parse::<Multiaddr>().unwrap()).unwrap();
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(until, swarm.select_next_some())
            .await
            .expect("the node closes the connection within the deadline");
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                swarm
                    .behaviour_mut()
                    .send_request(&peer_id, b"not a status".to_vec());
            }
            SwarmEvent::ConnectionClosed { .. } => break,
            _ => {}
        }
    }
    assert!(node.metric("wasmesh_rejections_total{reason=\"status_malformed\"}") >= 1);
    assert_eq!(node.metric("wasmesh_statuses_total"), 0);
}
