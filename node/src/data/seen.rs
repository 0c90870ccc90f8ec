//! Which peers' connections to this node are open, and from where: the rest of the node is
//! told when a peer's first connection from an address opens and when its last one from there
//! closes (a peer may hold several at once: a standing reach connection, a punch, a blob
//! fetch), so that the address stays known while any of them is open.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use wasmesh_protocol::PublicKey;

use crate::lock::lock;

/// Told when a peer's connection to this node opens (`true`) or closes (`false`): the peer's
/// node key, and the address its packets come from (for a peer behind a NAT, the only address
/// this node can reach it at: see `core::peers::data_path`).
pub type SeenHook = Arc<dyn Fn(PublicKey, SocketAddr, bool) + Send + Sync>;

/// The open connections of each peer by address, and the hook told of them (once set).
#[derive(Default)]
pub(super) struct SeenConnections {
    hook: OnceLock<SeenHook>,
    /// Open connections per peer and address (bounded by the data plane's connection limits).
    open: Mutex<HashMap<(PublicKey, SocketAddr), u32>>,
}

impl SeenConnections {
    /// Sets the hook (once; later calls are ignored).
    pub(super) fn set_hook(&self, hook: SeenHook) {
        let _ = self.hook.set(hook);
    }

    /// A connection of `peer` from `addr` opened; it counts as closed when the guard drops.
    pub(super) fn opened(self: &Arc<Self>, peer: PublicKey, addr: SocketAddr) -> SeenWhileOpen {
        let first = {
            let mut open = lock(&self.open);
            let count = open.entry((peer, addr)).or_default();
            *count += 1;
            *count == 1
        };
        if let Some(hook) = self.hook.get().filter(|_| first) {
            hook(peer, addr, true);
        }
        SeenWhileOpen {
            seen: self.clone(),
            peer,
            addr,
        }
    }

    /// A connection of `peer` from `addr` closed. Once the last from there has, the hook is
    /// told that the peer is seen at another address it still has a connection from, if any
    /// (the hook keeps one address per peer), else that it is no longer seen at `addr`.
    fn closed(&self, peer: PublicKey, addr: SocketAddr) {
        let after_last = {
            let mut open = lock(&self.open);
            let count = open.entry((peer, addr)).or_default();
            *count = count.saturating_sub(1);
            (*count == 0).then(|| {
                open.remove(&(peer, addr));
                open.keys().find(|(key, _)| *key == peer).map(|(_, at)| *at)
            })
        };
        let Some((hook, still_open)) = self.hook.get().zip(after_last) else {
            return;
        };
        match still_open {
            Some(other) => hook(peer, other, true),
            None => hook(peer, addr, false),
        }
    }
}

/// One open connection, counted until dropped (when its task ends, however it ends).
pub(super) struct SeenWhileOpen {
    seen: Arc<SeenConnections>,
    peer: PublicKey,
    addr: SocketAddr,
}

impl Drop for SeenWhileOpen {
    fn drop(&mut self) {
        self.seen.closed(self.peer, self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the hook is told, as (address, open) in order.
    type Told = Arc<Mutex<Vec<(SocketAddr, bool)>>>;

    /// Connections whose hook records what it is told, and a peer.
    fn recording() -> (Arc<SeenConnections>, Told, PublicKey) {
        let seen = Arc::new(SeenConnections::default());
        let told = Told::default();
        let log = told.clone();
        seen.set_hook(Arc::new(move |_, addr, open| lock(&log).push((addr, open))));
        let peer = wasmesh_protocol::Keypair::from_seed([3; 32]).public();
        (seen, told, peer)
    }

    #[test]
    fn an_address_stays_seen_while_any_connection_from_it_is_open() {
        let (seen, told, peer) = recording();
        let addr: SocketAddr = "198.18.0.12:4000".parse().unwrap();
        let standing = seen.opened(peer, addr);
        let punch = seen.opened(peer, addr);
        drop(punch);
        assert_eq!(*lock(&told), vec![(addr, true)], "one still open");
        drop(standing);
        assert_eq!(*lock(&told), vec![(addr, true), (addr, false)]);
        assert!(lock(&seen.open).is_empty());
    }

    #[test]
    fn a_peer_seen_at_two_addresses_is_seen_at_the_one_left_open() {
        let (seen, told, peer) = recording();
        let (standing_at, relayed_at): (SocketAddr, SocketAddr) = (
            "198.18.0.12:4000".parse().unwrap(),
            "198.18.0.11:5000".parse().unwrap(),
        );
        let standing = seen.opened(peer, standing_at);
        drop(seen.opened(peer, relayed_at));
        assert_eq!(
            *lock(&told),
            vec![(standing_at, true), (relayed_at, true), (standing_at, true)],
            "the standing connection's address again"
        );
        drop(standing);
        assert_eq!(lock(&told).last(), Some(&(standing_at, false)));
    }
}
