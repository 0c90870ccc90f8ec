//! Length-prefixed messages on a QUIC stream: a 4-byte little-endian length, then that many
//! bytes. Reads are bounded by a limit and never allocate from a length the peer claims.

use std::time::Duration;

use tokio::io::AsyncReadExt;

/// What a framed read reserves before any of its bytes arrive.
const FRAME_PREALLOCATE: usize = 64 << 10;

/// Why a framed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended (or failed) before the whole message arrived.
    #[error("truncated message")]
    Truncated,
    /// The announced length exceeds what this message may have.
    #[error("oversized message ({len} bytes, at most {limit})")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a peer's request (the first message on a stream it opened) was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// It did not arrive in time.
    #[error("the request did not arrive within {0:?}")]
    Timeout(Duration),
    /// It is not a framed message of the allowed size.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// It does not decode.
    #[error("malformed request")]
    Malformed,
}

/// Reads a request of at most `limit` bytes within `timeout`, and decodes it.
pub(crate) async fn read_request<T, E>(
    recv: &mut quinn::RecvStream,
    limit: usize,
    timeout: Duration,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, RequestError> {
    let bytes = tokio::time::timeout(timeout, read_framed(recv, limit))
        .await
        .map_err(|_| RequestError::Timeout(timeout))??;
    decode(&bytes).map_err(|_| RequestError::Malformed)
}

/// Reads one message of at most `limit` bytes.
pub(crate) async fn read_framed(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len)
        .await
        .map_err(|_| FrameError::Truncated)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::Oversized { len, limit });
    }
    // Grown as bytes arrive, never allocated up front from what the peer claims: a peer that
    // announces 64 MiB and sends nothing costs this node nothing.
    let mut bytes = Vec::with_capacity(len.min(FRAME_PREALLOCATE));
    (&mut *recv)
        .take(len as u64)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| FrameError::Truncated)?;
    if bytes.len() != len {
        return Err(FrameError::Truncated);
    }
    Ok(bytes)
}

/// Writes one message.
pub(crate) async fn write_framed(
    send: &mut quinn::SendStream,
    bytes: &[u8],
) -> Result<(), quinn::WriteError> {
    send.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    send.write_all(bytes).await
}
