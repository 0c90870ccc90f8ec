//! The UDP probe that checks a host's NAT is the kind it should be, before a test relies on it:
//! the host sends from one socket to two probe addresses, which report the source they saw (one
//! mapping for both, or one per destination), then a third socket the host never sent to tries
//! to get a packet in (let in, or dropped).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::{Host, NatKind};

/// How long a packet that should arrive may take.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(5);
/// How long the probe listens for a packet that should be dropped.
const DROP_WINDOW: Duration = Duration::from_millis(500);

/// What the internet saw of one host's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The source the first probe address saw.
    pub first: SocketAddr,
    /// The source the second probe address (another IP) saw.
    pub second: SocketAddr,
    /// Whether a packet from an address and port the host never sent to reached it.
    pub stranger_let_in: bool,
}

impl Observed {
    /// The NAT kind this behaviour is, for a host whose own address is `own`.
    pub fn kind(&self, own: std::net::Ipv4Addr) -> NatKind {
        let one_mapping = self.first == self.second;
        match (self.first.ip() == own, one_mapping, self.stranger_let_in) {
            (true, true, true) => NatKind::None,
            (false, true, true) => NatKind::FullCone,
            (false, true, false) => NatKind::PortRestricted,
            _ => NatKind::Symmetric,
        }
    }
}

/// Probes `host` from `prober`, a public host with two addresses (`prober.addr` and `second`).
pub fn observe(prober: &Host, second: std::net::Ipv4Addr, host: &Host) -> Observed {
    let bind = |ip: std::net::Ipv4Addr| {
        let socket = UdpSocket::bind((ip, 0)).expect("bind a probe socket");
        socket
            .set_read_timeout(Some(ARRIVAL_DEADLINE))
            .expect("read timeout");
        socket
    };
    let (first_probe, second_probe, stranger) =
        prober.enter(|| (bind(prober.addr), bind(second), bind(second)));
    let local = host.enter(|| bind(std::net::Ipv4Addr::UNSPECIFIED));
    let heard_at = |probe: &UdpSocket| {
        local
            .send_to(b"probe", probe.local_addr().expect("probe address"))
            .expect("send a probe");
        let mut buf = [0u8; 16];
        probe.recv_from(&mut buf).expect("the probe arrives").1
    };
    let first = heard_at(&first_probe);
    let second = heard_at(&second_probe);
    stranger.send_to(b"stranger", first).expect("send");
    local
        .set_read_timeout(Some(DROP_WINDOW))
        .expect("read timeout");
    let mut buf = [0u8; 16];
    let stranger_let_in = local.recv_from(&mut buf).is_ok();
    Observed {
        first,
        second,
        stranger_let_in,
    }
}
