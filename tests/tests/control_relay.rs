//! The libp2p relay a node serves for peers behind NATs (`node/src/control/relays.rs`), tried
//! by strangers on 127.0.0.1 against a node with relaying turned on (`--relay true`; by default
//! only a node with a public address relays): a reservation, a circuit through it, circuits it
//! must refuse, and a private mesh's relay closed to outsiders. `reach.rs` shows the relay and
//! the hole punch it leads to between real NATs.

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identity, relay};
use wasmesh_node::metrics::Ended;
use wasmesh_node::rejection::Rejection;
use wasmesh_protocol::Keypair;
use wasmesh_testkit::fixtures::publisher;
use wasmesh_testkit::in_process::TestNode;
use wasmesh_testkit::wait::{MESH_DEADLINE, wait_until_async};
use wasmesh_tests::stranger::relay_user;

/// `node`'s relay: `<its address>/p2p/<its id>/p2p-circuit`.
fn circuit_of(node: &TestNode) -> Multiaddr {
    let addr = node.node.p2p_addrs()[0].clone();
    let addr = match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr,
        _ => addr.with(Protocol::P2p(node.node.peer_id())),
    };
    addr.with(Protocol::P2pCircuit)
}

/// How many times `node`'s relay did `outcome`.
fn relay_count(node: &TestNode, outcome: &'static str) -> u64 {
    node.node
        .metrics()
        .control_relay
        .get_or_create(&Ended { outcome })
        .get()
}

/// Drives `swarm` until `done` picks an event, or panics with `what` after the deadline.
async fn until<B, T>(
    swarm: &mut Swarm<B>,
    what: &str,
    mut done: impl FnMut(SwarmEvent<B::ToSwarm>) -> Option<T>,
) -> T
where
    B: libp2p::swarm::NetworkBehaviour,
{
    let deadline = tokio::time::Instant::now() + MESH_DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
        if let Some(found) = done(event) {
            return found;
        }
    }
}

/// A stranger's swarm that asked `relay` for a reservation; the result of that ask: the
/// relayed address, or why it failed.
async fn reserve(relay: &TestNode) -> (Swarm<relay::client::Behaviour>, Result<Multiaddr, String>) {
    let mut swarm = relay_user(identity::Keypair::generate_ed25519());
    swarm.listen_on(circuit_of(relay)).unwrap();
    let reserved = until(
        &mut swarm,
        "the reservation is answered",
        |event| match event {
            SwarmEvent::NewListenAddr { address, .. } => Some(Ok(address)),
            SwarmEvent::ListenerClosed { reason, .. } => {
                Some(Err(reason.err().map_or("closed".into(), |e| e.to_string())))
            }
            _ => None,
        },
    )
    .await;
    (swarm, reserved)
}

/// A stranger reserves an address on an open mesh's relay, and another reaches it through a
/// circuit. A circuit to a peer holding no reservation is refused and counted, and the node
/// serves its own requests throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_carries_a_reserved_circuit_and_refuses_one_to_a_peer_without_a_reservation() {
    let trust = [publisher(1).public()];
    let a = TestNode::start_with(&trust, &[], |config| config.relay = Some(true)).await;
    let (mut listener, reserved) = reserve(&a).await;
    let reserved = reserved.expect("the reservation is accepted");
    wait_until_async(
        "the relay counts the reservation",
        MESH_DEADLINE,
        || async { relay_count(&a, "reservation_accepted") >= 1 },
    )
    .await;
    let listener_id = *listener.local_peer_id();
    // The reserved peer answers circuits while the dialer waits for its connection.
    let listening = tokio::spawn(async move {
        until(
            &mut listener,
            "a peer arrives through the relay",
            |event| match event {
                SwarmEvent::ConnectionEstablished { endpoint, .. } if endpoint.is_relayed() => {
                    Some(())
                }
                _ => None,
            },
        )
        .await;
        listener
    });
    let mut dialer = relay_user(identity::Keypair::generate_ed25519());
    dialer.dial(reserved.clone()).unwrap();
    until(
        &mut dialer,
        "the circuit to the reserved peer opens",
        |event| match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => (peer_id == listener_id && endpoint.is_relayed()).then_some(()),
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                panic!("the circuit failed: {error}")
            }
            _ => None,
        },
    )
    .await;
    let _listener = listening.await.unwrap();
    wait_until_async("the relay counts the circuit", MESH_DEADLINE, || async {
        relay_count(&a, "circuit_accepted") >= 1
    })
    .await;

    let refused_before = a
        .node
        .metrics()
        .rejections_of(Rejection::ControlRelayRefused);
    let nobody = circuit_of(&a).with(Protocol::P2p(PeerId::random()));
    dialer.dial(nobody).unwrap();
    until(
        &mut dialer,
        "the circuit to nobody fails",
        |event| match event {
            SwarmEvent::OutgoingConnectionError { .. } => Some(()),
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id != listener_id => {
                panic!("a circuit to a peer without a reservation opened")
            }
            _ => None,
        },
    )
    .await;
    wait_until_async("the refusal is counted", MESH_DEADLINE, || async {
        a.node
            .metrics()
            .rejections_of(Rejection::ControlRelayRefused)
            > refused_before
    })
    .await;
    let status = wasmesh_tests::gateway::get(&a.url(), "/v1/status").await;
    assert_eq!(
        status.status, 200,
        "the relay still serves its own requests"
    );
}

/// A member of a private mesh relays for members only: an outsider's reservation is refused
/// before it is looked at, as Kademlia is closed to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_meshs_relay_takes_no_reservation_from_an_outsider() {
    let admin = Keypair::from_seed([9; 32]);
    let trust = [publisher(1).public()];
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path().join("a");
    std::fs::create_dir_all(&dir).unwrap();
    let (node_key, _) = wasmesh_keys::key_file::load_or_generate(&dir.join("node.key")).unwrap();
    let cert = wasmesh_keys::MembershipCert {
        mesh: "relay-test".to_owned(),
        node: node_key.public(),
        admin: admin.public(),
        not_before_ms: 0,
        expires_at_ms: u64::MAX,
    }
    .sign(&admin);
    std::fs::write(dir.join("node.cert"), cert.encode()).unwrap();
    let admin_key = admin.public();
    let a = TestNode::start_with(&trust, &[], move |config| {
        config.key = dir.join("node.key");
        config.mesh_admin = Some(admin_key);
        config.cert = Some(dir.join("node.cert"));
        config.relay = Some(true);
    })
    .await;
    let (_outsider, reserved) = reserve(&a).await;
    assert!(reserved.is_err(), "an outsider reserved {reserved:?}");
    assert_eq!(relay_count(&a, "reservation_accepted"), 0);
}
