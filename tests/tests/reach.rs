//! Nodes on a small internet of network namespaces with real NAT (`wasmesh_testkit::nat`):
//! the harness's NAT kinds behave as named, and nodes on different hosts find and serve each
//! other across it. Needs root; skips with a message elsewhere.

use wasmesh_testkit::fixtures::{bundle, fixture, publisher};
use wasmesh_testkit::nat::{Host, Internet, NatKind};
use wasmesh_testkit::process::{NodeProcess, get_json};
use wasmesh_testkit::wait::{DEADLINE, wait_until};

#[test]
fn each_nat_kind_behaves_as_named_under_the_probe() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    for nat in NatKind::ALL {
        // `verified_host` probes the host and fails when its NAT is another kind.
        let host = internet.verified_host(nat);
        assert_eq!(host.nat, nat);
        if nat == NatKind::None {
            assert_eq!(host.addr, host.public_ip);
        } else {
            assert_ne!(
                host.addr, host.public_ip,
                "a NATed host has a private address"
            );
        }
    }
}

/// A mesh of `wasmesh node run` processes on harness hosts: A and the holder B, each behind
/// its own kind of NAT; A replicates nothing, so a request entering at A must run on B.
struct Pair {
    a: NodeProcess,
    b: NodeProcess,
    _dirs: tempfile::TempDir,
}

impl Pair {
    /// A on `a_host`, B on `b_host` joining through A, echo published at B.
    fn start(a_host: &Host, b_host: &Host) -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let keys = publisher(1);
        let trust = keys.public().to_string();
        let a = NodeProcess::start_on(
            a_host,
            &dirs.path().join("a"),
            &trust,
            &[],
            &["--replicate", "none"],
        );
        let b = NodeProcess::start_on(b_host, &dirs.path().join("b"), &trust, &[&a], &[]);
        let published = b.within(|| {
            b.gateway(DEADLINE)
                .publish(&bundle(&keys, fixture("echo.wat"), "echo", 1))
                .unwrap()
        });
        assert_eq!(published.status, 201, "{}", published.text());
        wait_until("B holds echo", DEADLINE, || b.is_ready("echo"));
        Self { a, b, _dirs: dirs }
    }

    /// A node on `host` that replicates nothing (requests entering there run elsewhere),
    /// trusting the pair's publisher, in the pair's folder under `name`, joining through
    /// `bootstrap`.
    fn router(&self, host: &Host, name: &str, bootstrap: &[&NodeProcess]) -> NodeProcess {
        let trust = publisher(1).public().to_string();
        let dir = self._dirs.path().join(name);
        NodeProcess::start_on(host, &dir, &trust, bootstrap, &["--replicate", "none"])
    }

    /// The data-plane address A's peer table gives B (`None` while A cannot reach it).
    fn b_data_addr_at_a(&self) -> Option<String> {
        peer_entry(&self.a, &self.b)?["quic_addr"]
            .as_str()
            .map(str::to_owned)
    }
}

/// `peer`'s entry in `at`'s `/v1/peers` (`None` while it has none).
fn peer_entry(at: &NodeProcess, peer: &NodeProcess) -> Option<serde_json::Value> {
    let peers = at.within(|| get_json(&format!("{}/v1/peers", at.url)));
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer.peer_id.as_str())
        .cloned()
}

/// How `at`'s control connection to `peer` goes (`direct`, `relayed`), while one is open.
fn control_path(at: &NodeProcess, peer: &NodeProcess) -> Option<String> {
    let entry = peer_entry(at, peer)?;
    entry["control_path"].as_str().map(str::to_owned)
}

#[test]
fn a_node_on_every_interface_advertises_an_address_other_hosts_can_dial() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    let (a_host, b_host) = (internet.host(NatKind::None), internet.host(NatKind::None));
    let pair = Pair::start(&a_host, &b_host);
    assert!(
        pair.a.p2p.starts_with(&format!("/ip4/{}/", a_host.addr)),
        "A's bootstrap address is its public one, not {}",
        pair.a.p2p
    );
    let status = pair.b.status();
    assert_eq!(status["addresses"]["reachability"], "public", "{status}");
    let quic = status["addresses"]["quic"].as_str().unwrap_or_default();
    assert_eq!(
        quic.split(':').next(),
        Some(b_host.addr.to_string().as_str()),
        "B advertises its data plane at its address: {status}"
    );
    wait_until("A knows B holds echo", DEADLINE, || {
        pair.a.providers_of("echo") == 1
    });
    let answer = pair.a.within(|| {
        pair.a
            .gateway(DEADLINE)
            .invoke("echo", b"across the internet")
            .unwrap()
    });
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, b"across the internet");
    assert_eq!(answer.executed_by(), pair.b.peer_id);
}

#[test]
fn a_request_entering_at_a_public_node_runs_on_a_holder_behind_each_kind_of_nat() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    let a_host = internet.host(NatKind::None);
    for nat in [
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let b_host = internet.verified_host(nat);
        let pair = Pair::start(&a_host, &b_host);
        wait_until("A knows B holds echo", DEADLINE, || {
            pair.a.providers_of("echo") == 1
        });
        // B's standing connection tells A where B's NAT lets A in: B's router's address.
        wait_until("A can reach B's data plane", DEADLINE, || {
            pair.b_data_addr_at_a()
                .is_some_and(|addr| addr.starts_with(&format!("{}:", b_host.public_ip)))
        });
        let answer = pair.a.within(|| {
            pair.a
                .gateway(DEADLINE)
                .invoke("echo", b"through the NAT")
                .unwrap()
        });
        assert_eq!(answer.status, 200, "behind {nat:?}: {}", answer.text());
        assert_eq!(answer.executed_by(), pair.b.peer_id, "behind {nat:?}");
        assert_eq!(pair.b.status()["addresses"]["reachability"], "behind_nat");
        // A's dial back from a new port gets in only through a full cone (with one rendezvous,
        // a symmetric NAT looks like a filtering one).
        let nat = if nat == NatKind::FullCone {
            "open"
        } else {
            "filtering"
        };
        wait_until(&format!("B finds its NAT {nat}"), DEADLINE, || {
            pair.b.status()["addresses"]["nat"] == nat
        });
    }
}

/// One cell of the NAT matrix: A public and replicating nothing, B behind `b_nat` holding echo
/// and rev, C behind `c_nat` replicating rev only. Panics unless a request entering at A runs
/// on B, one entering at C runs on B, and rev becomes ready at C (fetched from B). Returns the
/// paths C's data-plane connections took: how many were direct, punched and relayed.
fn matrix_cell(internet: &mut Internet, a_host: &Host, b_nat: NatKind, c_nat: NatKind) -> [u64; 3] {
    let (b_host, c_host) = (internet.verified_host(b_nat), internet.verified_host(c_nat));
    let pair = Pair::start(a_host, &b_host);
    let keys = publisher(1);
    let rev = pair.b.within(|| {
        pair.b
            .gateway(DEADLINE)
            .publish(&bundle(&keys, fixture("reverse.wat"), "rev", 1))
            .unwrap()
    });
    assert_eq!(rev.status, 201, "{}", rev.text());
    let c = NodeProcess::start_on(
        &c_host,
        &pair._dirs.path().join("c"),
        &keys.public().to_string(),
        &[&pair.a],
        &["--replicate", "rev"],
    );
    let cell = format!("B behind {b_nat:?}, C behind {c_nat:?}");
    // A lookup, an introduction, a punch, and retries of fetches that found no path yet.
    let punching = 2 * DEADLINE;
    wait_until(&format!("{cell}: rev ready at C"), punching, || {
        c.is_ready("rev")
    });
    for (entry, name) in [(&pair.a, "A"), (&c, "C")] {
        wait_until(&format!("{cell}: {name} runs echo on B"), punching, || {
            let answer = entry.within(|| entry.gateway(DEADLINE).invoke("echo", b"hi").unwrap());
            answer.status == 200 && answer.executed_by() == pair.b.peer_id
        });
    }
    let paths = ["direct", "punched", "relayed"]
        .map(|path| c.metric(&format!("wasmesh_data_dials_total{{outcome=\"{path}\"}}")));
    // The route C's connections took, for the record (`-- --nocapture` shows it).
    eprintln!(
        "{cell}: C's dials direct {}, punched {}, relayed {}",
        paths[0], paths[1], paths[2]
    );
    paths
}

/// [`matrix_cell`] on a new internet with A on it; `None` where the harness cannot run.
fn cell_on_a_new_internet(b_nat: NatKind, c_nat: NatKind) -> Option<[u64; 3]> {
    let mut internet = Internet::create()?;
    let a_host = internet.host(NatKind::None);
    Some(matrix_cell(&mut internet, &a_host, b_nat, c_nat))
}

/// Every kind of NAT.
const ANY: [NatKind; 4] = NatKind::ALL;
/// The NATs that keep one mapping for every destination (and no NAT).
const MAPPING_KEPT: [NatKind; 3] = [NatKind::None, NatKind::FullCone, NatKind::PortRestricted];
/// The NATs that let in whatever arrives at a mapping (and no NAT).
const OPEN: [NatKind; 2] = [NatKind::None, NatKind::FullCone];

/// Runs the matrix cells with B behind `b_nat` and C behind each of `c_nats`; unless `relay_allowed`, C must have reached B without a relay.
fn cells(b_nat: NatKind, c_nats: &[NatKind], relay_allowed: bool) {
    for &c_nat in c_nats {
        let Some([_, _, relayed]) = cell_on_a_new_internet(b_nat, c_nat) else {
            return;
        };
        assert!(
            relay_allowed || relayed == 0,
            "B behind {b_nat:?}, C behind {c_nat:?}: {relayed} relayed dials, none needed"
        );
    }
}

#[test]
fn a_holder_on_the_internet_is_reached_from_behind_every_nat() {
    cells(NatKind::None, &ANY, false);
}

#[test]
fn a_holder_behind_a_full_cone_is_reached_from_behind_every_nat() {
    cells(NatKind::FullCone, &ANY, false);
}

/// Both NATs drop what arrives unasked: the rendezvous A introduces C, and both punch.
#[test]
fn a_holder_behind_a_port_restricted_nat_is_reached_through_an_introduction() {
    cells(NatKind::PortRestricted, &MAPPING_KEPT, false);
}

/// B's NAT maps each destination apart, so the address A sees is useless to C: C's punched
/// handshake fails, and C goes through a relay (or through B's own connection to it, when that
/// comes first).
#[test]
fn a_holder_behind_a_symmetric_nat_is_reached_from_open_nats() {
    cells(NatKind::Symmetric, &OPEN, true);
}

/// No hole punching gets through a NAT that maps each destination apart facing one that drops
/// what it did not ask for: A opens a relay session, and C reaches B through it.
#[test]
fn nodes_that_cannot_punch_reach_each_other_through_a_relay() {
    let pairs = [
        (NatKind::PortRestricted, NatKind::Symmetric),
        (NatKind::Symmetric, NatKind::PortRestricted),
        (NatKind::Symmetric, NatKind::Symmetric),
    ];
    for (b_nat, c_nat) in pairs {
        let Some([_, _, relayed]) = cell_on_a_new_internet(b_nat, c_nat) else {
            return;
        };
        assert!(
            relayed > 0,
            "B behind {b_nat:?}, C behind {c_nat:?}: C's path is relayed"
        );
    }
}

/// B, behind a port-restricted NAT, stands on the public A and D. Once A is gone, a request
/// entering at D still runs on B, and so does one entering at E, a public node that joins
/// after A left (B's rendezvous then are D and E).
#[test]
fn a_node_behind_a_nat_that_loses_a_rendezvous_is_reached_through_the_others() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    let (a_host, b_host) = (
        internet.host(NatKind::None),
        internet.verified_host(NatKind::PortRestricted),
    );
    let (d_host, e_host) = (internet.host(NatKind::None), internet.host(NatKind::None));
    let mut pair = Pair::start(&a_host, &b_host);
    let d = pair.router(&d_host, "d", &[&pair.a]);
    let runs_on_b = |entry: &NodeProcess| {
        let answer = entry.within(|| entry.gateway(DEADLINE).invoke("echo", b"hi").unwrap());
        answer.status == 200 && answer.executed_by() == pair.b.peer_id
    };
    wait_until("D runs echo on B", DEADLINE, || runs_on_b(&d));
    pair.a.kill();
    wait_until("D still runs echo on B", DEADLINE, || runs_on_b(&d));
    let e = pair.router(&e_host, "e", &[&d]);
    wait_until(
        "E, joining after A left, runs echo on B",
        2 * DEADLINE,
        || runs_on_b(&e),
    );
}

/// B and C, each behind a symmetric NAT, stand on the public A and D, and C reaches B through a
/// relay session of one of them. Once that relay is gone, C reaches B through the other.
#[test]
fn nodes_that_lose_their_relay_go_through_another() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    let a_host = internet.host(NatKind::None);
    let b_host = internet.verified_host(NatKind::Symmetric);
    let (c_host, d_host) = (
        internet.verified_host(NatKind::Symmetric),
        internet.host(NatKind::None),
    );
    let pair = Pair::start(&a_host, &b_host);
    let d = pair.router(&d_host, "d", &[&pair.a]);
    let c = pair.router(&c_host, "c", &[&pair.a, &d]);
    let runs_on_b = || {
        let answer = c.within(|| c.gateway(DEADLINE).invoke("echo", b"hi").unwrap());
        answer.status == 200 && answer.executed_by() == pair.b.peer_id
    };
    wait_until("C runs echo on B", 2 * DEADLINE, runs_on_b);
    wait_until(
        "B, seen at two mappings, finds its NAT symmetric",
        DEADLINE,
        || pair.b.status()["addresses"]["nat"] == "symmetric",
    );
    let relayed_bytes = |node: &NodeProcess| node.metric("wasmesh_relayed_bytes_total");
    let (mut relay, other) = if relayed_bytes(&pair.a) >= relayed_bytes(&d) {
        (pair.a, d)
    } else {
        (d, pair.a)
    };
    assert!(relayed_bytes(&relay) > 0, "C's path to B is relayed");
    let relayed_before = c.metric("wasmesh_data_dials_total{outcome=\"relayed\"}");
    relay.kill();
    let lost = std::time::Instant::now();
    wait_until("C runs echo on B again", 2 * DEADLINE, runs_on_b);
    eprintln!(
        "C reached B again {:?} after its relay went",
        lost.elapsed()
    );
    assert!(relayed_bytes(&other) > 0, "the other rendezvous relays now");
    assert!(c.metric("wasmesh_data_dials_total{outcome=\"relayed\"}") > relayed_before);
}

/// B and C, each behind a port-restricted NAT, know each other only through the public A. Each
/// holds a reservation on A's libp2p relay; a dial through it gives a relayed control
/// connection, which both upgrade to a direct one through their NATs (DCUtR). Behind two
/// symmetric NATs no punch works, and the relayed connection is what they keep.
#[test]
fn nodes_behind_nats_punch_a_direct_control_connection() {
    for (nat, path) in [
        (NatKind::PortRestricted, "direct"),
        (NatKind::Symmetric, "relayed"),
    ] {
        let Some(mut internet) = Internet::create() else {
            return;
        };
        let a_host = internet.host(NatKind::None);
        let (b_host, c_host) = (internet.verified_host(nat), internet.verified_host(nat));
        let pair = Pair::start(&a_host, &b_host);
        let c = pair.router(&c_host, "c", &[&pair.a]);
        wait_until(
            &format!("behind {nat:?}: C's control connection to B is {path}"),
            2 * DEADLINE,
            || control_path(&c, &pair.b).as_deref() == Some(path),
        );
        let reserved = "wasmesh_control_relay_total{outcome=\"reservation_accepted\"}";
        wait_until("A counts B's and C's reservations", DEADLINE, || {
            pair.a.metric(reserved) >= 2
        });
        let punched =
            |node: &NodeProcess| node.metric("wasmesh_hole_punches_total{outcome=\"direct\"}");
        if path == "direct" {
            assert!(
                punched(&pair.b) + punched(&c) > 0,
                "the direct path was punched"
            );
        }
    }
}

/// A node with a public address behind a firewall that drops what arrives unasked: its first
/// neighbour's dial back does not get in, so it says it is firewalled, stands on rendezvous,
/// and a request entering at a public node runs on it. A public node without a firewall is
/// dialed back and stays public.
#[test]
fn a_public_node_behind_a_firewall_finds_it_and_still_serves() {
    let Some(mut internet) = Internet::create() else {
        return;
    };
    let a_host = internet.host(NatKind::None);
    let (f_host, d_host) = (internet.firewalled_host(), internet.host(NatKind::None));
    let pair = Pair::start(&a_host, &f_host);
    let d = pair.router(&d_host, "d", &[&pair.a]);
    wait_until("F finds its firewall", DEADLINE, || {
        let addresses = &pair.b.status()["addresses"];
        addresses["reachability"] == "firewalled"
            && addresses["reachable"] == false
            && addresses["direct"] == false
    });
    wait_until("D is dialed back and stays public", DEADLINE, || {
        let addresses = &d.status()["addresses"];
        addresses["reachability"] == "public" && addresses["reachable"] == true
    });
    wait_until("a request entering at D runs on F", 2 * DEADLINE, || {
        let answer = d.within(|| d.gateway(DEADLINE).invoke("echo", b"hi").unwrap());
        answer.status == 200 && answer.executed_by() == pair.b.peer_id
    });
}
