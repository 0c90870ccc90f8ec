//! Latency injected beneath the nodes' transports: a UDP relay per node.
//!
//! Node i binds every socket to its own address `127.0.0.(i+2)` and announces only its relay on
//! `127.0.1.(i+2)`. A relay port forwards to one of its node's sockets; for each sender address
//! it keeps an upstream socket, so the node's replies find their way back. The sender node is
//! known by its source IP, so each direction of each link gets its own delay, `one_way[i][j]`
//! and `one_way[j][i]`, and every round trip a node measures (libp2p ping, quinn's RTT) is the
//! injected one.
//!
//! Receiving runs on a runtime of its own (readiness-driven, so no timer is involved); the delay
//! queue runs on a dedicated thread that waits on a condition variable with a deadline, which
//! has sub-millisecond resolution, where a tokio timer would add about a millisecond per hop.
//! Faults are decided per packet: a partition drops what crosses groups, an isolated (killed)
//! node neither sends nor receives.

use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// Most nodes the address scheme has room for (127.0.0.2 ..= 127.0.0.251).
pub const MAX_NODES: usize = 250;
const MAX_DATAGRAM: usize = 65_536;
/// How long the delay thread sleeps with no packet queued (a new packet wakes it sooner).
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// The address node `index` binds its sockets to.
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (index + 2) as u8)
}

/// The address of node `index`'s relay.
pub fn relay_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, (index + 2) as u8)
}

/// The node an address belongs to, if any.
fn node_of(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            (a == 127 && b == 0 && c == 0 && d >= 2).then(|| usize::from(d) - 2)
        }
        SocketAddr::V6(_) => None,
    }
}

/// Per-link state: delays and faults.
#[derive(Debug)]
struct Links {
    one_way: Vec<Vec<Duration>>,
    /// `group[i]`: node i's side of a partition (all 0 when healed).
    group: Vec<usize>,
    isolated: Vec<bool>,
    /// `slow[i]`: node i stalls now and then (a slow rather than dead node).
    slow: Vec<Option<Stalls>>,
}

/// A node that freezes for `stall` out of every `every` (a paused VM, a garbage collection, a
/// saturated host): packets to or from it during a stall wait until the stall ends. Unlike a
/// lost or delayed packet, retransmission cannot hide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalls {
    /// How long each stall lasts.
    pub stall: Duration,
    /// How often one begins.
    pub every: Duration,
    /// When the first began.
    pub since: Instant,
}

impl Stalls {
    /// What a packet sent at `now` waits for the stall to end (zero outside stalls).
    fn wait_at(&self, now: Instant) -> Duration {
        let every = self.every.as_micros().max(1);
        let phase = now.saturating_duration_since(self.since).as_micros() % every;
        let stall = self.stall.as_micros();
        Duration::from_micros(stall.saturating_sub(phase) as u64)
    }
}

impl Links {
    fn passes(&self, from: usize, to: usize) -> bool {
        from < self.group.len()
            && to < self.group.len()
            && !self.isolated[from]
            && !self.isolated[to]
            && self.group[from] == self.group[to]
    }
}

/// Packet counts of the whole net.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Packets delivered.
    pub forwarded: AtomicU64,
    /// Bytes (UDP payloads) delivered.
    pub forwarded_bytes: AtomicU64,
    /// Packets dropped by a partition or an isolated node.
    pub dropped_by_fault: AtomicU64,
    /// Packets from addresses that are not nodes, or with no target yet.
    pub dropped_unroutable: AtomicU64,
}

struct Pending {
    due: Instant,
    seq: u64,
    bytes: Vec<u8>,
    via: Arc<StdUdpSocket>,
    to: SocketAddr,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    // Reversed: the binary heap pops the earliest packet first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Pending>,
    seq: u64,
}

struct Shared {
    links: RwLock<Links>,
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: AtomicBool,
    counters: NetCounters,
}

impl Shared {
    fn links(&self) -> std::sync::RwLockReadGuard<'_, Links> {
        self.links.read().unwrap_or_else(|e| e.into_inner())
    }

    fn links_mut(&self) -> std::sync::RwLockWriteGuard<'_, Links> {
        self.links.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a packet from node `from` to node `to`, unless a fault drops it.
    fn send_later(
        &self,
        from: usize,
        to: usize,
        bytes: &[u8],
        via: &Arc<StdUdpSocket>,
        dest: SocketAddr,
    ) {
        let (delay, stalls) = {
            let links = self.links();
            if !links.passes(from, to) {
                self.counters
                    .dropped_by_fault
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            (links.one_way[from][to], links.slow[from].or(links.slow[to]))
        };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.seq += 1;
        let seq = queue.seq;
        let now = Instant::now();
        let delay = delay + stalls.map_or(Duration::ZERO, |s| s.wait_at(now));
        queue.heap.push(Pending {
            due: now + delay,
            seq,
            bytes: bytes.to_vec(),
            via: via.clone(),
            to: dest,
        });
        drop(queue);
        self.wake.notify_one();
    }

    /// The delay thread: sends each packet when it is due.
    fn deliver(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = match queue.heap.peek() {
                Some(next) if next.due <= now => {
                    if let Some(packet) = queue.heap.pop() {
                        drop(queue);
                        // A full socket buffer loses the packet, as a congested link would.
                        let _ = packet.via.send_to(&packet.bytes, packet.to);
                        self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .forwarded_bytes
                            .fetch_add(packet.bytes.len() as u64, Ordering::Relaxed);
                        queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    }
                    continue;
                }
                Some(next) => next.due - now,
                None => IDLE_WAKE,
            };
            queue = self
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The relays of a simulated mesh.
pub struct LatencyNet {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    delay_thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LatencyNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyNet").finish_non_exhaustive()
    }
}

impl LatencyNet {
    /// Starts the delay thread and the relays' runtime for a matrix of one-way milliseconds.
    pub fn start(one_way_ms: &[Vec<f64>]) -> io::Result<Self> {
        let nodes = one_way_ms.len();
        if nodes > MAX_NODES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {MAX_NODES} real nodes fit the address scheme"),
            ));
        }
        let one_way = one_way_ms
            .iter()
            .map(|row| {
                row.iter()
                    .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                    .collect()
            })
            .collect();
        let shared = Arc::new(Shared {
            links: RwLock::new(Links {
                one_way,
                group: vec![0; nodes],
                isolated: vec![false; nodes],
                slow: vec![None; nodes],
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: NetCounters::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sim-relay")
            .enable_io()
            .build()?;
        let delay_shared = shared.clone();
        let delay_thread = std::thread::Builder::new()
            .name("sim-delay".into())
            .spawn(move || delay_shared.deliver())?;
        Ok(Self {
            shared,
            runtime: Some(runtime),
            delay_thread: Some(delay_thread),
        })
    }

    /// Opens a relay port for node `node`, forwarding to `target` (one of the node's sockets).
    /// Returns the address peers should use instead of `target`.
    pub fn relay(&self, node: usize, target: SocketAddr) -> io::Result<SocketAddr> {
        let listen = StdUdpSocket::bind((relay_ip(node), 0))?;
        listen.set_nonblocking(true)?;
        let addr = listen.local_addr()?;
        let sender = Arc::new(listen.try_clone()?);
        let shared = self.shared.clone();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| io::Error::other("stopped"))?;
        let handle = runtime.handle().clone();
        runtime.spawn(async move {
            let Ok(listen) = UdpSocket::from_std(listen) else {
                return;
            };
            let mut upstreams: HashMap<SocketAddr, Arc<StdUdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((len, source)) = listen.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(from) = node_of(source) else {
                    shared
                        .counters
                        .dropped_unroutable
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let upstream = match upstreams.get(&source) {
                    Some(upstream) => upstream.clone(),
                    None => match open_upstream(&handle, &shared, node, from, source, &sender) {
                        Ok(upstream) => {
                            upstreams.insert(source, upstream.clone());
                            upstream
                        }
                        Err(error) => {
                            tracing::warn!(%error, "relay cannot open an upstream socket");
                            continue;
                        }
                    },
                };
                shared.send_later(from, node, &buf[..len], &upstream, target);
            }
        });
        Ok(addr)
    }

    /// Cuts the mesh into groups; nodes in no group are alone on their side.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let mut links = self.shared.links_mut();
        let nodes = links.group.len();
        for (i, side) in links.group.iter_mut().enumerate() {
            *side = groups
                .iter()
                .position(|g| g.contains(&i))
                .unwrap_or(nodes + i);
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        self.shared.links_mut().group.fill(0);
    }

    /// Cuts a node off (killed) or reconnects it.
    pub fn isolate(&self, node: usize, isolated: bool) {
        if let Some(flag) = self.shared.links_mut().isolated.get_mut(node) {
            *flag = isolated;
        }
    }

    /// Makes a node stall now and then, or normal again with `None`.
    pub fn set_slow(&self, node: usize, stalls: Option<Stalls>) {
        if let Some(slot) = self.shared.links_mut().slow.get_mut(node) {
            *slot = stalls;
        }
    }

    /// Whether packets flow from `a` to `b` now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        a == b || self.shared.links().passes(a, b)
    }

    /// Packet counts.
    pub fn counters(&self) -> &NetCounters {
        &self.shared.counters
    }

    /// A handle that reads the links' state from any thread.
    pub fn links(&self) -> LinkView {
        LinkView {
            shared: self.shared.clone(),
        }
    }
}

/// Reads which nodes are up and linked, from any thread.
#[derive(Clone)]
pub struct LinkView {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LinkView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkView").finish_non_exhaustive()
    }
}

impl LinkView {
    /// Whether node `node` is on the network (started and not killed).
    pub fn is_up(&self, node: usize) -> bool {
        self.shared
            .links()
            .isolated
            .get(node)
            .is_some_and(|isolated| !isolated)
    }

    /// Whether packets flow from `a` to `b` now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        (a == b && self.is_up(a)) || self.shared.links().passes(a, b)
    }
}

/// Opens the socket that carries packets from `source` (on node `from`) to `node`, and the task
/// that carries `node`'s replies back to `source` through the relay port `reply_via`.
fn open_upstream(
    handle: &tokio::runtime::Handle,
    shared: &Arc<Shared>,
    node: usize,
    from: usize,
    source: SocketAddr,
    reply_via: &Arc<StdUdpSocket>,
) -> io::Result<Arc<StdUdpSocket>> {
    let socket = StdUdpSocket::bind((relay_ip(node), 0))?;
    socket.set_nonblocking(true)?;
    let upstream = Arc::new(socket.try_clone()?);
    let shared = shared.clone();
    let reply_via = reply_via.clone();
    let _guard = handle.enter();
    let socket = UdpSocket::from_std(socket)?;
    handle.spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok((len, _)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            shared.send_later(node, from, &buf[..len], &reply_via, source);
        }
    });
    Ok(upstream)
}

impl Drop for LatencyNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        if let Some(thread) = self.delay_thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
