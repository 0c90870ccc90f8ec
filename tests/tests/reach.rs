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

    /// The data-plane address A's peer table gives B (`None` while A cannot reach it).
    fn b_data_addr_at_a(&self) -> Option<String> {
        let peers = self
            .a
            .within(|| get_json(&format!("{}/v1/peers", self.a.url)));
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == self.b.peer_id.as_str())?["quic_addr"]
            .as_str()
            .map(str::to_owned)
    }
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
    }
}

/// One cell of the NAT matrix: A public and replicating nothing, B behind `b_nat` holding echo
/// and rev, C behind `c_nat` replicating rev only. Panics unless a request entering at A runs
/// on B, one entering at C runs on B, and rev becomes ready at C (fetched from B).
fn matrix_cell(internet: &mut Internet, a_host: &Host, b_nat: NatKind, c_nat: NatKind) {
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
}

/// Every kind of NAT.
const ANY: [NatKind; 4] = NatKind::ALL;
/// The NATs that keep one mapping for every destination (and no NAT).
const MAPPING_KEPT: [NatKind; 3] = [NatKind::None, NatKind::FullCone, NatKind::PortRestricted];
/// The NATs that let in whatever arrives at a mapping (and no NAT).
const OPEN: [NatKind; 2] = [NatKind::None, NatKind::FullCone];

/// Runs the matrix cells with B behind `b_nat` and C behind each of `c_nats`, each in a new
/// internet with A on it.
fn cells(b_nat: NatKind, c_nats: &[NatKind]) {
    for &c_nat in c_nats {
        let Some(mut internet) = Internet::create() else {
            return;
        };
        let a_host = internet.host(NatKind::None);
        matrix_cell(&mut internet, &a_host, b_nat, c_nat);
    }
}

#[test]
fn a_holder_on_the_internet_is_reached_from_behind_every_nat() {
    cells(NatKind::None, &ANY);
}

#[test]
fn a_holder_behind_a_full_cone_is_reached_from_behind_every_nat() {
    cells(NatKind::FullCone, &ANY);
}

/// Both NATs drop what arrives unasked: the rendezvous A introduces C, and both punch.
#[test]
fn a_holder_behind_a_port_restricted_nat_is_reached_through_an_introduction() {
    cells(NatKind::PortRestricted, &MAPPING_KEPT);
}

/// B's NAT maps each destination apart, so the address A sees is useless to C: B's own dial
/// to C (answering the introduction) gets through C's open NAT, and C uses that path.
#[test]
fn a_holder_behind_a_symmetric_nat_is_reached_from_open_nats() {
    cells(NatKind::Symmetric, &OPEN);
}
