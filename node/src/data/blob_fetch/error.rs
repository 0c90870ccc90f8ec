//! How fetching a blob from one provider can fail, and what a failed verification means.

use wasmesh_protocol::wire::BLOB_GROUP_CHUNK_LOG;

use crate::data::endpoint::ConnectError;
use crate::store::StoreError;

/// Why a blob could not be fetched from one provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No connection could be made (unreachable, wrong key, refused).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The provider does not hold the blob.
    #[error("the provider does not hold the blob")]
    NotFound,
    /// The provider is at its transfer limit.
    #[error("the provider is busy")]
    Busy,
    /// The provider broke the protocol (bad header, wrong size, closed early).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The provider sent a hash pair or chunk group that does not verify against the blob's
    /// hash (at chunk group `group`, when the lie was in the data).
    #[error("the provider sent data that does not match the blob's hash{}", group.map(|g| format!(" (chunk group {g})")).unwrap_or_default())]
    Lied {
        /// The chunk group that failed to verify.
        group: Option<u64>,
    },
    /// No progress within the idle timeout, or slower than the minimum rate.
    #[error("the transfer stalled")]
    Stalled,
    /// What arrived does not verify, or cannot be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn decode_error(error: bao_tree::io::DecodeError) -> FetchError {
    use bao_tree::io::DecodeError;
    match error {
        DecodeError::LeafHashMismatch(chunk) => FetchError::Lied {
            group: Some(chunk.0 >> BLOB_GROUP_CHUNK_LOG),
        },
        DecodeError::ParentHashMismatch(_) => FetchError::Lied { group: None },
        DecodeError::LeafNotFound(_) | DecodeError::ParentNotFound(_) => {
            FetchError::Protocol("the provider ended the range early".into())
        }
        DecodeError::Io(error) => FetchError::Protocol(error.to_string()),
    }
}
