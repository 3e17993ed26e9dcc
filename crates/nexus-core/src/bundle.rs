//! What a device leaves at a relay for members who are offline: a [`Bundle`] of the
//! vault's membership entries and the document changes made since the last bundle,
//! encrypted under the vault's current key ([`crate::sealing`]) and put in the relay
//! mailbox named by that key ([`crate::sealing::VaultKey::mailbox_id`]).
//!
//! Nothing in a bundle is trusted for being in it: a member who opens one feeds the
//! entries and changes through the same checks as a peer's ([`crate::Node::receive_bundle`]),
//! so a bundle written by anyone holding the key can add only what its signatures prove.
//! The relay sees the mailbox id, the random bundle id, the size and the times.

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::document::SignedChange;
use crate::ids::{DocId, VaultId};
use crate::mailbox::MAX_BUNDLE_BYTES;
use crate::membership::{MAX_ENTRIES, MAX_ENTRY_BYTES, SignedEntry};
use crate::sealing::{BUNDLE_OVERHEAD, SealError, VaultKey, decrypt_bundle, encrypt_bundle};

const BUNDLE_VERSION: u64 = 1;
/// Most documents one bundle may carry.
pub const MAX_BUNDLE_DOCS: usize = 100_000;
/// Largest plaintext that still fits one mailbox bundle once encrypted.
pub const MAX_BUNDLE_PLAINTEXT: usize = MAX_BUNDLE_BYTES - BUNDLE_OVERHEAD;

/// Membership entries and document changes for members who were offline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// The vault's membership entries (a member who missed an approval or a new key
    /// needs them to judge the changes).
    pub entries: Vec<SignedEntry>,
    /// Per document, signed changes in causal order.
    pub docs: Vec<(DocId, Vec<SignedChange>)>,
}

/// Why a bundle could not be made or opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Encryption or authentication failed (not this vault's key, or altered).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The decrypted bytes are not a bundle.
    #[error("a mailbox bundle is malformed: {0}")]
    Decode(#[from] DecodeError),
    /// A membership entry in it is not authentic.
    #[error("a mailbox bundle carries a bad membership entry: {0}")]
    Entry(#[from] crate::membership::EntryError),
    /// The bundle would not fit a relay mailbox.
    #[error("a bundle of {bytes} bytes is over the mailbox limit of {MAX_BUNDLE_PLAINTEXT}")]
    TooLarge {
        /// Its plaintext size.
        bytes: usize,
    },
}

impl Bundle {
    /// How many changes it carries.
    pub fn change_count(&self) -> usize {
        self.docs.iter().map(|(_, changes)| changes.len()).sum()
    }

    /// The plaintext form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(BUNDLE_VERSION).len(self.entries.len());
        for entry in &self.entries {
            w.bytes(&entry.encode());
        }
        w.len(self.docs.len());
        for (doc, changes) in &self.docs {
            w.raw(doc.as_bytes()).len(changes.len());
            for change in changes {
                w.bytes(&change.encode());
            }
        }
        w.finish()
    }

    /// Reads [`Bundle::encode`]'s output, checking every entry's signature (changes are
    /// checked when applied).
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("bundle version")?;
        if version != BUNDLE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "mailbox bundle",
                version,
                supported: BUNDLE_VERSION,
            }
            .into());
        }
        let count = r.count(MAX_ENTRIES, 100, "bundle entries")?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(SignedEntry::decode(
                r.bytes(MAX_ENTRY_BYTES, "bundle entry")?,
            )?);
        }
        let count = r.count(MAX_BUNDLE_DOCS, 17, "bundle documents")?;
        let mut docs = Vec::with_capacity(count);
        for _ in 0..count {
            let doc = DocId(r.array("bundle document")?);
            let changes = r.count(MAX_BUNDLE_PLAINTEXT / 100, 100, "bundle changes")?;
            let mut list = Vec::with_capacity(changes);
            for _ in 0..changes {
                list.push(SignedChange::decode(
                    r.bytes(MAX_BUNDLE_PLAINTEXT, "bundle change")?,
                )?);
            }
            docs.push((doc, list));
        }
        r.finish("mailbox bundle")?;
        Ok(Self { entries, docs })
    }

    /// Encrypts the bundle under `key` as mailbox bundle `id`.
    pub fn seal(
        &self,
        key: &VaultKey,
        vault: &VaultId,
        id: &[u8; 16],
    ) -> Result<Vec<u8>, BundleError> {
        let plaintext = self.encode();
        if plaintext.len() > MAX_BUNDLE_PLAINTEXT {
            return Err(BundleError::TooLarge {
                bytes: plaintext.len(),
            });
        }
        Ok(encrypt_bundle(key, vault, id, &plaintext)?)
    }

    /// Decrypts and decodes mailbox bundle `id`.
    pub fn open(
        bytes: &[u8],
        key: &VaultKey,
        vault: &VaultId,
        id: &[u8; 16],
    ) -> Result<Self, BundleError> {
        Self::decode(&decrypt_bundle(key, vault, id, bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;
    use crate::membership::MembershipLog;

    #[test]
    fn bundles_round_trip_through_encryption_and_refuse_garbage() {
        let alice = DeviceKey::from_secret_bytes(&[1; 32]);
        let (log, genesis) = MembershipLog::create(&alice, "v", [0; 16], 0).unwrap();
        let vault = log.vault_id();
        let bundle = Bundle {
            entries: vec![genesis],
            docs: vec![(DocId([3; 16]), Vec::new())],
        };
        let key = VaultKey::derive(&alice, &vault, &log.heads(), 0);
        let sealed = bundle.seal(&key, &vault, &[9; 16]).unwrap();
        assert_eq!(
            Bundle::open(&sealed, &key, &vault, &[9; 16]).unwrap(),
            bundle
        );
        let other = VaultKey::derive(&alice, &vault, &log.heads(), 1);
        assert!(matches!(
            Bundle::open(&sealed, &other, &vault, &[9; 16]),
            Err(BundleError::Seal(_))
        ));
        assert!(Bundle::decode(&[]).is_err());
        assert!(Bundle::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut trailing = bundle.encode();
        trailing.push(0);
        assert!(Bundle::decode(&trailing).is_err());
    }
}
