//! The request path under the load users put on it, against a real `wasmesh node run` process:
//! clients that reset their connections mid-request, load runs cut off mid-flight, and
//! connections that stall. The node must give back everything those requests held and keep
//! serving.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::fixture_path;
use support::process::{self, NodeProcess};
use support::wait::{DEADLINE, wait_until};

/// A node with `echo` and `slow` (a guest that runs for about 30 ms) published and ready.
fn node_with_guests(dir: &std::path::Path) -> NodeProcess {
    let (key, public) = process::publisher_key(dir);
    let node = NodeProcess::start(&dir.join("node"), &public, &[], &[]);
    for (fixture, name) in [("echo.wat", "echo"), ("slow.wat", "slow")] {
        process::publish(dir, &key, &node, &fixture_path(fixture), name);
    }
    wait_until("echo and slow are ready", DEADLINE, || {
        node.is_ready("echo") && node.is_ready("slow")
    });
    node
}

fn gateway_addr(node: &NodeProcess) -> SocketAddr {
    node.url
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address")
}

fn invoke_request(module: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/invoke/{module} HTTP/1.1\r\nhost: wasmesh\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Closes a connection with a TCP reset, as a client killed mid-request does.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// What the node holds for requests: guests in flight, slots busy, requests queued.
fn held(node: &NodeProcess) -> (u64, u64, u64) {
    let status = node.status();
    let count = |key: &str| status[key].as_u64().unwrap_or(u64::MAX);
    (count("in_flight"), count("running"), count("queued"))
}

/// Sends `count` requests to `module` one after another; returns the slowest.
fn requests_succeed(node: &NodeProcess, module: &str, count: usize) -> Duration {
    let gateway = node.gateway(Duration::from_secs(30));
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let input = format!("request {i}");
        let sent = Instant::now();
        let answer = gateway.invoke(module, input.as_bytes()).unwrap();
        slowest = slowest.max(sent.elapsed());
        assert_eq!(
            answer.status,
            200,
            "{module} request {i}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.body, input.as_bytes());
    }
    slowest
}

#[test]
fn clients_that_vanish_mid_request_leave_nothing_held() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_guests(dir.path());
    let addr = gateway_addr(&node);
    let before = requests_succeed(&node, "slow", 5);

    // 10 rounds of 64 clients that send whole requests and reset before the answer, some at
    // once, some while their guest runs.
    for round in 0..10u64 {
        let clients: Vec<_> = (0..64u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let module = if i % 2 == 0 { "slow" } else { "echo" };
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .write_all(&invoke_request(module, b"gone before the answer"))
                        .unwrap();
                    // Some reset at once, some while their guest waits for a slot or runs.
                    if (i + round) % 3 != 0 {
                        std::thread::sleep(Duration::from_millis((i * 7 + round) % 40));
                    }
                    reset(stream);
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    }

    // Load runs cut off mid-flight: keep-alive clients sending back to back, all reset at once.
    for _ in 0..3 {
        let stop = Instant::now() + Duration::from_millis(400);
        let clients: Vec<_> = (0..64u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let module = if i % 4 == 0 { "slow" } else { "echo" };
                    let mut stream = TcpStream::connect(addr).unwrap();
                    let mut buffer = [0u8; 4096];
                    while Instant::now() < stop {
                        stream.write_all(&invoke_request(module, b"load")).unwrap();
                        // Read some of the answer (the rest may still be in flight).
                        if stream.read(&mut buffer).unwrap_or(0) == 0 {
                            break;
                        }
                    }
                    stream
                        .write_all(&invoke_request(module, b"cut off"))
                        .unwrap();
                    reset(stream);
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    }

    let cut_off = Instant::now();
    wait_until("nothing is held for the vanished clients", DEADLINE, || {
        held(&node) == (0, 0, 0)
    });
    println!(
        "in_flight, slots and queue empty {} ms after the last client left",
        cut_off.elapsed().as_millis()
    );
    // The next requests run as before: one wedged slot would make them wait for a deadline.
    let after = requests_succeed(&node, "slow", 10).max(requests_succeed(&node, "echo", 10));
    println!("slowest request before: {before:?}, after: {after:?}");
    assert!(
        after < Duration::from_secs(1),
        "requests after the abuse took {after:?}: something is still held"
    );
}

/// Opens a connection that sends `head` and then nothing more.
fn stalled(addr: SocketAddr, head: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    stream
}

/// Whether the server has closed the connection (read gives end of stream or an error).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // An error answer (408) may come before the close.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn stalled_connections_are_closed_while_others_are_served() {
    raise_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_guests(dir.path());
    let addr = gateway_addr(&node);

    // 1000 connections that never finish their headers, 64 that announce 1 MiB and send 10 bytes.
    let mut connections: Vec<TcpStream> = (0..1000)
        .map(|_| stalled(addr, b"POST /v1/invoke/echo HTTP/1.1\r\nhost: wasmesh\r\n"))
        .collect();
    let body_head = b"POST /v1/invoke/echo HTTP/1.1\r\nhost: wasmesh\r\ncontent-length: 1048576\r\n\r\n0123456789";
    connections.extend((0..64).map(|_| stalled(addr, body_head)));
    let opened = Instant::now();

    // A normal request meanwhile is served as usual.
    let slowest = requests_succeed(&node, "echo", 5);
    println!("normal requests beside 1064 stalled connections: slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "took {slowest:?}");

    // The server closes every stalled connection by itself (default limits: 10 s each).
    wait_until(
        "the server closed every stalled connection",
        DEADLINE,
        || {
            connections.retain_mut(|stream| !closed_by_server(stream));
            connections.is_empty()
        },
    );
    let took = opened.elapsed();
    println!(
        "all stalled connections closed after {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(60));
    requests_succeed(&node, "echo", 5);
}

/// 1064 sockets on each side: lift this process's soft limit to its hard limit.
fn raise_file_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}
