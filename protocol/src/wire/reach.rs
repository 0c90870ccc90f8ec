//! Reaching nodes behind NATs (QUIC, ALPN [`REACH_ALPN`]). A node whose data plane peers cannot
//! dial keeps a connection of this protocol open to a few public nodes, its *rendezvous*: they
//! reach it over that connection's NAT mapping, and they introduce it to other NATed nodes so
//! that both send packets to each other at once and their NATs let them in (hole punching).
//! A rendezvous also dials a NATed node back at its mapping from a new port, so that the node
//! learns what kind of NAT it is behind.
//!
//! Every message is framed as on the other data-plane protocols (a 4-byte little-endian
//! length, then the message), one exchange per bidirectional stream:
//! - the NATed node opens a stream and writes a [`ReachRequest`]; the rendezvous answers with a
//!   [`ReachReply`];
//! - the rendezvous opens a stream on a NATed node's connection and writes a [`PunchRequest`];
//!   the NATed node answers with a [`PunchAck`] and dials the address named (the asker's
//!   mapping, or a relay session of the rendezvous).

use std::net::SocketAddr;

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::crypto::PublicKey;

/// ALPN of the reach protocol on the QUIC data plane.
pub const REACH_ALPN: &[u8] = b"wasmesh/reach/1";

/// Largest encoded reach message.
pub const MAX_REACH_MESSAGE_SIZE: usize = 256;

/// What a NATed node asks of its rendezvous.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ReachRequest {
    /// Where do this connection's packets come from (the NAT's mapping of the asker's socket)?
    Observe,
    /// The asker is about to dial `target`: tell it to send packets to the asker's mapping now.
    Introduce {
        /// The node key of the node to be reached.
        target: PublicKey,
    },
    /// A punched dial to `target` failed (NATs that map each destination apart): open a relay
    /// session between the two, and tell `target` to dial the asker through it.
    Relay {
        /// The node key of the node to be reached.
        target: PublicKey,
    },
    /// Try a handshake with the asker where this connection's packets come from, from a port
    /// it never sent to: does its NAT let strangers in at its mapping?
    DialBack,
}

/// The rendezvous' answer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ReachReply {
    /// The asker's packets come from this address.
    Observed(SocketAddr),
    /// The target was told, and its packets come from this address: dial it there.
    Introduced(SocketAddr),
    /// A relay session is open at this address of the rendezvous: dial the target there (it
    /// was told to dial the asker there too). The rendezvous forwards the packets of both, as
    /// they are: the QUIC connection through it stays end-to-end encrypted and authenticated.
    Relayed(SocketAddr),
    /// The target keeps no connection to this rendezvous (or did not answer it), or no relay
    /// session could be opened, or no dial back made (as many are under way as allowed).
    Unknown,
    /// Whether the dial back's handshake got through.
    DialedBack(bool),
}

/// A rendezvous to a NATed node: `peer` is about to dial you from `addr`; send packets there.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PunchRequest {
    /// The node key of the node about to dial.
    pub peer: PublicKey,
    /// Where its packets come from.
    pub addr: SocketAddr,
}

/// The NATed node's answer to a [`PunchRequest`]: it is dialing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct PunchAck;

macro_rules! reach_message {
    ($($message:ty),*) => {$(
        impl $message {
            /// The wire encoding.
            pub fn encode(&self) -> Vec<u8> {
                codec::encode(self)
            }

            /// Decodes a message of at most [`MAX_REACH_MESSAGE_SIZE`] bytes.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                codec::decode(bytes, MAX_REACH_MESSAGE_SIZE)
            }
        }
    )*};
}

reach_message!(ReachRequest, ReachReply, PunchRequest, PunchAck);
