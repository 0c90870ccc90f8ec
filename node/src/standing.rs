//! Standing data-plane connections. A node whose own data-plane address peers cannot dial (a
//! private address behind a NAT) keeps a reach connection (`wasmesh/reach/1`) open to each of
//! up to [`MAX_STANDING`] neighbours whose data plane is public, its rendezvous:
//!
//! - each rendezvous reaches this node at the address that connection comes from
//!   (`core::peers::data_path`): the NAT lets its packets back in while the connection lives,
//!   and the keep-alive (every 5 s) keeps the NAT's mapping within any router's UDP timeout. So
//!   a node at home serves the requests a public node forwards to it, and the blobs a public
//!   node fetches from it;
//! - each tells this node where its packets come from: that address (when the rendezvous
//!   agree on it) is the data-plane address this node advertises (`own_addresses`);
//! - they introduce this node to other NATed nodes, so both punch through their NATs (see
//!   `data::reach`).
//!
//! A node whose own address is public asks one public neighbour the same once, for its dial
//! back: if a firewall drops it, the node stands on rendezvous as one behind a NAT does
//! (`own_addresses`, `Reachability::Firewalled`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::address_scope::socket_is_dialable;
use crate::control::handle::NodeHandle;
use crate::data::{DataPlane, PeerAddr};
use crate::own_addresses::Reachability;
use crate::view::Views;

/// Public neighbours a node behind a NAT keeps a data-plane connection to, at most.
pub(crate) const MAX_STANDING: usize = 8;

/// How often the connections are checked (and a lost one made again).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Keeps the standing connections until `shutdown` turns true.
pub(crate) async fn keep(
    views: Arc<Views>,
    data_plane: DataPlane,
    control: NodeHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let targets = public_neighbours(&views);
        let stood = targets.iter().map(|peer| data_plane.stand_on(*peer));
        for (peer, result) in targets.iter().zip(futures::future::join_all(stood).await) {
            match result {
                Ok(Some(observed)) => control.quic_observed(peer.key, observed),
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(rendezvous = %peer.addr, %error, "cannot keep a standing connection");
                }
            }
        }
    }
}

/// The neighbours to keep a connection to: the first [`MAX_STANDING`] connected neighbours
/// whose data plane is public when this node's own is not; when it is, one public neighbour
/// standing on nobody until one dialed this node back (a firewall in front of a public address
/// drops that dial, and the node then stands on rendezvous as one behind a NAT does); else none.
fn public_neighbours(views: &Views) -> Vec<PeerAddr> {
    let view = views.load();
    let Some(report) = view.addresses.as_ref() else {
        return Vec::new();
    };
    let (wanted, checker_only) = match report.reachability {
        _ if !report.direct => (MAX_STANDING, false),
        Reachability::Public if report.reachable.is_none() => (1, true),
        _ => return Vec::new(),
    };
    view.peers
        .values()
        .filter(|p| p.neighbour && p.connected && !p.leaving)
        .filter(|p| !checker_only || p.rendezvous.is_empty())
        .filter_map(|p| {
            Some(PeerAddr {
                key: p.key?,
                addr: p.quic_addr.filter(|addr| socket_is_dialable(addr, false))?,
            })
        })
        .take(wanted)
        .collect()
}
