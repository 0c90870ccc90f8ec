//! The relays delay each direction of each link by its own amount, and drop what faults say.

use super::*;

#[test]
fn packets_sent_during_a_stall_wait_for_its_end() {
    let since = Instant::now();
    let stalls = Stalls {
        stall: Duration::from_millis(50),
        every: Duration::from_millis(1_000),
        since,
    };
    let at = |ms: u64| stalls.wait_at(since + Duration::from_millis(ms));
    assert_eq!(at(0), Duration::from_millis(50));
    assert_eq!(at(30), Duration::from_millis(20));
    assert_eq!(at(50), Duration::ZERO);
    assert_eq!(at(999), Duration::ZERO);
    assert_eq!(at(1_010), Duration::from_millis(40));
}

fn echo_server(ip: Ipv4Addr) -> SocketAddr {
    let socket = StdUdpSocket::bind((ip, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    addr
}

fn round_trip(from: Ipv4Addr, to: SocketAddr) -> Option<Duration> {
    let socket = StdUdpSocket::bind((from, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    socket.send_to(b"ping", to).unwrap();
    let mut buf = [0u8; 16];
    socket.recv_from(&mut buf).ok().map(|_| started.elapsed())
}

#[test]
fn each_direction_gets_its_own_delay_and_faults_drop_packets() {
    let net = LatencyNet::start(&[vec![0.0, 12.0], vec![30.0, 0.0]]).unwrap();
    let server = echo_server(node_ip(1));
    let relay = net.relay(1, server).unwrap();
    let rtt = round_trip(node_ip(0), relay).unwrap();
    assert!(rtt >= Duration::from_millis(42), "{rtt:?}");
    assert!(rtt < Duration::from_millis(60), "{rtt:?}");

    net.partition(&[vec![0], vec![1]]);
    assert!(!net.connected(0, 1));
    assert_eq!(round_trip(node_ip(0), relay), None);
    net.heal();
    assert!(round_trip(node_ip(0), relay).is_some());
    net.isolate(1, true);
    assert_eq!(round_trip(node_ip(0), relay), None);
    assert!(net.counters().dropped_by_fault.load(Ordering::Relaxed) >= 2);
}
