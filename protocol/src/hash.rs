//! Content addresses: the BLAKE3 hash of a Wasm blob.

use std::str::FromStr;

use bincode::{Decode, Encode};

use crate::hex_bytes::{HexError, hex_newtype};

/// The prefix of the textual content-address form, `blake3:<64 hex>`.
pub const HASH_PREFIX: &str = "blake3:";

/// The BLAKE3 hash of a blob: its content address.
///
/// `Display` writes 64 lowercase hex characters; `FromStr` accepts that or the prefixed form
/// `blake3:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct ContentHash(pub [u8; 32]);

hex_newtype!(ContentHash, 32);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The value of a finished incremental hasher.
    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Self(*hasher.finalize().as_bytes())
    }

    /// The prefixed form `blake3:<hex>`.
    pub fn to_prefixed(&self) -> String {
        format!("{HASH_PREFIX}{self}")
    }

    /// Parses either `<hex>` or `blake3:<hex>`.
    pub fn parse_either(text: &str) -> Result<Self, HexError> {
        Self::from_str(text.strip_prefix(HASH_PREFIX).unwrap_or(text))
    }

    /// A short form for logs: the first 12 hex characters.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms_round_trip() {
        let hash = ContentHash::of(b"wasm");
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<ContentHash>().unwrap(), hash);
        assert_eq!(
            ContentHash::parse_either(&hash.to_prefixed()).unwrap(),
            hash
        );
        assert!(matches!(
            "abc".parse::<ContentHash>(),
            Err(HexError::Length { len: 3, .. })
        ));
        assert!(matches!(
            "z".repeat(64).parse::<ContentHash>(),
            Err(HexError::NotHex { .. })
        ));
    }
}
