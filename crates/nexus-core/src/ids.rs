//! Identifiers of vaults and documents, printed base58.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::hash::Hash;

/// Why text is not a vault or document id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The text is not base58 of the right length.
    #[error("`{input}` is not a {kind} id: expected {len} bytes in base58")]
    Malformed {
        /// "vault" or "document".
        kind: &'static str,
        /// The text given (cut to 64 characters).
        input: String,
        /// The number of bytes an id of this kind has.
        len: usize,
    },
    /// The text is not the 64 hex digits of a hash (an invite id, an entry).
    #[error("`{input}` is not a hash: expected 64 hex digits")]
    NotHex {
        /// The text given (cut to 80 characters).
        input: String,
    },
}

impl FromStr for Hash {
    type Err = ParseIdError;

    /// Parses the 64 hex digits that [`Hash`]'s `Display` prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || ParseIdError::NotHex {
            input: s.chars().take(80).collect(),
        };
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Hash(out))
    }
}

fn parse_base58<const N: usize>(s: &str, kind: &'static str) -> Result<[u8; N], ParseIdError> {
    let s = s.trim();
    let malformed = || ParseIdError::Malformed {
        kind,
        input: s.chars().take(64).collect(),
        len: N,
    };
    let bytes = bs58::decode(s).into_vec().map_err(|_| malformed())?;
    bytes.try_into().map_err(|_| malformed())
}

/// A vault's id: the hash of its signed genesis entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultId(pub Hash);

impl VaultId {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl fmt::Display for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0.0).into_string())
    }
}

impl fmt::Debug for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultId({})", self.0.short())
    }
}

impl FromStr for VaultId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_base58::<32>(s, "vault").map(|b| Self(Hash(b)))
    }
}

/// A document's id: 16 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(pub [u8; 16]);

impl DocId {
    /// A new random id from the system's secure random source.
    pub fn random() -> Result<Self, crate::KeyError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| crate::KeyError::NoRandomness(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}

impl FromStr for DocId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_base58::<16>(s, "document").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_wrong_lengths() {
        let doc = DocId([9; 16]);
        assert_eq!(doc.to_string().parse::<DocId>(), Ok(doc));
        let vault = VaultId(Hash([3; 32]));
        assert_eq!(vault.to_string().parse::<VaultId>(), Ok(vault));
        let err = doc.to_string().parse::<VaultId>().unwrap_err();
        assert!(err.to_string().contains("vault id"), "{err}");
        assert!("0OIl".parse::<DocId>().is_err());
    }

    #[test]
    fn hashes_round_trip_as_hex_and_bad_text_is_an_error_not_a_panic() {
        let hash = Hash([0xa7; 32]);
        assert_eq!(hash.to_string().parse::<Hash>(), Ok(hash));
        let multibyte = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        for bad in ["", "zz", &"g".repeat(64), &"a".repeat(63), &multibyte] {
            assert!(bad.parse::<Hash>().is_err(), "{bad}");
        }
    }
}
