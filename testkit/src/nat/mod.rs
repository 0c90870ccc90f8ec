//! A small internet on one machine, with real NAT: network namespaces joined by veth pairs, an
//! "internet" namespace holding a bridge, and one router namespace per NATed host, its NAT made
//! by nftables in the kernel. Hosts talk real kernel UDP and TCP; nothing leaves the namespaces
//! the harness creates, and every one of them is deleted when the [`Internet`] drops (also when
//! a test panics).
//!
//! The addresses: public hosts and routers' WAN sides in `198.18.0.0/24` (a range reserved for
//! benchmarking networks, which a node treats as globally routable, as it would a real public
//! address), each NATed host alone on its LAN `10.<n>.0.0/24` behind its router `10.<n>.0.1`.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); [`Internet::create`] returns `None` with a
//! message saying what is missing elsewhere, and tests skip.
//!
//! Each NAT kind is checked with a UDP probe ([`probe`]) before a test relies on it.

pub mod probe;

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// How a host reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// On the internet itself, with a public address.
    None,
    /// Behind a NAT that keeps one mapping per local port and lets anyone send to it
    /// (endpoint-independent mapping and filtering).
    FullCone,
    /// Behind a NAT that keeps one mapping per local port, and lets in only packets from an
    /// address and port the host has sent to: what Linux's masquerading gives, and most home
    /// routers.
    PortRestricted,
    /// Behind a NAT that maps each destination to a new random port (`fully-random`): what
    /// carrier-grade NATs and some firewalls do.
    Symmetric,
}

impl NatKind {
    /// Every kind, the open ones first.
    pub const ALL: [NatKind; 4] = [
        NatKind::None,
        NatKind::FullCone,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ];

    /// The nftables ruleset of a router doing this NAT between `lan` and `wan`, for the host at
    /// `host` (`None` for [`NatKind::None`], which has no router).
    fn ruleset(self, host: Ipv4Addr) -> Option<String> {
        let masquerade = match self {
            NatKind::None => return None,
            NatKind::FullCone | NatKind::PortRestricted => "masquerade",
            NatKind::Symmetric => "masquerade fully-random",
        };
        // A full cone forwards whatever arrives at the WAN address to the host, port for port
        // (the masquerade keeps the host's source port while it is free). The others drop what
        // arrives unasked, as a home router's firewall does: such a packet then leaves no
        // connection-tracking entry behind that would take the port the host's own mapping
        // needs (which would break hole punching, as it does behind a router that answers
        // with "port unreachable").
        let inbound = if self == NatKind::FullCone {
            format!(
                "chain pre {{ type nat hook prerouting priority dstnat; iifname \"wan\" meta l4proto udp dnat to {host}; }}"
            )
        } else {
            String::new()
        };
        let firewall = if self == NatKind::FullCone {
            ""
        } else {
            "table inet firewall {\n  chain input { type filter hook input priority filter; iifname \"wan\" ct state new drop; }\n  chain forward { type filter hook forward priority filter; iifname \"wan\" ct state new drop; }\n}\n"
        };
        Some(format!(
            "table ip nat {{\n  chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" {masquerade}; }}\n  {inbound}\n}}\n{firewall}"
        ))
    }
}

/// Names the namespaces of one process's internets apart.
static NEXT_INTERNET: AtomicU32 = AtomicU32::new(0);

/// The internet namespace with its bridge, and the hosts and routers joined to it.
#[derive(Debug)]
pub struct Internet {
    prefix: String,
    /// Every namespace made, deleted on drop (the internet's own first).
    namespaces: Vec<String>,
    hosts: u8,
    /// The public host that probes others, with its second address, once made.
    prober: Option<(Host, Ipv4Addr)>,
}

/// A host: a namespace with one interface, `eth0`, on the internet or on its router's LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub namespace: String,
    /// The address of its own interface (private behind a NAT).
    pub addr: Ipv4Addr,
    /// The address the internet sees its packets come from (its router's, behind a NAT).
    pub public_ip: Ipv4Addr,
    /// How it reaches the internet.
    pub nat: NatKind,
}

impl Internet {
    /// A new, empty internet; `None` (after saying why on stderr) where namespaces cannot be
    /// made: not root, or `ip` or `nft` missing.
    pub fn create() -> Option<Self> {
        let missing = missing_requirement();
        if let Some(why) = missing {
            eprintln!("skipping: the NAT harness needs {why}");
            return None;
        }
        let prefix = format!(
            "wm{}-{}",
            std::process::id(),
            NEXT_INTERNET.fetch_add(1, Ordering::Relaxed)
        );
        let mut internet = Self {
            prefix,
            namespaces: Vec::new(),
            hosts: 0,
            prober: None,
        };
        let inet = internet.namespace("inet");
        ip(&["-n", &inet, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &inet, "link", "set", "br0", "up"]);
        Some(internet)
    }

    /// Adds a host reaching the internet through `nat`, and checks with the UDP probe that its
    /// NAT behaves as that kind does.
    pub fn verified_host(&mut self, nat: NatKind) -> Host {
        let host = self.host(nat);
        let (prober, second) = match &self.prober {
            Some(prober) => prober.clone(),
            None => {
                let prober = self.host(NatKind::None);
                let second = Ipv4Addr::new(198, 18, 0, 100 + self.hosts);
                ip(&[
                    "-n",
                    &prober.namespace,
                    "addr",
                    "add",
                    &format!("{second}/24"),
                    "dev",
                    "eth0",
                ]);
                self.prober = Some((prober.clone(), second));
                (prober, second)
            }
        };
        let observed = probe::observe(&prober, second, &host);
        assert_eq!(
            observed.kind(host.addr),
            nat,
            "the {nat:?} NAT does not behave as one: {observed:?}"
        );
        host
    }

    /// Adds a host reaching the internet through `nat`.
    pub fn host(&mut self, nat: NatKind) -> Host {
        self.hosts += 1;
        let n = self.hosts;
        assert!(n < 90, "at most 89 hosts per internet");
        let host = self.namespace(&format!("h{n}"));
        let public_ip = Ipv4Addr::new(198, 18, 0, 10 + n);
        let Some(rules) = nat.ruleset(Ipv4Addr::new(10, n, 0, 2)) else {
            self.wire_to_bridge(&host, &format!("h{n}"), "eth0", public_ip);
            return Host {
                namespace: host,
                addr: public_ip,
                public_ip,
                nat,
            };
        };
        let router = self.namespace(&format!("r{n}"));
        self.wire_to_bridge(&router, &format!("r{n}"), "wan", public_ip);
        let (gateway, addr) = (Ipv4Addr::new(10, n, 0, 1), Ipv4Addr::new(10, n, 0, 2));
        ip(&[
            "-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
            &host,
        ]);
        configure(&router, "lan", gateway);
        configure(&host, "eth0", addr);
        ip(&[
            "-n",
            &host,
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
        ]);
        in_namespace(
            &router,
            "sh",
            &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
        );
        load_rules(&router, &rules);
        Host {
            namespace: host,
            addr,
            public_ip,
            nat,
        }
    }

    /// Adds a host on the internet with a public address and a firewall of its own that drops
    /// what arrives unasked (as a server's host firewall or a cloud's security group does): no
    /// NAT, yet nobody can dial it.
    pub fn firewalled_host(&mut self) -> Host {
        let host = self.host(NatKind::None);
        load_rules(
            &host.namespace,
            "table inet firewall {\n  chain input { type filter hook input priority filter; iifname \"eth0\" ct state new drop; }\n}\n",
        );
        host
    }

    /// Makes namespace `<prefix>-<name>` with its loopback up.
    fn namespace(&mut self, name: &str) -> String {
        let full = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &full]);
        self.namespaces.push(full.clone());
        ip(&["-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A veth from `namespace`'s `inside` (addressed `addr/24`) to the internet's bridge.
    fn wire_to_bridge(&self, namespace: &str, port: &str, inside: &str, addr: Ipv4Addr) {
        let inet = &self.namespaces[0];
        ip(&[
            "-n", inet, "link", "add", port, "type", "veth", "peer", "name", inside, "netns",
            namespace,
        ]);
        ip(&["-n", inet, "link", "set", port, "master", "br0"]);
        ip(&["-n", inet, "link", "set", port, "up"]);
        configure(namespace, inside, addr);
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for namespace in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

impl Host {
    /// `program` to run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Runs `work` on a thread inside this host's namespace: the sockets it opens (a gateway
    /// client's connections, a probe's UDP socket) belong to the host, and stay there after.
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = std::fs::File::open(&path).expect("the namespace exists");
                    // SAFETY: setns on a valid namespace file changes only this thread's
                    // network namespace.
                    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        entered,
                        0,
                        "setns into {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    work()
                })
                .join()
                .expect("the work in the namespace panicked")
        })
    }
}

/// Why namespaces cannot be made here, if they cannot.
fn missing_requirement() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("root (CI runs as root)");
    }
    for (tool, what) in [("ip", "`ip` (iproute2)"), ("nft", "`nft` (nftables)")] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(what);
        }
    }
    None
}

/// Brings `interface` of `namespace` up with `addr/24`.
/// Loads the nftables `rules` in `namespace`.
fn load_rules(namespace: &str, rules: &str) {
    let status = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(rules.as_bytes())?;
            child.wait()
        })
        .expect("nft runs");
    assert!(status.success(), "nft refused the ruleset:\n{rules}");
}

fn configure(namespace: &str, interface: &str, addr: Ipv4Addr) {
    ip(&[
        "-n",
        namespace,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        interface,
    ]);
    ip(&["-n", namespace, "link", "set", interface, "up"]);
}

/// Runs `ip args`; panics when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `program args` inside `namespace`; panics when it fails.
fn in_namespace(namespace: &str, program: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", namespace, program])
        .args(args)
        .output()
        .expect("ip netns exec runs");
    assert!(
        out.status.success(),
        "{program} in {namespace}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
