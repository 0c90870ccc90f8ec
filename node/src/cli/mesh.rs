//! `wasmesh node run`, `publish`, `call` and `status`: running a node and talking to one.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use wasmesh_protocol::{ModuleRef, PublishBundle};

use super::http;
use super::limit_args::LimitArgs;
use crate::client::Gateway;
use crate::config::{NodeArgs, NodeConfig};
use crate::daemon::Node;
use crate::module_file::read_module;
use crate::telemetry::Telemetry;

/// Node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node until SIGINT or SIGTERM (SIGTERM drains requests in flight first).
    Run(Box<NodeArgs>),
    /// Write a commented config, a new node key and a systemd unit for a new operator (never
    /// overwrites).
    Init(super::init::InitArgs),
}

/// Arguments of `wasmesh publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The module: a `.wasm` binary or `.wat` text.
    pub module: PathBuf,
    /// Module name.
    #[arg(long)]
    pub name: String,
    /// Version (higher replaces lower).
    #[arg(long)]
    pub version: u64,
    /// The publisher's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The node's gateway, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub node: String,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `wasmesh call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// `name`, `name@version` or `blake3:<hex>`.
    pub module_ref: ModuleRef,
    /// The node's gateway, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub node: String,
    /// The request body: a file, or `-` for stdin [default: stdin when it is not a terminal].
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Print the executing peer, the route and the timings on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Arguments of `wasmesh status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The node's gateway, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub node: String,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn node(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Run(args) => run_node(*args),
        NodeCommand::Init(args) => super::init::init(args),
    }
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = NodeConfig::from_args(args)?;
    // The key first: traces name the node that sent them.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let (keys, created) = wasmesh_keys::key_file::load_or_generate(&config.key)?;
    let node_id = wasmesh_keys::identity::libp2p_keypair(&keys)
        .public()
        .to_peer_id()
        .to_string();
    let telemetry = Telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_deref(),
        config.trace_sample_ratio,
        config.client_traces_per_second,
        &node_id,
    )?;
    if created {
        tracing::info!(key = %config.key.display(), "created a new node key (mode 0600)");
    }
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    }
    let drain_timeout = config.drain_timeout;
    raise_file_limit(config.gateway.max_connections);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = Node::start(config).await?;
        eprintln!(
            "node {} serving http://{} (QUIC {}), listening on {}",
            node.peer_id(),
            node.http_addr(),
            node.quic_addr(),
            node.p2p_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        wait_for_signal().await?;
        tracing::info!(
            drain_timeout_s = drain_timeout.as_secs(),
            "stopping: telling peers, finishing requests in flight (a second signal stops at once)"
        );
        tokio::select! {
            () = node.shutdown() => tracing::info!("stopped"),
            _ = wait_for_signal() => tracing::warn!("second signal: stopping without draining"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Spans not yet exported go out now.
    drop(telemetry);
    Ok(())
}

/// Lifts the soft limit on open files to the hard one, and warns when even that is below what
/// the gateway's connection cap (plus peers, blobs and the store) may need.
fn raise_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < max_connections as u64 + FILES_BESIDES_HTTP => tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below the gateway's connection cap; raise it (ulimit -n) \
             or lower gateway.max_connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// Files a node keeps open besides gateway connections: peers, blob transfers, the store.
const FILES_BESIDES_HTTP: u64 = 512;

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

pub(super) fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let signed = super::manifest::create(
        &args.module,
        args.name,
        args.version,
        &args.key,
        &args.limits,
    )?;
    let module = read_module(&args.module)?;
    let size = module.len();
    let bundle = PublishBundle {
        manifest: signed,
        module,
    };
    let gateway = Gateway::new(&args.node);
    eprintln!("publishing {size} bytes to {}", args.node);
    // Large modules show a progress bar while uploading (the node then verifies and compiles).
    let answer = if size > 1 << 20 {
        http::post_with_progress(&gateway, "/v1/publish", bundle.encode())?
    } else {
        gateway.publish(&bundle)?
    }
    .ok()?;
    let summary: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    eprintln!(
        "published {}@{} ({})",
        summary["name"].as_str().unwrap_or("?"),
        summary["version"],
        summary["hash"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub(super) fn call(args: CallArgs) -> anyhow::Result<()> {
    let mut input = Vec::new();
    match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            input =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        Some(_) => {
            std::io::stdin().read_to_end(&mut input)?;
        }
        None if !std::io::stdin().is_terminal() => {
            std::io::stdin().read_to_end(&mut input)?;
        }
        None => {}
    }
    let answer = Gateway::new(&args.node)
        .invoke(&args.module_ref, &input)?
        .ok()?;
    if args.verbose {
        let ours = |name: &str| name.starts_with("x-wasmesh") || name == "server-timing";
        for (name, value) in answer.headers.iter().filter(|(name, _)| ours(name)) {
            eprintln!("{name}: {value}");
        }
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&answer.body).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub(super) fn status(args: StatusArgs) -> anyhow::Result<()> {
    let gateway = Gateway::new(&args.node);
    let status = gateway.get("/v1/status")?.ok()?;
    if args.json {
        return super::emit(&format!("{}\n", String::from_utf8_lossy(&status.body)));
    }
    let s: serde_json::Value = serde_json::from_slice(&status.body).context("bad status JSON")?;
    let modules = gateway.get("/v1/modules")?.ok()?;
    let modules: serde_json::Value =
        serde_json::from_slice(&modules.body).context("bad modules JSON")?;
    let mut text = format!(
        "node {}\n  version {}, up {} s, {} peers, {}/{} modules ready, {} in flight of {}\n",
        s["peer_id"].as_str().unwrap_or("?"),
        s["version"].as_str().unwrap_or("?"),
        s["uptime_s"],
        s["peers"],
        s["ready"],
        s["modules"],
        s["in_flight"],
        s["capacity"],
    );
    for m in modules.as_array().into_iter().flatten() {
        text.push_str(&format!(
            "  {}@{}  {}  {}  {} bytes  {}\n",
            m["name"].as_str().unwrap_or("?"),
            m["version"],
            m["abi"].as_str().unwrap_or("?"),
            if m["ready"].as_bool() == Some(true) {
                "ready"
            } else {
                "not ready"
            },
            m["size"],
            m["hash"]
                .as_str()
                .map(|h| &h[..12.min(h.len())])
                .unwrap_or("?"),
        ));
    }
    super::emit(&text)
}
