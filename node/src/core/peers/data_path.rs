//! Where a peer's data plane is reached: the address its own data-plane connection to this
//! node comes from, while one is open, else the address its statuses advertise. For a peer
//! behind a NAT, whose advertised address may be private (this node does not dial it) or valid
//! only for another destination, the first is the one that works. While that connection is
//! open, the NAT in front of the peer forwards what this node sends there back to it: the peer
//! keeps such a connection to each public neighbour for this (`standing`).
//!
//! Those neighbours are its *rendezvous*, and it names them among its addresses as
//! `/p2p/<rendezvous>/p2p-circuit`: a node that wants to reach it asks one of them to
//! introduce it (`data::reach`). Such an address is never dialed over libp2p here.

use std::net::SocketAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use wasmesh_protocol::PublicKey;

use super::{PeerInfo, PeerTable};

/// Rendezvous taken from one peer's addresses, at most.
pub const MAX_RENDEZVOUS_HINTS: usize = 4;

/// `/p2p/<rendezvous>/p2p-circuit`: how a node behind a NAT names a rendezvous.
pub fn circuit_via(rendezvous: PeerId) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::P2p(rendezvous))
        .with(Protocol::P2pCircuit)
}

/// Whether `addr` names a rendezvous rather than a place to dial.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The rendezvous named among `advertised` (the peer before `/p2p-circuit`), each once, at
/// most [`MAX_RENDEZVOUS_HINTS`].
pub fn rendezvous_in(advertised: &[String]) -> Vec<PeerId> {
    let mut named = Vec::new();
    let found = advertised
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .filter_map(|addr| {
            let mut before = None;
            for protocol in addr.iter() {
                match protocol {
                    Protocol::P2p(id) => before = Some(id),
                    Protocol::P2pCircuit => return before,
                    _ => {}
                }
            }
            None
        });
    for rendezvous in found {
        if named.len() == MAX_RENDEZVOUS_HINTS {
            break;
        }
        if !named.contains(&rendezvous) {
            named.push(rendezvous);
        }
    }
    named
}

impl PeerInfo {
    /// The data-plane address to use: where its open connection to this node comes from (a
    /// path proven to work, and behind a NAT that maps each destination apart the only one),
    /// else the advertised one.
    pub fn data_addr(&self) -> Option<SocketAddr> {
        self.seen_quic_addr.or(self.quic_addr)
    }
}

impl PeerTable {
    /// This node's data plane accepted a connection from the peer with node key `key`, coming
    /// from `addr` (`open`), or that connection closed. A peer not in the table is ignored (its
    /// entry comes with its libp2p connection).
    pub fn data_plane_seen(&mut self, key: PublicKey, addr: SocketAddr, open: bool) {
        let Some(id) = wasmesh_keys::identity::peer_id(&key) else {
            return;
        };
        let Some(peer) = self.get_mut(&id) else {
            return;
        };
        if open {
            peer.seen_quic_addr = Some(addr);
        } else if peer.seen_quic_addr == Some(addr) {
            peer.seen_quic_addr = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use libp2p::PeerId;

    use super::*;
    use crate::core::peers::Newcomer;

    #[test]
    fn rendezvous_named_in_addresses_are_found_and_never_dialed() {
        let rendezvous = PeerId::random();
        let circuit = circuit_via(rendezvous);
        assert!(is_circuit(&circuit));
        assert!(!is_circuit(
            &"/ip4/198.18.0.1/udp/1/quic-v1".parse().unwrap()
        ));
        let advertised = vec![
            "/ip4/198.18.0.1/udp/1/quic-v1".to_owned(),
            circuit.to_string(),
            "not an address".to_owned(),
        ];
        assert_eq!(rendezvous_in(&advertised), vec![rendezvous]);
        let many: Vec<String> = (0..10)
            .map(|_| circuit_via(PeerId::random()).to_string())
            .collect();
        assert_eq!(rendezvous_in(&many).len(), MAX_RENDEZVOUS_HINTS);
    }

    #[test]
    fn a_peer_behind_a_nat_is_reached_where_its_connection_comes_from_while_it_is_open() {
        let keys = wasmesh_protocol::Keypair::from_seed([7; 32]);
        let id = wasmesh_keys::identity::peer_id(&keys.public()).unwrap();
        let mut table = PeerTable::default();
        table.track(id, Newcomer::Chosen, Instant::now());
        let seen: SocketAddr = "198.18.0.11:40000".parse().unwrap();
        table.data_plane_seen(keys.public(), seen, true);
        assert_eq!(table.get(&id).unwrap().data_addr(), Some(seen));
        let older: SocketAddr = "198.18.0.11:39999".parse().unwrap();
        table.data_plane_seen(keys.public(), older, false);
        assert_eq!(
            table.get(&id).unwrap().data_addr(),
            Some(seen),
            "another connection closed"
        );
        table.data_plane_seen(keys.public(), seen, false);
        assert_eq!(table.get(&id).unwrap().data_addr(), None);
        let advertised: SocketAddr = "198.18.0.12:4202".parse().unwrap();
        table.get_mut(&id).unwrap().quic_addr = Some(advertised);
        assert_eq!(table.get(&id).unwrap().data_addr(), Some(advertised));
        table.data_plane_seen(keys.public(), seen, true);
        assert_eq!(
            table.get(&id).unwrap().data_addr(),
            Some(seen),
            "the proven path first"
        );
    }
}
