//! The flags of `wasmesh node run`, each also settable in the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use libp2p::Multiaddr;
use wasmesh_keys::TrustEntry;
use wasmesh_protocol::PublicKey;

use super::{LogFormat, Replicate};

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
    /// Serve as a libp2p relay for peers behind NATs [default: when this node's address is
    /// public or announced].
    #[arg(long, value_name = "BOOL")]
    pub relay: Option<bool>,
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
