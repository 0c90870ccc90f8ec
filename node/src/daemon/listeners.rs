//! A node's listeners: the swarm's (waiting until each has an address, and the addresses to
//! bootstrap from) and the HTTP gateway's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use tokio::sync::watch;
use tracing::Instrument;

use super::shared::Shared;
use crate::config::NodeConfig;
use crate::control::{self, Behaviour};
use crate::gateway::{self, Api};

/// How long the listeners may take to report their addresses.
const LISTEN_DEADLINE: Duration = Duration::from_secs(10);

/// Builds the swarm and waits for its listeners: the swarm, and every address they reported
/// (one per interface for a listener on `0.0.0.0`; later ones reach the event loop).
pub(super) async fn start_swarm(
    config: &NodeConfig,
    shared: &Shared,
) -> anyhow::Result<(Swarm<Behaviour>, Vec<Multiaddr>)> {
    let settings = control::SwarmSettings {
        hide_listen_addrs: !config.announce.is_empty(),
        private: shared.policy.is_private(),
        max_inbound_per_address: config.max_inbound_per_address,
        allow_private_addrs: config.allow_private_addrs,
    };
    let mut swarm = control::build_swarm(&shared.keys, settings, shared.metrics.clone())?;
    let mut listeners = HashSet::new();
    for addr in &config.listen {
        let listener = swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.insert(listener);
    }
    let listen_addrs = wait_for_listeners(&mut swarm, listeners).await?;
    for addr in &config.announce {
        swarm.add_external_address(addr.clone());
    }
    Ok((swarm, listen_addrs))
}

/// Binds the gateway and spawns its task: its address, and the task (which ends once its
/// connections have finished, after `stopping` turns true).
pub(super) async fn start_gateway(
    config: &NodeConfig,
    api: Arc<Api>,
    shared: &Shared,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot bind the HTTP gateway to {}", config.http))?;
    let http_addr = listener.local_addr()?;
    let router = gateway::router(api, config.gateway.body_timeout);
    let gateway = shared.tasks.spawn(
        gateway::server::serve(
            listener,
            router,
            config.gateway,
            shared.metrics.clone(),
            stopping,
            config.drain_timeout,
        )
        .in_current_span(),
    );
    tracing::info!(%http_addr, "serving HTTP");
    Ok((http_addr, gateway))
}

/// Waits until every one of `listeners` has reported an address (a listener on 0.0.0.0
/// reports one per interface, one after another); the addresses reported by then, with those
/// already waiting after the last.
async fn wait_for_listeners(
    swarm: &mut Swarm<Behaviour>,
    mut listeners: HashSet<ListenerId>,
) -> anyhow::Result<Vec<Multiaddr>> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::sleep(LISTEN_DEADLINE);
    tokio::pin!(deadline);
    while !listeners.is_empty() {
        tokio::select! {
            _ = &mut deadline => anyhow::bail!("listen addresses not ready within {} s", LISTEN_DEADLINE.as_secs()),
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    listeners.remove(&listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
                _ => {}
            },
        }
    }
    while let Some(event) = swarm.next().now_or_never().flatten() {
        if let SwarmEvent::NewListenAddr { address, .. } = event {
            addrs.push(address);
        }
    }
    Ok(addrs)
}
