//! Private meshes: nodes without a valid membership certificate get no manifests and no blobs;
//! a certified node joins; a member whose certificate expires is disconnected, and a peer that
//! never proves membership is disconnected after the admission timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmesh_keys::MembershipCert;
use wasmesh_node::admission::Admission;
use wasmesh_node::data::{DataPlane, FetchError, PeerAddr};
use wasmesh_node::metrics::Metrics;
use wasmesh_node::rejection::Rejection;
use wasmesh_node::store::Store;
use wasmesh_node::tls::TlsIdentity;
use wasmesh_protocol::{ContentHash, Keypair};
use wasmesh_tests::{
    MESH_DEADLINE, TestNode, bundle, fixture, publish, publisher, wait_until_async,
};

const MESH: &str = "edge-private";

/// Writes a certificate for the node key stored in `dir` (creating the key) and returns its path.
fn certify(admin: &Keypair, mesh: &str, dir: &Path) -> PathBuf {
    certify_until(admin, mesh, dir, u64::MAX)
}

/// The same, expiring at `expires_at_ms`.
fn certify_until(admin: &Keypair, mesh: &str, dir: &Path, expires_at_ms: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (node_key, _) = wasmesh_keys::key_file::load_or_generate(&dir.join("node.key")).unwrap();
    let cert = MembershipCert {
        mesh: mesh.to_owned(),
        node: node_key.public(),
        admin: admin.public(),
        not_before_ms: 0,
        expires_at_ms,
    }
    .sign(admin);
    let path = dir.join("node.cert");
    std::fs::write(&path, cert.encode()).unwrap();
    path
}

async fn member(
    admin: &Keypair,
    signer: &Keypair,
    trust: &[wasmesh_protocol::PublicKey],
    bootstrap: &[&TestNode],
    keys_dir: &tempfile::TempDir,
    name: &str,
) -> TestNode {
    let dir = keys_dir.path().join(name);
    let cert = certify(signer, MESH, &dir);
    start_member(admin, cert, dir, trust, bootstrap).await
}

async fn start_member(
    admin: &Keypair,
    cert: PathBuf,
    dir: PathBuf,
    trust: &[wasmesh_protocol::PublicKey],
    bootstrap: &[&TestNode],
) -> TestNode {
    let admin_key = admin.public();
    TestNode::start_with(trust, bootstrap, move |config| {
        config.key = dir.join("node.key");
        config.mesh_admin = Some(admin_key);
        config.cert = Some(cert);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_certified_nodes_get_manifests_and_blobs() {
    let admin = Keypair::from_seed([9; 32]);
    let rogue_admin = Keypair::from_seed([10; 32]);
    let p = publisher(1);
    let trust = [p.public()];
    let keys = tempfile::tempdir().unwrap();

    let a = member(&admin, &admin, &trust, &[], &keys, "a").await;
    let b = member(&admin, &admin, &trust, &[&a], &keys, "b").await;
    let published = bundle(&p, fixture("reverse.wat"), "secret", 1);
    assert_eq!(publish(&a, &published).await.status, 201);
    b.wait_ready("secret").await;

    // An open node, then a node certified by another admin, try to join through A.
    let refused = || a.node.metrics().rejections_of(Rejection::NotAdmitted);
    let outsider = TestNode::start(&trust, &[&a]).await;
    wait_until_async("A refuses the open node", MESH_DEADLINE, || async {
        refused() >= 1
    })
    .await;
    let before = refused();
    let forged = member(&rogue_admin, &rogue_admin, &trust, &[&a], &keys, "forged").await;
    wait_until_async(
        "A refuses the node of another mesh",
        MESH_DEADLINE,
        || async { refused() > before },
    )
    .await;

    // A certified newcomer joins and gets the module (so there was time for the intruders too).
    let d = member(&admin, &admin, &trust, &[&a], &keys, "d").await;
    d.wait_ready("secret").await;
    for intruder in [&outsider, &forged] {
        assert_eq!(
            intruder.version_of("secret"),
            None,
            "an intruder got the manifest"
        );
    }

    // Asking A's data plane for the blob directly fails at the TLS handshake.
    let hash = ContentHash::of(&published.module);
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(scratch.path()).unwrap();
    let stranger = Keypair::from_seed([77; 32]);
    let plane = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&stranger, None).unwrap(),
        Admission::Open,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let target = PeerAddr {
        key: a.node.public_key(),
        addr: a.node.quic_addr(),
    };
    let result = plane
        .fetch_blob(target, hash, published.module.len() as u64, &store)
        .await;
    assert!(
        matches!(
            result,
            Err(FetchError::Connect { .. } | FetchError::Protocol(_))
        ),
        "{result:?}"
    );
    assert!(!store.has_blob(&hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_is_disconnected_when_its_membership_expires() {
    let admin = Keypair::from_seed([9; 32]);
    let p = publisher(1);
    let trust = [p.public()];
    let keys = tempfile::tempdir().unwrap();
    let a = member(&admin, &admin, &trust, &[], &keys, "a").await;
    // B's certificate runs out a few seconds from now: long enough to join and fetch a blob
    // over QUIC, on a slow machine too.
    let dir = keys.path().join("b");
    let expires = wasmesh_node::clock::now_ms() + 8_000;
    let cert = certify_until(&admin, MESH, &dir, expires);
    let b = start_member(&admin, cert, dir, &trust, &[&a]).await;
    let published = bundle(&p, fixture("reverse.wat"), "secret", 1);
    assert_eq!(publish(&a, &published).await.status, 201);
    b.wait_ready("secret").await;
    assert!(
        wasmesh_node::clock::now_ms() < expires,
        "the machine was too slow to see B admitted before its certificate expired"
    );

    // A drops B at expiry, on the libp2p connection and the QUIC one, and does not take it
    // back: B's redials fail admission.
    let b_id = b.node.peer_id();
    let expired = || a.node.metrics().rejections_of(Rejection::MembershipExpired);
    wait_until_async(
        "A disconnects B when its membership expires",
        MESH_DEADLINE,
        || async {
            expired() >= 2
                && !a
                    .node
                    .peer_views()
                    .iter()
                    .any(|p| p.peer_id == b_id && p.connected)
        },
    )
    .await;
    let refused = a.node.metrics().rejections_of(Rejection::NotAdmitted)
        + a.node.metrics().rejections_of(Rejection::QuicHandshake);
    wait_until_async(
        "B's attempts to come back are refused",
        MESH_DEADLINE,
        || async {
            a.node.metrics().rejections_of(Rejection::NotAdmitted)
                + a.node.metrics().rejections_of(Rejection::QuicHandshake)
                > refused
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_never_proves_membership_is_disconnected() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let admin = Keypair::from_seed([9; 32]);
    let keys = tempfile::tempdir().unwrap();
    let a = member(&admin, &admin, &[], &[], &keys, "a").await;
    // A peer that speaks none of wasmesh's protocols: it never answers A's sync request, which
    // is where certificates are shown. It would keep its connection for minutes.
    let mut silent =
        wasmesh_tests::stranger::swarm(libp2p::identity::Keypair::generate_ed25519(), |_| {
            libp2p::swarm::dummy::Behaviour
        });
    silent.dial(a.node.p2p_addrs()[0].clone()).unwrap();
    let until = tokio::time::Instant::now() + MESH_DEADLINE;
    let mut connected = false;
    loop {
        let event = tokio::time::timeout_at(until, silent.select_next_some())
            .await
            .expect("A closes the connection within the deadline");
        match event {
            SwarmEvent::ConnectionEstablished { .. } => connected = true,
            SwarmEvent::ConnectionClosed { .. } if connected => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("cannot reach A: {error}"),
            _ => {}
        }
    }
    assert_eq!(
        a.node.metrics().rejections_of(Rejection::AdmissionTimeout),
        1
    );
}

/// An identity without a certificate that connects to a member of a private mesh and runs
/// Kademlia lookups through it learns no member: the member's Kademlia is closed to it until
/// it proves membership (which it cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uncertified_peer_learns_no_member_through_kademlia() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{StreamProtocol, kad};

    let admin = Keypair::from_seed([9; 32]);
    let p = publisher(1);
    let trust = [p.public()];
    let keys = tempfile::tempdir().unwrap();
    let a = member(&admin, &admin, &trust, &[], &keys, "a").await;
    let b = member(&admin, &admin, &trust, &[&a], &keys, "b").await;
    let c = member(&admin, &admin, &trust, &[&a], &keys, "c").await;
    let members = [b.node.peer_id(), c.node.peer_id()];
    // Their statuses carry their addresses, which let A's Kademlia route through them.
    wait_until_async("A has the members' statuses", MESH_DEADLINE, || async {
        let peers = wasmesh_tests::gateway::get(&a.url(), "/v1/peers")
            .await
            .json()
            .unwrap();
        members.iter().all(|m| {
            peers
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer_id"] == m.to_string().as_str() && p["quic_addr"].is_string())
        })
    })
    .await;

    let outsider = libp2p::identity::Keypair::generate_ed25519();
    let id = outsider.public().to_peer_id();
    let mut swarm = wasmesh_tests::stranger::swarm(outsider, |_| {
        let mut config =
            kad::Config::new(StreamProtocol::new(wasmesh_protocol::wire::KAD_PROTOCOL));
        config.set_query_timeout(std::time::Duration::from_secs(5));
        kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config)
    });
    let a_addr: libp2p::Multiaddr = a.node.p2p_addrs()[0].clone();
    swarm.behaviour_mut().add_address(&a.node.peer_id(), a_addr);
    let mut learned = Vec::new();
    for round in 0..3u8 {
        swarm.behaviour_mut().get_closest_peers(vec![round; 32]);
        let deadline = tokio::time::Instant::now() + MESH_DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the lookup ends");
            match event {
                SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::GetClosestPeers(result),
                    step,
                    ..
                }) => {
                    let peers = match result {
                        Ok(found) => found.peers,
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    learned.extend(peers.into_iter().map(|p| p.peer_id));
                    if step.last {
                        break;
                    }
                }
                SwarmEvent::Behaviour(kad::Event::RoutingUpdated { peer, .. }) => {
                    learned.push(peer)
                }
                _ => {}
            }
        }
    }
    for member in members {
        assert!(
            !learned.contains(&member),
            "the outsider learned member {member} through Kademlia: {learned:?}"
        );
    }
}

/// A member's data plane neither serves nor uses a peer without a membership certificate: the
/// handshake fails in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_neither_serves_nor_uses_an_outsider() {
    let admin = Keypair::from_seed([9; 32]);
    let keys = tempfile::tempdir().unwrap();
    let member_keys = Keypair::from_seed([41; 32]);
    let cert = MembershipCert {
        mesh: MESH.to_owned(),
        node: member_keys.public(),
        admin: admin.public(),
        not_before_ms: 0,
        expires_at_ms: u64::MAX,
    }
    .sign(&admin);
    let private = Admission::Private {
        admin: admin.public(),
        mesh: MESH.to_owned(),
    };
    let member = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&member_keys, Some(&cert)).unwrap(),
        private,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let outsider_keys = Keypair::from_seed([42; 32]);
    let outsider = DataPlane::bind(
        "127.0.0.1:0".parse().unwrap(),
        TlsIdentity::new(&outsider_keys, None).unwrap(),
        Admission::Open,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    // The outsider holds a blob and would answer anything.
    let store = Store::open(keys.path()).unwrap();
    let blob = fixture("echo.wat");
    let hash = ContentHash::of(&blob);
    store.put_blob(hash, &blob).unwrap();
    tokio::spawn(outsider.clone().serve(store.clone(), None));
    tokio::spawn(member.clone().serve(store.clone(), None));

    let at_outsider = PeerAddr {
        key: outsider_keys.public(),
        addr: outsider.local_addr().unwrap(),
    };
    let used = member
        .prove_possession(at_outsider, hash, blob.len() as u64, 0)
        .await;
    match used {
        Err(FetchError::Connect(error)) => {
            assert!(error.reason.contains("not admitted"), "{error}");
        }
        other => panic!("the member used an outsider: {other:?}"),
    }
    let at_member = PeerAddr {
        key: member_keys.public(),
        addr: member.local_addr().unwrap(),
    };
    let served = outsider
        .prove_possession(at_member, hash, blob.len() as u64, 0)
        .await;
    // TLS 1.3 ends the client's handshake before the server has checked its certificate: the
    // member refuses it then, and the outsider's request finds the connection gone.
    assert!(served.is_err(), "the member served an outsider: {served:?}");
}
