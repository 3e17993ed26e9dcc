//! Invite codes: what an admin gives a new device (as text to paste or a QR code) so it
//! can join a vault while no admin is online.
//!
//! A code carries the vault id, the hash of the `CreateInvite` entry, the one-time
//! secret, the expiry, the inviter's device id and its addresses (multiaddrs, as text).
//! It prints as `nexus1` followed by base58 (the version inside is 2). The joining device shows the invite only
//! to the inviter, whose id the transport authenticates, and what it shows is a proof
//! bound to its own id ([`crate::protocol::JoinProof`]), never the secret.
//!
//! ```
//! use nexus_core::{DeviceKey, Hash, InviteCode, VaultId};
//!
//! let code = InviteCode {
//!     vault: VaultId(Hash([1; 32])),
//!     invite: Hash([2; 32]),
//!     secret: [3; 32],
//!     expires_at_ms: 1_700_000_000_000,
//!     inviter: DeviceKey::from_secret_bytes(&[4; 32]).device_id(),
//!     addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
//! };
//! let text = code.to_string();
//! assert!(text.starts_with("nexus1"));
//! assert_eq!(text.parse::<InviteCode>().unwrap(), code);
//! ```

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::protocol::JoinRequest;

const PREFIX: &str = "nexus1";
const VERSION: u64 = 2;
/// Most addresses a code carries.
pub const MAX_ADDRESSES: usize = 8;
const MAX_ADDRESS_LEN: usize = 256;

/// An invite to a vault. Its secret is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    /// The vault.
    pub vault: VaultId,
    /// Hash of the `CreateInvite` entry.
    pub invite: Hash,
    /// The one-time secret.
    pub secret: [u8; 32],
    /// When the invite stops working (milliseconds since the Unix epoch).
    pub expires_at_ms: u64,
    /// The admin device that made the invite: the one peer the invite is shown to.
    pub inviter: DeviceId,
    /// Where the inviter can be reached (multiaddrs).
    pub addresses: Vec<String>,
}

impl Drop for InviteCode {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl zeroize::ZeroizeOnDrop for InviteCode {}

impl std::fmt::Debug for InviteCode {
    /// Everything but the secret, so that logging a code never leaks it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCode")
            .field("vault", &self.vault)
            .field("invite", &self.invite)
            .field("secret", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("inviter", &self.inviter)
            .field("addresses", &self.addresses)
            .finish()
    }
}

/// Why text is not an invite code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InviteCodeError {
    /// Wrong prefix or not base58.
    #[error(
        "not a Nexus invite code: it should start with `{PREFIX}` followed by base58 text (copy the whole code)"
    )]
    NotACode,
    /// The code is damaged.
    #[error("the invite code is damaged: {0}")]
    Damaged(DecodeError),
}

impl InviteCode {
    /// What the joining device presents.
    pub fn join_request(&self) -> JoinRequest {
        JoinRequest {
            invite: self.invite,
            secret: self.secret,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(VERSION)
            .raw(self.vault.as_bytes())
            .raw(self.invite.as_bytes())
            .raw(&self.secret)
            .varint(self.expires_at_ms)
            .raw(self.inviter.public_key());
        let addresses: Vec<&String> = self
            .addresses
            .iter()
            .filter(|a| a.len() <= MAX_ADDRESS_LEN)
            .take(MAX_ADDRESSES)
            .collect();
        w.len(addresses.len());
        for address in addresses {
            w.str(address);
        }
        // A checksum so that a mistyped code is caught rather than misread.
        let body = w.finish();
        let check = Hash::of(&[&body]);
        [body.as_slice(), &check.0[..4]].concat()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::Truncated {
                what: "invite code",
            });
        }
        let (body, check) = bytes.split_at(bytes.len() - 4);
        if Hash::of(&[body]).0[..4] != *check {
            return Err(DecodeError::Invalid {
                what: "invite code",
                reason: "checksum mismatch (a character is wrong or missing)".into(),
            });
        }
        let mut r = Reader::new(body);
        let version = r.varint("invite code version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "invite code",
                version,
                supported: VERSION,
            });
        }
        let vault = VaultId(Hash(r.array("vault")?));
        let invite = Hash(r.array("invite")?);
        let secret = r.array("secret")?;
        let expires_at_ms = r.varint("expiry")?;
        let inviter =
            DeviceId::from_public_key(r.array("inviter")?).map_err(|e| DecodeError::Invalid {
                what: "inviter",
                reason: e.to_string(),
            })?;
        let n = r.count(MAX_ADDRESSES, 1, "addresses")?;
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            addresses.push(r.str(MAX_ADDRESS_LEN, "address")?.to_owned());
        }
        r.finish("invite code")?;
        Ok(Self {
            vault,
            invite,
            secret,
            expires_at_ms,
            inviter,
            addresses,
        })
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", bs58::encode(self.encode()).into_string())
    }
}

impl FromStr for InviteCode {
    type Err = InviteCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = text.strip_prefix(PREFIX).ok_or(InviteCodeError::NotACode)?;
        let bytes = bs58::decode(rest)
            .into_vec()
            .map_err(|_| InviteCodeError::NotACode)?;
        Self::decode(&bytes).map_err(InviteCodeError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_an_invite_or_its_join_request_never_shows_the_secret() {
        let secret = [0xab; 32];
        let code = InviteCode {
            vault: crate::VaultId(crate::Hash([1; 32])),
            invite: crate::Hash([2; 32]),
            secret,
            expires_at_ms: 5,
            inviter: crate::DeviceKey::from_secret_bytes(&[1; 32]).device_id(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
        };
        let shown = format!("{code:?} {:?}", code.join_request());
        assert!(shown.contains("<redacted>"), "{shown}");
        for needle in ["171, 171", "abab", "[171"] {
            assert!(!shown.contains(needle), "{shown}");
        }
    }

    #[test]
    fn codes_survive_line_breaks_and_catch_typos() {
        let code = InviteCode {
            vault: VaultId(Hash([9; 32])),
            invite: Hash([8; 32]),
            secret: [7; 32],
            expires_at_ms: 42,
            inviter: crate::DeviceKey::from_secret_bytes(&[1; 32]).device_id(),
            addresses: vec![
                "/ip4/127.0.0.1/tcp/1".into(),
                "/ip4/127.0.0.1/udp/1/quic-v1".into(),
            ],
        };
        let text = code.to_string();
        let wrapped: String = text
            .chars()
            .enumerate()
            .flat_map(|(i, c)| if i % 40 == 39 { vec![c, '\n'] } else { vec![c] })
            .collect();
        assert_eq!(wrapped.parse::<InviteCode>(), Ok(code));
        // Change one character in the middle.
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            typo.parse::<InviteCode>(),
            Err(InviteCodeError::Damaged(_)) | Err(InviteCodeError::NotACode)
        ));
        assert_eq!(
            "hello".parse::<InviteCode>(),
            Err(InviteCodeError::NotACode)
        );
    }
}
