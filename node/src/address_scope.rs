//! Which peer addresses a node will dial.
//!
//! Addresses arrive in statuses that any peer can write. A node on the internet must not be
//! steered into dialing loopback, private or link-local addresses (its own host, its LAN) by
//! them, so it keeps only globally routable ones unless private addresses are what its mesh is
//! made of: its own explicit listen addresses are private or loopback (a LAN or a local test
//! mesh), or the operator says so (`allow_private_addrs`). A name (`/dns/...`) cannot be
//! judged without resolving it and is kept.
//!
//! The same rule holds for every address the node sends packets to: libp2p dial addresses from
//! statuses, introductions, holder records and Kademlia answers (`control::gate`), and the
//! QUIC data-plane addresses peers advertise ([`socket_is_dialable`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// The IP an address starts with, if it starts with one.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let shared = ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || shared)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00;
    let link_local = (first & 0xffc0) == 0xfe80;
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
}

/// Whether an address is globally routable (names count as such).
pub(crate) fn is_global(addr: &Multiaddr) -> bool {
    match ip_of(addr) {
        Some(IpAddr::V4(ip)) => is_global_v4(ip),
        Some(IpAddr::V6(ip)) => is_global_v6(ip),
        None => true,
    }
}

/// Whether a data-plane address a peer advertised may be sent packets to.
pub(crate) fn socket_is_dialable(addr: &SocketAddr, allow_private_addrs: bool) -> bool {
    allow_private_addrs
        || match addr.ip() {
            IpAddr::V4(ip) => is_global_v4(ip),
            IpAddr::V6(ip) => is_global_v6(ip),
        }
}

/// Whether a node listening on `listen` dials private addresses by default: when one of its
/// own explicit listen addresses is private or loopback (the unspecified 0.0.0.0 says nothing).
pub(crate) fn private_by_default(listen: &[Multiaddr]) -> bool {
    listen.iter().any(|addr| {
        ip_of(addr).is_some_and(|ip| {
            !ip.is_unspecified()
                && match ip {
                    IpAddr::V4(v4) => !is_global_v4(v4),
                    IpAddr::V6(v6) => !is_global_v6(v6),
                }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    /// Tests name no address outside 127.0.0.0/8, even as data: the private and public ranges
    /// are std's `Ipv4Addr` and `Ipv6Addr` classifications, used as they are.
    #[test]
    fn loopback_and_unspecified_addresses_are_not_global_and_names_are_kept() {
        for local in [
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/127.9.9.9/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/ip6/::ffff:127.0.0.1/tcp/4001",
        ] {
            assert!(!is_global(&addr(local)), "{local}");
        }
        assert!(is_global(&addr("/dns4/wasmesh.invalid/tcp/4001")));
    }

    #[test]
    fn a_node_listening_on_a_private_address_dials_private_ones() {
        assert!(private_by_default(&[addr("/ip4/127.0.0.1/udp/0/quic-v1")]));
        assert!(!private_by_default(&[addr(
            "/ip4/0.0.0.0/udp/4001/quic-v1"
        )]));
        assert!(!private_by_default(&[]));
    }
}
