//! Tests of `own_addresses`.

use super::*;

fn addr(text: &str) -> Multiaddr {
    text.parse().unwrap()
}

fn socket(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn seen_at(seen: SocketAddr, dialed_back: Option<bool>) -> SeenByRendezvous {
    SeenByRendezvous { seen, dialed_back }
}

fn listening_on(listen: &[&str]) -> OwnAddresses {
    OwnAddresses::new(
        listen.iter().map(|a| addr(a)).collect(),
        Vec::new(),
        "0.0.0.0:4202".parse().unwrap(),
        None,
    )
}

#[test]
fn a_wildcard_listener_advertises_its_interfaces_global_first_and_never_loopback_beside_them() {
    let own = listening_on(&[
        "/ip4/127.0.0.1/udp/4201/quic-v1",
        "/ip4/0.0.0.0/udp/4201/quic-v1",
        "/ip4/192.168.1.5/udp/4201/quic-v1",
        "/ip4/198.18.0.7/udp/4201/quic-v1",
    ]);
    assert_eq!(
        own.p2p(),
        vec![
            addr("/ip4/198.18.0.7/udp/4201/quic-v1"),
            addr("/ip4/192.168.1.5/udp/4201/quic-v1"),
        ]
    );
    assert_eq!(own.quic(), socket("198.18.0.7:4202"));
    assert_eq!(own.reachability(), Reachability::Public);
}

#[test]
fn a_node_on_loopback_only_advertises_loopback() {
    let own = listening_on(&["/ip4/127.0.0.1/udp/4201/quic-v1"]);
    assert_eq!(own.p2p(), vec![addr("/ip4/127.0.0.1/udp/4201/quic-v1")]);
    assert_eq!(own.quic(), socket("127.0.0.1:4202"));
    assert_eq!(own.reachability(), Reachability::Local);
}

#[test]
fn an_observed_address_is_advertised_once_two_peers_agree_and_says_a_nat_is_in_between() {
    let mut own = listening_on(&["/ip4/10.1.0.2/udp/4201/quic-v1"]);
    let public = addr("/ip4/198.18.0.101/udp/4201/quic-v1");
    let (first, second) = (PeerId::random(), PeerId::random());
    assert!(own.observed(first, public.clone()), "reachability changes");
    assert_eq!(own.reachability(), Reachability::BehindNat);
    assert!(
        !own.p2p().contains(&public),
        "one peer's word is not enough"
    );
    assert!(!own.observed(first, public.clone()), "the same peer twice");
    assert!(own.observed(second, public.clone()));
    assert_eq!(own.p2p()[0], public);
    assert!(own.p2p().contains(&addr("/ip4/10.1.0.2/udp/4201/quic-v1")));
}

#[test]
fn behind_a_nat_the_rendezvous_agree_on_the_data_plane_address_and_are_named() {
    let mut own = listening_on(&["/ip4/10.1.0.2/udp/4201/quic-v1"]);
    let (first, second) = (
        wasmesh_protocol::Keypair::from_seed([1; 32]).public(),
        wasmesh_protocol::Keypair::from_seed([2; 32]).public(),
    );
    let mapped = socket("198.18.0.101:4202");
    assert!(own.quic_observed(first, seen_at(mapped, None)));
    assert_eq!(own.quic(), mapped);
    let circuit = circuit_via(wasmesh_keys::identity::peer_id(&first).unwrap());
    assert_eq!(
        own.p2p(),
        vec![circuit, addr("/ip4/10.1.0.2/udp/4201/quic-v1")]
    );
    assert!(
        !own.quic_observed(second, seen_at(mapped, None)),
        "agreement changes nothing"
    );
    assert!(
        own.quic_observed(second, seen_at(socket("198.18.0.101:5000"), None)),
        "a NAT that maps each destination apart"
    );
    assert_eq!(
        own.quic(),
        socket("10.1.0.2:4202"),
        "nobody can dial such a mapping"
    );
}

#[test]
fn the_nat_kind_comes_from_the_dial_backs_and_the_mappings_seen() {
    let mut own = listening_on(&["/ip4/10.1.0.2/udp/4201/quic-v1"]);
    let rendezvous = |seed| wasmesh_protocol::Keypair::from_seed([seed; 32]).public();
    let mapped = socket("198.18.0.101:4202");
    assert_eq!(own.nat(), None, "nothing said yet");
    assert!(own.quic_observed(rendezvous(1), seen_at(mapped, Some(false))));
    assert_eq!(own.nat(), Some(NatKind::Filtering));
    assert!(own.quic_observed(rendezvous(2), seen_at(mapped, Some(true))));
    assert_eq!(own.nat(), Some(NatKind::Open), "the latest dial back");
    assert!(own.quic_observed(rendezvous(3), seen_at(socket("198.18.0.101:6000"), None)));
    assert_eq!(own.nat(), Some(NatKind::Symmetric));
    assert_eq!(
        listening_on(&["/ip4/198.18.0.7/udp/4201/quic-v1"]).nat(),
        None
    );
}

/// A node with a public address asks a neighbour to dial it back: let in, it stays public and
/// names no rendezvous; dropped (a firewall), it is firewalled and stands on rendezvous.
#[test]
fn a_public_node_whose_dial_back_is_dropped_is_firewalled() {
    let checker = wasmesh_protocol::Keypair::from_seed([1; 32]).public();
    let own_addr = socket("198.18.0.7:4202");
    let listen = ["/ip4/198.18.0.7/udp/4201/quic-v1"];
    let mut open = listening_on(&listen);
    assert_eq!(open.reachable(), None);
    open.quic_observed(checker, seen_at(own_addr, Some(true)));
    assert_eq!(open.reachability(), Reachability::Public);
    assert!(open.dialable_directly());
    assert_eq!(open.reachable(), Some(true));
    assert_eq!(open.p2p(), vec![addr(listen[0])], "no rendezvous named");
    let mut walled = listening_on(&listen);
    assert!(walled.quic_observed(checker, seen_at(own_addr, Some(false))));
    assert_eq!(walled.reachability(), Reachability::Firewalled);
    assert!(!walled.dialable_directly());
    assert_eq!(walled.quic(), own_addr);
    assert_eq!(walled.nat(), Some(NatKind::Filtering));
    assert_eq!(walled.reachable(), Some(false));
    let rendezvous = circuit_via(wasmesh_keys::identity::peer_id(&checker).unwrap());
    assert_eq!(walled.p2p(), vec![addr(listen[0]), rendezvous]);
}

#[test]
fn private_observations_and_floods_of_observations_are_ignored() {
    let mut own = listening_on(&["/ip4/10.1.0.2/udp/4201/quic-v1"]);
    assert!(!own.observed(PeerId::random(), addr("/ip4/10.1.0.9/udp/9/quic-v1")));
    for port in 0..100u16 {
        own.observed(
            PeerId::random(),
            addr(&format!("/ip4/198.18.0.1/udp/{port}/quic-v1")),
        );
    }
    assert_eq!(own.observed.len(), MAX_OBSERVED);
}

#[test]
fn announced_addresses_are_advertised_alone() {
    let own = OwnAddresses::new(
        vec![addr("/ip4/10.0.0.2/udp/4201/quic-v1")],
        vec![addr("/dns4/node.example.org/udp/4201/quic-v1")],
        "0.0.0.0:4202".parse().unwrap(),
        Some("203.0.113.9:4202".parse().unwrap()),
    );
    assert_eq!(
        own.p2p(),
        vec![addr("/dns4/node.example.org/udp/4201/quic-v1")]
    );
    assert_eq!(own.quic(), socket("203.0.113.9:4202"));
    assert_eq!(own.reachability(), Reachability::Announced);
}
