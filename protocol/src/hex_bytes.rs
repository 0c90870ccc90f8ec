//! Fixed-size byte strings written as lowercase hex: shared by content hashes and public keys.

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// Wrong number of characters.
    #[error("{text:?} has {len} characters; expected {expected} hex characters")]
    Length {
        /// The offending text (truncated to 80 characters).
        text: String,
        /// Its length in characters.
        len: usize,
        /// The expected length.
        expected: usize,
    },
    /// A character that is not a hex digit.
    #[error("{text:?} is not hexadecimal")]
    NotHex {
        /// The offending text (truncated to 80 characters).
        text: String,
    },
}

fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Parses exactly `2 * N` hex digits (either case) into `N` bytes.
pub(crate) fn parse<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let len = text.chars().count();
    if len != 2 * N {
        return Err(HexError::Length {
            text: shown(text),
            len,
            expected: 2 * N,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| HexError::NotHex { text: shown(text) })?;
    Ok(out)
}

/// Implements `Display` (lowercase hex), `Debug`, `FromStr` and serde (as a hex string) for a
/// newtype over `[u8; N]`.
macro_rules! hex_newtype {
    ($name:ident, $len:expr) => {
        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(&::hex::encode(self.0))
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::hex_bytes::HexError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::hex_bytes::parse::<$len>(text).map(Self)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use hex_newtype;
