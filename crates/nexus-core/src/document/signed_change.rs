//! [`SignedChange`], one Automerge change with its author's signature: its record
//! encoding, the message that is signed, and batch verification of signatures.

use automerge::ChangeHash;

use super::{MAX_CHANGE_BYTES, RECORD_VERSION};
use crate::codec::{DecodeError, Reader, Writer};
use crate::identity::{DeviceId, Signature};
use crate::ids::{DocId, VaultId};

const CHANGE_DOMAIN: &[u8] = b"nexus/change/v1";

/// One Automerge change with its author device's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedChange {
    /// The raw Automerge change.
    pub bytes: Vec<u8>,
    /// The device that made and signed it.
    pub author: DeviceId,
    /// Signature over (vault id, doc id, change hash).
    pub signature: Signature,
}

impl SignedChange {
    /// Encodes the change as stored and sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.finish()
    }

    /// Appends the encoded change to a writer.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.varint(RECORD_VERSION)
            .bytes(&self.bytes)
            .raw(self.author.public_key())
            .raw(&self.signature.0);
    }

    /// Length of [`SignedChange::encode`]'s output.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + varint_len(self.bytes.len() as u64) + self.bytes.len() + 32 + 64
    }

    /// Decodes a change record (the signature is checked later, by
    /// [`Document::apply`](super::Document::apply)).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, &mut None)
    }

    /// [`SignedChange::decode`], remembering the last author checked: changes in one
    /// message mostly share an author, and checking a key is a point decompression.
    pub(crate) fn decode_with(
        bytes: &[u8],
        last_author: &mut Option<([u8; 32], DeviceId)>,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("change record version")?;
        if version != RECORD_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "change record",
                version,
                supported: RECORD_VERSION,
            });
        }
        let change = r.bytes(MAX_CHANGE_BYTES, "change bytes")?.to_vec();
        let key: [u8; 32] = r.array("change author")?;
        let author = match last_author {
            Some((k, id)) if *k == key => *id,
            _ => {
                let id = DeviceId::from_public_key(key).map_err(|e| DecodeError::Invalid {
                    what: "change author",
                    reason: e.to_string(),
                })?;
                *last_author = Some((key, id));
                id
            }
        };
        let signature = Signature(r.array("change signature")?);
        r.finish("change record")?;
        Ok(Self {
            bytes: change,
            author,
            signature,
        })
    }
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// The message a device signs for a change.
pub fn change_signing_message(vault: &VaultId, doc: &DocId, hash: &ChangeHash) -> [u8; 95] {
    let mut out = [0u8; 95];
    out[..15].copy_from_slice(CHANGE_DOMAIN);
    out[15..47].copy_from_slice(vault.as_bytes());
    out[47..63].copy_from_slice(doc.as_bytes());
    out[63..].copy_from_slice(&hash.0);
    out
}

/// Checks many signatures at once. Returns, for each item, whether it verified.
///
/// A batch that verifies costs about a third of checking one by one (and is spread over
/// the cores natively); a batch that fails is checked one by one to find the forgeries.
pub fn verify_signatures(items: &[(&[u8], DeviceId, Signature)]) -> Vec<bool> {
    if items.len() > 1 && crate::arch::batch_verifies(items) {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|(message, key, signature)| key.verifies(message, signature))
        .collect()
}
