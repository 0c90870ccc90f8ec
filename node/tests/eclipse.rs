//! No eclipse: strangers cannot keep an honest node out of a node's peer table, and a node whose
//! bootstrap peer is not there yet keeps trying until it is. Real `wasmesh node run`
//! processes; the strangers are throwaway libp2p identities, each from a loopback address of
//! its own.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol};
use support::process::{self, NodeProcess};
use support::raw_codec::RawCodec;
use support::wait::{DEADLINE, wait_until};
use tokio::sync::watch;
use wasmesh_protocol::wire::{STATUS_PROTOCOL, StatusMessage, ready_version};
use wasmesh_protocol::{ContentHash, Keypair};

/// Strangers connected at once.
const STRANGERS: usize = 600;
/// Strangers that connect at a time.
const AT_ONCE: usize = 50;
/// How soon an honest node must be in.
const JOIN_WITHIN: Duration = Duration::from_secs(5);

/// Stranger `n`: connects to `node` from its own loopback address, sends one status, and stays
/// connected until `stop`.
async fn stranger(n: usize, node: Multiaddr, mut stop: watch::Receiver<bool>) {
    let mut seed = [11u8; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    let keys = Keypair::from_seed(seed);
    let mut swarm =
        libp2p::SwarmBuilder::with_existing_identity(wasmesh_keys::identity::libp2p_keypair(&keys))
            .with_tokio()
            .with_quic()
            .with_behaviour(|_| {
                request_response::Behaviour::<RawCodec>::new(
                    [(StreamProtocol::new(STATUS_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default(),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
    let ip = Ipv4Addr::new(127, 3 + (n / 250) as u8, 1, 1 + (n % 250) as u8);
    swarm
        .listen_on(format!("/ip4/{ip}/udp/0/quic-v1").parse().unwrap())
        .unwrap();
    while !matches!(
        swarm.select_next_some().await,
        SwarmEvent::NewListenAddr { .. }
    ) {}
    swarm.dial(node).unwrap();
    let status = StatusMessage {
        node: keys.public(),
        quic_addr: format!("{ip}:9"),
        ready_version: ready_version(&[]),
        ready: Some(Vec::new()),
        in_flight: 0,
        capacity: 4,
        seq: 1,
        p2p_addrs: Vec::new(),
        manifests: ContentHash([0; 32]),
        coordinate: Default::default(),
        leaving: false,
    }
    .encode();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
                    swarm.behaviour_mut().send_request(&peer_id, status.clone());
                }
            }
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// 600 connected strangers that each sent a status leave room for an honest node to join
/// within 5 s: strangers take at most their share of the table, and a newcomer takes the
/// place of the least recently heard of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_strangers_leave_room_for_an_honest_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = process::publisher_key(dir.path());
    let a = NodeProcess::start(&dir.path().join("a"), &public, &[], &[]);
    let address: Multiaddr = a.p2p.parse().unwrap();
    let (stop, stopped) = watch::channel(false);
    let mut strangers = Vec::new();
    for batch in 0..STRANGERS / AT_ONCE {
        for i in 0..AT_ONCE {
            let n = batch * AT_ONCE + i;
            strangers.push(tokio::spawn(stranger(n, address.clone(), stopped.clone())));
        }
        let statuses = ((batch + 1) * AT_ONCE) as u64;
        let url = a.url.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("the batch's statuses are taken", DEADLINE, || {
                process::metric_at(&url, "wasmesh_statuses_total") >= statuses
            });
        })
        .await
        .unwrap();
    }
    println!(
        "{STRANGERS} strangers connected: {} peers known, {} evicted",
        a.status()["peers_known"],
        a.metric("wasmesh_rejections_total{reason=\"stranger_evicted\"}")
    );

    let started = Instant::now();
    let b = NodeProcess::start(&dir.path().join("b"), &public, &[&a], &[]);
    let (a_id, b_id) = (a.peer_id.clone(), b.peer_id.clone());
    let (a_url, b_url) = (a.url.clone(), b.url.clone());
    tokio::task::spawn_blocking(move || {
        wait_until("the honest node joins", JOIN_WITHIN, || {
            lists_connected(&a_url, &b_id) && lists_connected(&b_url, &a_id)
        });
    })
    .await
    .unwrap();
    println!("the honest node joined in {:?}", started.elapsed());
    stop.send_replace(true);
    for stranger in strangers {
        stranger.await.unwrap();
    }
}

/// A node whose bootstrap peer is not there when it starts keeps dialing it, with back-off,
/// and joins once it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_once_its_bootstrap_peer_appears() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = process::publisher_key(dir.path());
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    process::wasmesh(&a_dir, &["keys", "gen", "--out", "node.key"]);
    let shown = process::wasmesh(&a_dir, &["keys", "show", "--key", "node.key"]);
    let a_id = shown
        .lines()
        .find_map(|line| line.strip_prefix("peer id: "))
        .expect("a peer id line")
        .trim()
        .to_owned();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a_listen = format!("/ip4/127.0.0.1/udp/{port}/quic-v1");
    let b = NodeProcess::start(
        &dir.path().join("b"),
        &public,
        &[],
        &["--bootstrap", &format!("{a_listen}/p2p/{a_id}")],
    );
    let b_url = b.url.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("B has dialed its missing bootstrap peer", DEADLINE, || {
            process::metric_at(&b_url, "wasmesh_dials_total") >= 2
        });
    })
    .await
    .unwrap();
    let a = NodeProcess::start(&a_dir, &public, &[], &["--listen", &a_listen]);
    assert_eq!(a.peer_id, a_id);
    let b_url = b.url.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("B joins A", DEADLINE, || lists_connected(&b_url, &a_id));
    })
    .await
    .unwrap();
}

/// Whether the node at `url` lists `peer` as connected in `GET /v1/peers`.
fn lists_connected(url: &str, peer: &str) -> bool {
    process::get_json(&format!("{url}/v1/peers"))
        .as_array()
        .is_some_and(|peers| {
            peers
                .iter()
                .any(|p| p["peer_id"] == peer && p["connected"] == true)
        })
}
