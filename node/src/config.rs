//! Node configuration: command-line flags over a TOML file over defaults.
//!
//! Every flag of `wasmesh node run` can also be set in the file given with `--config` (see
//! `node/config.example.toml`); a flag given on the command line wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use libp2p::Multiaddr;
use serde::Deserialize;
use wasmesh_keys::TrustEntry;
use wasmesh_protocol::PublicKey;

use crate::executor::ExecutorConfig;

/// Disk a node leaves free by default (64 MiB).
pub const DEFAULT_MIN_FREE_DISK: u64 = 64 << 20;

/// Flags of `wasmesh node run` (each also settable in the config file).
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// TOML config file; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the node keeps manifests, blobs and compiled artifacts [default: ./wasmesh-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The node identity key; created (mode 0600) if missing [default: DATA_DIR/node.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// libp2p listen address (repeatable) [default: /ip4/0.0.0.0/udp/4001/quic-v1 and
    /// /ip4/0.0.0.0/tcp/4001].
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// QUIC data-plane address [default: the first listen IP, port 4002].
    #[arg(long)]
    pub quic: Option<SocketAddr>,
    /// HTTP gateway address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// A peer to join through (repeatable), with or without /p2p/PEER_ID.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// A trusted publisher key, 64 hex characters, for every name, or `HEX=echo,img-*` for the
    /// names listed (a trailing `*` matches a prefix). Repeatable.
    #[arg(long = "trust", value_name = "HEX[=NAMES]")]
    pub trust: Vec<TrustEntry>,
    /// Mesh admin public key: makes this a private mesh node (needs --cert).
    #[arg(long, value_name = "HEX")]
    pub mesh_admin: Option<PublicKey>,
    /// This node's membership certificate (from `wasmesh keys certify`).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The only libp2p addresses to advertise (repeatable), e.g. behind NAT.
    #[arg(long)]
    pub announce: Vec<Multiaddr>,
    /// The only QUIC address to advertise.
    #[arg(long)]
    pub announce_quic: Option<SocketAddr>,
    /// Which modules this node fetches and runs: `all`, `none`, or names separated by commas
    /// [default: all]. Others are still known and routed to peers that hold them.
    #[arg(long)]
    pub replicate: Option<Replicate>,
    /// Most MiB of blobs this node stores for modules it replicates [default: no limit].
    /// Modules that would exceed it are routed to peers instead.
    #[arg(long)]
    pub blob_quota_mib: Option<u64>,
    /// MiB of disk the node leaves free: it fetches no blob that would leave less, and waits
    /// (with a growing back-off) until there is room [default: 64].
    #[arg(long)]
    pub min_free_disk_mib: Option<u64>,
    /// Dial loopback, private and link-local addresses that peers advertise [default: only
    /// when one of this node's own --listen addresses is such an address].
    #[arg(long, value_name = "BOOL")]
    pub allow_private_addrs: Option<bool>,
    /// Inbound libp2p connections accepted from one IP address at a time [default: 16].
    #[arg(long, value_name = "N")]
    pub max_inbound_per_address: Option<usize>,
    /// The share of forwarded answers of raw-ABI modules run again elsewhere to check them,
    /// 0.0 to 1.0 [default: 0.05 in an open mesh, 0 in a private one].
    #[arg(long, value_name = "RATIO")]
    pub spot_check_rate: Option<f64>,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log collectors [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// On SIGTERM, how many seconds requests in flight may take to finish before the node
    /// stops anyway [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout_s: Option<u64>,
    /// Export traces over OTLP/HTTP to this collector, e.g. http://127.0.0.1:4318 (spans go to
    /// its /v1/traces) [default: no export].
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// With --otlp-endpoint: the share of requests traced when the caller did not decide,
    /// 0.0 to 1.0 [default: 1.0].
    #[arg(long, value_name = "RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// With --otlp-endpoint: requests a second traced because the caller's `traceparent`
    /// header says so; beyond it they keep the caller's trace id but are not recorded (0:
    /// callers never decide) [default: 10].
    #[arg(long, value_name = "N")]
    pub client_traces_per_second: Option<u32>,
}

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

/// The config file: the same settings as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    quic: Option<SocketAddr>,
    http: Option<SocketAddr>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    trust: Vec<String>,
    mesh_admin: Option<String>,
    cert: Option<PathBuf>,
    #[serde(default)]
    announce: Vec<String>,
    announce_quic: Option<SocketAddr>,
    replicate: Option<String>,
    blob_quota_mib: Option<u64>,
    min_free_disk_mib: Option<u64>,
    allow_private_addrs: Option<bool>,
    max_inbound_per_address: Option<usize>,
    spot_check_rate: Option<f64>,
    hedging: Option<bool>,
    log_format: Option<LogFormat>,
    drain_timeout_s: Option<u64>,
    otlp_endpoint: Option<String>,
    trace_sample_ratio: Option<f64>,
    client_traces_per_second: Option<u32>,
    #[serde(default)]
    gateway: GatewayFile,
    #[serde(default)]
    executor: ExecutorFile,
}

/// The `[executor]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorFile {
    max_concurrent: Option<usize>,
    max_queued: Option<usize>,
}

impl ExecutorFile {
    fn config(&self) -> anyhow::Result<ExecutorConfig> {
        let defaults = ExecutorConfig::default();
        if self.max_concurrent == Some(0) {
            bail!("executor.max_concurrent must be at least 1");
        }
        Ok(ExecutorConfig {
            max_concurrent: self.max_concurrent.unwrap_or(defaults.max_concurrent),
            max_queued: self.max_queued.unwrap_or(defaults.max_queued),
            ..defaults
        })
    }
}

/// The `[gateway]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    header_read_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
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

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl GatewayFile {
    fn limits(&self) -> anyhow::Result<GatewayLimits> {
        let defaults = GatewayLimits::default();
        let millis = |value: Option<u64>, default: Duration, key: &str| match value {
            Some(0) => bail!("gateway.{key} must be at least 1"),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        let max_connections = match self.max_connections {
            Some(0) => bail!("gateway.max_connections must be at least 1"),
            Some(n) => n,
            None => defaults.max_connections,
        };
        Ok(GatewayLimits {
            header_read_timeout: millis(
                self.header_read_timeout_ms,
                defaults.header_read_timeout,
                "header_read_timeout_ms",
            )?,
            body_timeout: millis(
                self.body_timeout_ms,
                defaults.body_timeout,
                "body_timeout_ms",
            )?,
            max_connections,
        })
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
            max_inbound_per_address: LOCAL_MAX_INBOUND_PER_ADDRESS,
            spot_check_rate: None,
            status_interval: Duration::from_millis(500),
            log_format: LogFormat::Text,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            client_traces_per_second: DEFAULT_CLIENT_TRACES_PER_SECOND,
        }
    }

    /// Flags over the file named by `--config` over defaults.
    pub fn from_args(args: NodeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("{} is not a valid node config", path.display()))?
            }
            None => FileConfig::default(),
        };
        let parse_addrs = |texts: &[String], what: &str| -> anyhow::Result<Vec<Multiaddr>> {
            texts
                .iter()
                .map(|t| {
                    t.parse()
                        .with_context(|| format!("bad {what} address {t:?}"))
                })
                .collect()
        };
        let or_file = |flags: Vec<Multiaddr>, file: &[String], what: &str| {
            if flags.is_empty() {
                parse_addrs(file, what)
            } else {
                Ok(flags)
            }
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("wasmesh-data"));
        let key = args
            .key
            .or(file.key)
            .unwrap_or_else(|| data_dir.join("node.key"));
        let mut listen = or_file(args.listen, &file.listen, "listen")?;
        if listen.is_empty() {
            listen = vec![
                "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
                "/ip4/0.0.0.0/tcp/4001".parse()?,
            ];
        }
        let private_by_default = crate::address_scope::private_by_default(&listen);
        let listen_ip = listen
            .iter()
            .find_map(|addr| {
                addr.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                    libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                    _ => None,
                })
            })
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let mut trust = args.trust;
        for text in &file.trust {
            trust.push(
                text.parse()
                    .with_context(|| format!("bad trust entry {text:?}"))?,
            );
        }
        let mesh_admin = match (args.mesh_admin, file.mesh_admin) {
            (Some(key), _) => Some(key),
            (None, Some(text)) => Some(text.parse().context("bad mesh_admin key")?),
            (None, None) => None,
        };
        let cert = args.cert.or(file.cert);
        if mesh_admin.is_some() && cert.is_none() {
            bail!("--mesh-admin needs --cert: this node's membership certificate");
        }
        Ok(Self {
            key,
            listen,
            quic: args
                .quic
                .or(file.quic)
                .unwrap_or(SocketAddr::new(listen_ip, 4002)),
            http: args
                .http
                .or(file.http)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            bootstrap: or_file(args.bootstrap, &file.bootstrap, "bootstrap")?,
            trust,
            mesh_admin,
            cert,
            announce: or_file(args.announce, &file.announce, "announce")?,
            announce_quic: args.announce_quic.or(file.announce_quic),
            replicate: match (args.replicate, file.replicate) {
                (Some(policy), _) => policy,
                (None, Some(text)) => text
                    .parse()
                    .map_err(|e| anyhow::anyhow!("bad replicate setting {text:?}: {e}"))?,
                (None, None) => Replicate::All,
            },
            blob_quota: args
                .blob_quota_mib
                .or(file.blob_quota_mib)
                .map(|mib| mib.saturating_mul(1 << 20)),
            min_free_disk: args
                .min_free_disk_mib
                .or(file.min_free_disk_mib)
                .map_or(DEFAULT_MIN_FREE_DISK, |mib| mib.saturating_mul(1 << 20)),
            executor: file.executor.config()?,
            gateway: file.gateway.limits()?,
            hedging: file.hedging.unwrap_or(true),
            allow_private_addrs: args
                .allow_private_addrs
                .or(file.allow_private_addrs)
                .unwrap_or(private_by_default),
            max_inbound_per_address: match args
                .max_inbound_per_address
                .or(file.max_inbound_per_address)
            {
                Some(0) => bail!("max_inbound_per_address must be at least 1"),
                Some(max) => max,
                None => DEFAULT_MAX_INBOUND_PER_ADDRESS,
            },
            spot_check_rate: match args.spot_check_rate.or(file.spot_check_rate) {
                Some(rate) if !(0.0..=1.0).contains(&rate) => {
                    bail!("spot_check_rate must be between 0.0 and 1.0, not {rate}")
                }
                rate => rate,
            },
            status_interval: STATUS_INTERVAL,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            drain_timeout: args
                .drain_timeout_s
                .or(file.drain_timeout_s)
                .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs),
            otlp_endpoint: args.otlp_endpoint.or(file.otlp_endpoint),
            client_traces_per_second: args
                .client_traces_per_second
                .or(file.client_traces_per_second)
                .unwrap_or(DEFAULT_CLIENT_TRACES_PER_SECOND),
            trace_sample_ratio: match args.trace_sample_ratio.or(file.trace_sample_ratio) {
                Some(ratio) if !(0.0..=1.0).contains(&ratio) => {
                    bail!("trace_sample_ratio must be between 0.0 and 1.0, not {ratio}")
                }
                Some(ratio) => ratio,
                None => 1.0,
            },
            data_dir,
        })
    }
}

fn local_quic_multiaddr() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::LOCALHOST)
        .with(libp2p::multiaddr::Protocol::Udp(0))
        .with(libp2p::multiaddr::Protocol::QuicV1)
}
