//! The one wire encoding of wasmesh, defined in one place.
//!
//! Every wire type is encoded with bincode 2 using fixed-width little-endian integers. Fixed
//! widths make every byte of an encoding significant: there is exactly one encoding per value, so
//! a signature over an encoding covers the value and nothing else, and changing any byte of a
//! signed file changes what it decodes to (or makes it fail to decode).
//!
//! Decoding never trusts a length prefix: [`decode`] refuses input longer than the caller's limit,
//! and bounds what a length prefix may make the decoder allocate to a small multiple of the input
//! actually present, so a hostile 20-byte message cannot ask for a gigabyte. Trailing bytes after
//! a value are an error.

use bincode::config::{Configuration, Fixint, LittleEndian, NoLimit};
use bincode::{Decode, Encode};

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the limit the caller allows for this message.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The bytes are not a valid encoding (truncated, bad tag, bad UTF-8, oversized prefix...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid value was followed by more bytes.
    #[error("{extra} unexpected bytes after the end of the message")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
}

/// The largest input any message may have: its claims stay within the top tier (256 MiB).
pub const MAX_DECODE_LEN: usize = 128 << 20;

fn wire() -> Configuration<LittleEndian, Fixint, NoLimit> {
    bincode::config::standard().with_fixed_int_encoding()
}

/// Encodes a wire value.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot run out of space, and wire types hold no RefCell, path or
    // system time (the only other sources of encode errors).
    bincode::encode_to_vec(value, wire()).expect("encoding a wire type into a Vec cannot fail")
}

/// Decodes a wire value from `bytes`, which must hold exactly one value of at most `max_len`
/// bytes.
pub fn decode<T: Decode<()>>(bytes: &[u8], max_len: usize) -> Result<T, DecodeError> {
    if bytes.len() > max_len.min(MAX_DECODE_LEN) {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len.min(MAX_DECODE_LEN),
        });
    }
    // bincode's limit caps the bytes a length prefix may claim. It is a const parameter, so pick
    // the smallest power-of-two tier that is at least twice the input (and at least 64 KiB):
    // legitimate values fit (a decoded container's in-memory size stays within twice its
    // encoding), hostile prefixes do not, and no input can make the decoder reserve more than
    // about twice what actually arrived.
    let claim = bytes.len().saturating_mul(2).max(64 << 10);
    let decoded = match claim.next_power_of_two().trailing_zeros() {
        ..=16 => decode_within::<{ 1 << 16 }, T>(bytes),
        17 => decode_within::<{ 1 << 17 }, T>(bytes),
        18 => decode_within::<{ 1 << 18 }, T>(bytes),
        19 => decode_within::<{ 1 << 19 }, T>(bytes),
        20 => decode_within::<{ 1 << 20 }, T>(bytes),
        21 => decode_within::<{ 1 << 21 }, T>(bytes),
        22 => decode_within::<{ 1 << 22 }, T>(bytes),
        23 => decode_within::<{ 1 << 23 }, T>(bytes),
        24 => decode_within::<{ 1 << 24 }, T>(bytes),
        25 => decode_within::<{ 1 << 25 }, T>(bytes),
        26 => decode_within::<{ 1 << 26 }, T>(bytes),
        27 => decode_within::<{ 1 << 27 }, T>(bytes),
        28 => decode_within::<{ 1 << 28 }, T>(bytes),
        _ => {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_DECODE_LEN,
            });
        }
    };
    let (value, used) = decoded.map_err(|e| {
        DecodeError::Malformed(match e {
            bincode::error::DecodeError::LimitExceeded => {
                "a length prefix claims more bytes than the message holds".to_owned()
            }
            other => other.to_string(),
        })
    })?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

fn decode_within<const CLAIM_LIMIT: usize, T: Decode<()>>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::decode_from_slice(bytes, wire().with_limit::<CLAIM_LIMIT>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let value: (u64, String) = (7, "echo".to_owned());
        let mut bytes = encode(&value);
        assert_eq!(decode::<(u64, String)>(&bytes, 1024).unwrap(), value);
        bytes.push(0);
        assert!(matches!(
            decode::<(u64, String)>(&bytes, 1024),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn refuses_input_over_the_limit() {
        let bytes = encode(&vec![0u8; 100]);
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 50),
            Err(DecodeError::TooLarge { len: 108, max: 50 })
        ));
    }

    #[test]
    fn hostile_length_prefix_is_malformed_not_an_allocation() {
        // A Vec<u8> that claims 2^60 bytes, followed by nothing.
        let bytes = (1u64 << 60).to_le_bytes();
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 1024),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_prefix_may_claim_at_most_about_twice_the_input() {
        // 1 MiB of input whose only value claims 4 MiB: refused, though 8x would have allowed it.
        let mut bytes = (4u64 << 20).to_le_bytes().to_vec();
        bytes.resize(1 << 20, 0);
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 8 << 20),
            Err(DecodeError::Malformed(_))
        ));
        // The same input claiming what it holds decodes.
        let body = vec![7u8; (1 << 20) - 8];
        assert_eq!(decode::<Vec<u8>>(&encode(&body), 8 << 20).unwrap(), body);
    }

    #[test]
    fn truncated_input_is_malformed() {
        let bytes = encode(&(1u64, 2u64));
        assert!(matches!(
            decode::<(u64, u64)>(&bytes[..12], 1024),
            Err(DecodeError::Malformed(_))
        ));
    }
}
