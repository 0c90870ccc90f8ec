//! What the rest of the node asks of the control task (the owner of the libp2p swarm).

use libp2p::{Multiaddr, PeerId};

/// What the rest of the node asks of the swarm task.
#[derive(Debug)]
pub enum ControlCommand {
    /// Publish an encoded signed manifest.
    PublishManifest(Vec<u8>),
    /// Publish an encoded status message.
    PublishStatus(Vec<u8>),
    /// Dial an address.
    Dial(Multiaddr),
    /// Connect to a known peer (so its round trip gets measured), unless connected or dialing.
    Probe(PeerId),
}
