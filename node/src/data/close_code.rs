//! Why this node closes a QUIC connection: one application error code per reason, each with the
//! text the peer reads.

use quinn::{Connection, VarInt};

/// The reasons this node closes a QUIC connection, with their wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The node is stopping.
    Shutdown = 0,
    /// The handshake gave no node key.
    NoPeerKey = 1,
    /// The connection's ALPN names no protocol this node serves.
    UnsupportedProtocol = 2,
    /// The peer's membership certificate has expired.
    MembershipExpired = 3,
    /// The peer, or the node as a whole, holds as many connections as it may.
    TooManyConnections = 4,
}

impl CloseCode {
    /// The code on the wire.
    pub fn code(self) -> VarInt {
        VarInt::from_u32(self as u32)
    }

    /// The text sent with it.
    pub fn text(self) -> &'static [u8] {
        match self {
            Self::Shutdown => b"shutdown",
            Self::NoPeerKey => b"no peer key",
            Self::UnsupportedProtocol => b"unsupported protocol",
            Self::MembershipExpired => b"membership expired",
            Self::TooManyConnections => b"too many connections",
        }
    }

    /// Closes `connection` for this reason.
    pub(crate) fn close(self, connection: &Connection) {
        connection.close(self.code(), self.text());
    }
}
