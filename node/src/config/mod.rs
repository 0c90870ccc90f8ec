//! Node configuration: command-line flags over a TOML file over defaults.
//!
//! Every flag of `wasmesh node run` can also be set in the file given with `--config` (see
//! `node/config.example.toml`); a flag given on the command line wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod args;
mod file;

use libp2p::Multiaddr;
use serde::Deserialize;
use wasmesh_keys::TrustEntry;
use wasmesh_protocol::PublicKey;

pub use self::args::NodeArgs;
use crate::executor::ExecutorConfig;

/// Disk a node leaves free by default (64 MiB).
pub const DEFAULT_MIN_FREE_DISK: u64 = 64 << 20;

/// How the node writes its log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// Which modules a node replicates (fetches, compiles and runs itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Replicate {
    /// Every module.
    #[default]
    All,
    /// None: the node only routes.
    None,
    /// Only these names.
    Names(Vec<String>),
}

impl Replicate {
    /// Whether the module `name` is replicated here.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Replicate::All => true,
            Replicate::None => false,
            Replicate::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

impl std::str::FromStr for Replicate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "all" => Ok(Replicate::All),
            "none" => Ok(Replicate::None),
            names => {
                let names: Vec<String> = names.split(',').map(|n| n.trim().to_owned()).collect();
                for name in &names {
                    wasmesh_protocol::manifest::validate_name(name).map_err(|e| e.to_string())?;
                }
                Ok(Replicate::Names(names))
            }
        }
    }
}

/// Limits of the HTTP gateway, so that clients that stall or pile up connections cannot hold a
/// node's file descriptors (config table `[gateway]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLimits {
    /// A client must send a request's whole header within this time, and a keep-alive
    /// connection that sends no new request within it is closed (`header_read_timeout_ms`,
    /// default 10 s).
    pub header_read_timeout: Duration,
    /// A request body whose next bytes do not arrive within this time fails with `408` and its
    /// connection is closed (`body_timeout_ms`, default 10 s).
    pub body_timeout: Duration,
    /// Open connections at most; more are closed at once and counted (`max_connections`,
    /// default 4096).
    pub max_connections: usize,
}

/// How long a client may take to send a request's headers, and then its body, by default.
pub const GATEWAY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open gateway connections at most, by default.
pub const GATEWAY_MAX_CONNECTIONS: usize = 4096;

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: GATEWAY_READ_TIMEOUT,
            body_timeout: GATEWAY_READ_TIMEOUT,
            max_connections: GATEWAY_MAX_CONNECTIONS,
        }
    }
}

/// How often `wasmesh node run` sends its status to its neighbours when nothing changes.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Identity key file.
    pub key: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// QUIC data-plane bind address.
    pub quic: SocketAddr,
    /// HTTP gateway bind address.
    pub http: SocketAddr,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// Trusted publishers, each with the names it may publish.
    pub trust: Vec<TrustEntry>,
    /// Private mesh admin key.
    pub mesh_admin: Option<PublicKey>,
    /// Membership certificate file.
    pub cert: Option<PathBuf>,
    /// Advertised libp2p addresses (empty: the observed and listen ones).
    pub announce: Vec<Multiaddr>,
    /// Advertised QUIC address.
    pub announce_quic: Option<SocketAddr>,
    /// Which modules to replicate.
    pub replicate: Replicate,
    /// Most bytes of replicated blobs (None: no limit).
    pub blob_quota: Option<u64>,
    /// Bytes of disk left free: no blob is fetched that would leave less.
    pub min_free_disk: u64,
    /// Executor settings.
    pub executor: ExecutorConfig,
    /// HTTP gateway limits.
    pub gateway: GatewayLimits,
    /// Whether a slow forward gets a copy sent to the next candidate (first answer wins).
    pub hedging: bool,
    /// Whether loopback, private and link-local addresses advertised by peers are dialed.
    pub allow_private_addrs: bool,
    /// Whether this node serves as a libp2p relay (`None`: when its address is public or
    /// announced).
    pub relay: Option<bool>,
    /// Inbound libp2p connections accepted from one IP address at a time.
    pub max_inbound_per_address: usize,
    /// The share of forwarded answers of raw-ABI modules checked again (`None`: the default
    /// of the mesh's kind).
    pub spot_check_rate: Option<f64>,
    /// How often the node publishes its status.
    pub status_interval: Duration,
    /// How `wasmesh node run` writes its log lines.
    pub log_format: LogFormat,
    /// How long a stopping node lets requests in flight finish.
    pub drain_timeout: Duration,
    /// Where `wasmesh node run` exports traces (OTLP over HTTP), if anywhere.
    pub otlp_endpoint: Option<String>,
    /// The share of requests traced when the caller did not decide.
    pub trace_sample_ratio: f64,
    /// Requests a second traced because their caller's `traceparent` says so.
    pub client_traces_per_second: u32,
}

/// Inbound libp2p connections from one IP address at a time, unless configured: room for a
/// household of nodes behind one NAT, not for a flood of identities from one host.
pub const DEFAULT_MAX_INBOUND_PER_ADDRESS: usize = 16;

/// The same for in-process nodes ([`NodeConfig::local`]): every peer of a simulation reaches a
/// node from its latency relay's address.
pub const LOCAL_MAX_INBOUND_PER_ADDRESS: usize = 512;

/// Client-sampled traces honoured per second, unless configured (`telemetry::ClientSampling`).
pub const DEFAULT_CLIENT_TRACES_PER_SECOND: u32 = 10;

/// How long a stopping node lets requests in flight finish, unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl NodeConfig {
    /// A config for a node on 127.0.0.1 with OS-chosen ports, for tests and simulations.
    pub fn local(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            key: data_dir.join("node.key"),
            listen: vec![local_quic_multiaddr()],
            quic: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap: Vec::new(),
            trust: Vec::new(),
            mesh_admin: None,
            cert: None,
            announce: Vec::new(),
            announce_quic: None,
            replicate: Replicate::All,
            blob_quota: None,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
            executor: ExecutorConfig::default(),
            gateway: GatewayLimits::default(),
            hedging: true,
            allow_private_addrs: true,
            relay: None,
            max_inbound_per_address: LOCAL_MAX_INBOUND_PER_ADDRESS,
            spot_check_rate: None,
            status_interval: STATUS_INTERVAL,
            log_format: LogFormat::Text,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            client_traces_per_second: DEFAULT_CLIENT_TRACES_PER_SECOND,
        }
    }

    /// Flags over the file named by `--config` over defaults.
    pub fn from_args(args: NodeArgs) -> anyhow::Result<Self> {
        file::merge(args)
    }
}

fn local_quic_multiaddr() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::LOCALHOST)
        .with(libp2p::multiaddr::Protocol::Udp(0))
        .with(libp2p::multiaddr::Protocol::QuicV1)
}
