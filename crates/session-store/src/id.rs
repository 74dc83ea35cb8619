//! Session ids: 128 random bits from the operating system's CSPRNG.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::StoreError;

/// A session id: 128 bits from the OS CSPRNG, never sequential or
/// guessable, printed as 32 lowercase hex digits. An id is a bearer secret,
/// so `Debug` shows only its first 4 digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

/// Hashes the id's last 8 bytes as one word: they are CSPRNG output, as
/// good as a hash, and one word is cheap for any hasher.
impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[8..]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl SessionId {
    /// A fresh random id.
    ///
    /// # Errors
    /// [`StoreError::Random`] if the OS cannot supply randomness.
    pub fn random() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            StoreError::Random(match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::other(e.to_string()),
            })
        })?;
        Ok(Self(bytes))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An id from its bytes (for backends that store them raw).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for SessionId {
    /// 32 lowercase hex digits, written at once (every key and cookie
    /// formats an id: one `write!` per byte showed in the Redis profile).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (pair, b) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
        }
        // Hex digits are ASCII, so this never takes the error branch.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl FromStr for SessionId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(IdError::Length { len: s.len() }.into());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|source| IdError::NotHex { at: 2 * i, source })?;
        }
        Ok(Self(bytes))
    }
}

/// Why a string is not a session id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// It is not 32 ASCII characters long.
    #[error("expected 32 hex digits, got {len} bytes")]
    Length {
        /// Its length in bytes.
        len: usize,
    },
    /// A pair of characters is not a hexadecimal byte.
    #[error("not hexadecimal at character {at}")]
    NotHex {
        /// Where the bad pair starts.
        at: usize,
        /// The parse error.
        #[source]
        source: std::num::ParseIntError,
    },
}

/// Hex text in human-readable formats; its 16 bytes in binary ones.
impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.as_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 16]>::deserialize(deserializer).map(Self::from_bytes);
        }
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_hides_itself_in_debug() {
        let id = SessionId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<SessionId>().unwrap(), id);
        let debug = format!("{id:?}");
        assert!(!debug.contains(&text[4..]), "{debug}");
    }

    #[test]
    fn displays_as_lowercase_hex_of_its_bytes() {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i * 17).unwrap();
        }
        let id = SessionId(bytes);
        assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| SessionId::random().unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn bad_text_is_refused_with_what_is_wrong_and_its_source() {
        use std::error::Error as _;
        let short = "abc".parse::<SessionId>().unwrap_err();
        assert!(matches!(
            short,
            StoreError::InvalidId(IdError::Length { len: 3 })
        ));
        let not_hex = format!("00{}", "zz".repeat(15))
            .parse::<SessionId>()
            .unwrap_err();
        let StoreError::InvalidId(inner) = &not_hex else {
            panic!("{not_hex:?}");
        };
        assert!(matches!(inner, IdError::NotHex { at: 2, .. }), "{inner}");
        assert!(inner.source().is_some(), "the parse error is kept");
        assert!(not_hex.to_string().contains("character 2"), "{not_hex}");
    }
}
