//! What a device leaves at a relay for members who are offline: a [`Bundle`] of the
//! vault's membership entries and the document changes made since the last bundle,
//! encrypted under the vault's current key ([`crate::sealing`]) and put in the relay
//! mailbox named by that key ([`crate::sealing::VaultKey::mailbox_id`]).
//!
//! Nothing in a bundle is trusted for being in it: a member who opens one feeds the
//! entries and changes through the same checks as a peer's ([`crate::Node::receive_bundle`]),
//! so a bundle written by anyone holding the key can add only what its signatures prove.
//! The relay sees the mailbox id, the random bundle id, the size and the times.
//!
//! Under the previous keys a depositing member leaves only a [`KeyNotice`]: the current
//! key sealed to each member, recipients left out. A member who was away during a
//! rotation opens its copy and reads the current key's mailbox; a device revoked since
//! (which still holds the old keys) finds no copy of its own and learns nothing else:
//! neither entries nor who holds a copy.

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::document::SignedChange;
use crate::identity::DeviceKey;
use crate::ids::{DocId, VaultId};
use crate::mailbox::MAX_BUNDLE_BYTES;
use crate::membership::{MAX_ENTRIES, MAX_ENTRY_BYTES, SignedEntry};
use crate::sealing::{
    BUNDLE_OVERHEAD, BlindCopy, SealError, VaultKey, decrypt_bundle, encrypt_bundle,
};

const BUNDLE_VERSION: u64 = 1;
/// What a key notice's plaintext starts with instead of [`BUNDLE_VERSION`].
const NOTICE_VERSION: u64 = 0x6e;
/// Most copies one key notice carries.
pub const MAX_NOTICE_COPIES: usize = crate::membership::MAX_SEALED_KEYS;

/// The vault's current key sealed to each member, recipients left out: what is left
/// under the previous keys (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyNotice {
    /// One copy per member.
    pub copies: Vec<BlindCopy>,
}

impl KeyNotice {
    /// The key among the copies that is sealed to `device`, if any.
    pub fn open_for(&self, vault: &VaultId, device: &DeviceKey) -> Option<VaultKey> {
        self.copies.iter().find_map(|c| c.open(vault, device).ok())
    }

    /// The plaintext form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(NOTICE_VERSION).len(self.copies.len());
        for copy in &self.copies {
            copy.write(&mut w);
        }
        w.finish()
    }

    /// Reads what follows the version of [`KeyNotice::encode`]'s output.
    fn decode(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.count(MAX_NOTICE_COPIES, 80, "key notice copies")?;
        let mut copies = Vec::with_capacity(count);
        for _ in 0..count {
            copies.push(BlindCopy::read(&mut r)?);
        }
        r.finish("key notice")?;
        Ok(Self { copies })
    }

    /// Encrypts the notice under (an old) `key` as mailbox bundle `id`.
    pub fn seal(
        &self,
        key: &VaultKey,
        vault: &VaultId,
        id: &[u8; 16],
    ) -> Result<Vec<u8>, BundleError> {
        Ok(encrypt_bundle(key, vault, id, &self.encode())?)
    }
}

/// What a mailbox bundle holds once opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxItem {
    /// Entries and changes.
    Bundle(Bundle),
    /// The current key, for members who missed a rotation.
    Notice(KeyNotice),
}

impl MailboxItem {
    /// Decrypts mailbox bundle `id` under `key` and reads what it holds.
    pub fn open(
        bytes: &[u8],
        key: &VaultKey,
        vault: &VaultId,
        id: &[u8; 16],
    ) -> Result<Self, BundleError> {
        let plaintext = decrypt_bundle(key, vault, id, bytes)?;
        let mut r = Reader::new(&plaintext);
        if r.varint("mailbox item version")? == NOTICE_VERSION {
            return Ok(MailboxItem::Notice(KeyNotice::decode(r)?));
        }
        Ok(MailboxItem::Bundle(Bundle::decode(&plaintext)?))
    }
}
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
