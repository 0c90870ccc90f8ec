//! The config file (`--config`, TOML) and how flags, file and defaults combine: a flag given on
//! the command line wins over the file, the file over the default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use serde::Deserialize;

use wasmesh_keys::TrustEntry;
use wasmesh_protocol::PublicKey;

use super::*;

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
    relay: Option<bool>,
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

/// Flags over the file named by `--config` over defaults.
pub(super) fn merge(args: NodeArgs) -> anyhow::Result<NodeConfig> {
    let file = read(args.config.as_deref())?;
    let (trust, mesh_admin, cert) = membership(&args.trust, args.mesh_admin, args.cert, &file)?;
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
    Ok(NodeConfig {
        key,
        quic: args
            .quic
            .or(file.quic)
            .unwrap_or(SocketAddr::new(first_ip(&listen), DEFAULT_QUIC_PORT)),
        listen,
        http: args.http.or(file.http).unwrap_or(DEFAULT_HTTP),
        bootstrap: or_file(args.bootstrap, &file.bootstrap, "bootstrap")?,
        trust,
        mesh_admin,
        cert,
        announce: or_file(args.announce, &file.announce, "announce")?,
        announce_quic: args.announce_quic.or(file.announce_quic),
        replicate: replicate(args.replicate, file.replicate)?,
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
        relay: args.relay.or(file.relay),
        max_inbound_per_address: at_least_one(
            args.max_inbound_per_address
                .or(file.max_inbound_per_address),
            "max_inbound_per_address",
        )?
        .unwrap_or(DEFAULT_MAX_INBOUND_PER_ADDRESS),
        spot_check_rate: ratio(
            args.spot_check_rate.or(file.spot_check_rate),
            "spot_check_rate",
        )?,
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
        trace_sample_ratio: ratio(
            args.trace_sample_ratio.or(file.trace_sample_ratio),
            "trace_sample_ratio",
        )?
        .unwrap_or(1.0),
        data_dir,
    })
}

/// The QUIC data plane's port, unless configured (on the first listen address's IP).
const DEFAULT_QUIC_PORT: u16 = 4002;

/// The gateway's address, unless configured.
const DEFAULT_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// The config file at `path`; all defaults without one.
fn read(path: Option<&std::path::Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str::<FileConfig>(&text)
        .with_context(|| format!("{} is not a valid node config", path.display()))
}

/// The flags' addresses, or the file's when no flag gave one.
fn or_file(flags: Vec<Multiaddr>, file: &[String], what: &str) -> anyhow::Result<Vec<Multiaddr>> {
    if !flags.is_empty() {
        return Ok(flags);
    }
    file.iter()
        .map(|t| {
            t.parse()
                .with_context(|| format!("bad {what} address {t:?}"))
        })
        .collect()
}

/// The IP of the first listen address that names one (0.0.0.0 if none does).
fn first_ip(listen: &[Multiaddr]) -> std::net::IpAddr {
    listen
        .iter()
        .find_map(|addr| {
            addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            })
        })
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// The trusted publishers (flags, then the file's), the mesh admin key and the membership
/// certificate, which a private mesh needs both of.
fn membership(
    flags: &[TrustEntry],
    mesh_admin: Option<PublicKey>,
    cert: Option<PathBuf>,
    file: &FileConfig,
) -> anyhow::Result<(Vec<TrustEntry>, Option<PublicKey>, Option<PathBuf>)> {
    let mut trust = flags.to_vec();
    for text in &file.trust {
        trust.push(
            text.parse()
                .with_context(|| format!("bad trust entry {text:?}"))?,
        );
    }
    let mesh_admin = match (mesh_admin, &file.mesh_admin) {
        (Some(key), _) => Some(key),
        (None, Some(text)) => Some(text.parse().context("bad mesh_admin key")?),
        (None, None) => None,
    };
    let cert = cert.or_else(|| file.cert.clone());
    if mesh_admin.is_some() && cert.is_none() {
        bail!("--mesh-admin needs --cert: this node's membership certificate");
    }
    Ok((trust, mesh_admin, cert))
}

/// Which modules are replicated: the flag's setting, the file's, or all.
fn replicate(flag: Option<Replicate>, file: Option<String>) -> anyhow::Result<Replicate> {
    match (flag, file) {
        (Some(policy), _) => Ok(policy),
        (None, Some(text)) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("bad replicate setting {text:?}: {e}")),
        (None, None) => Ok(Replicate::All),
    }
}

/// A count of at least one, if given.
fn at_least_one(value: Option<usize>, key: &str) -> anyhow::Result<Option<usize>> {
    match value {
        Some(0) => bail!("{key} must be at least 1"),
        value => Ok(value),
    }
}

/// A share from 0.0 to 1.0, if given.
fn ratio(value: Option<f64>, key: &str) -> anyhow::Result<Option<f64>> {
    match value {
        Some(ratio) if !(0.0..=1.0).contains(&ratio) => {
            bail!("{key} must be between 0.0 and 1.0, not {ratio}")
        }
        ratio => Ok(ratio),
    }
}
