//! Membership entries: the actions, the unsigned [`Entry`], the authentic
//! [`SignedEntry`], and their one binary encoding.

use std::collections::BTreeMap;
use std::fmt;

use super::{
    EntryError, MAX_ACTOR_LEN, MAX_ACTORS_PER_DOC, MAX_ENTRY_BYTES, MAX_NAME_LEN, MAX_PARENTS,
    MAX_REVOKED_DOCS, MAX_SEALED_KEYS,
};
use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey, Signature};
use crate::ids::{DocId, VaultId};
use crate::sealing::SealedKey;

const ENTRY_VERSION: u64 = 2;
const SIGNING_DOMAIN: &[u8] = b"nexus/membership-entry/v3";

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May approve, invite and revoke devices, and edit documents.
    Admin,
    /// May edit documents.
    Member,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Role::Admin => 0,
            Role::Member => 1,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        match tag {
            0 => Ok(Role::Admin),
            1 => Ok(Role::Member),
            tag => Err(DecodeError::UnknownTag {
                what: "role",
                tag: tag.into(),
            }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Member => "member",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!(
                "unknown role `{other}`: expected `admin` or `member`"
            )),
        }
    }
}

/// How much of a device's work an admin had seen when revoking it: per document, per
/// Automerge actor id the device wrote with, the highest sequence number seen.
pub type WorkSeen = BTreeMap<DocId, BTreeMap<Vec<u8>, u64>>;

/// What a membership entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Creates the vault; the author becomes its first admin.
    Genesis {
        /// A name people see.
        name: String,
        /// Random bytes so that two vaults with the same name and creator differ.
        nonce: [u8; 16],
    },
    /// An admin approves a device.
    AddDevice {
        /// The approved device.
        device: DeviceId,
        /// Its role.
        role: Role,
    },
    /// An admin publishes a one-time invite.
    CreateInvite {
        /// The public key derived from the invite's secret ([`super::invite_key`]).
        invite_key: DeviceId,
        /// The role the invitee gets.
        role: Role,
        /// When the invite stops working (milliseconds since the Unix epoch).
        expires_at_ms: u64,
    },
    /// A new device joins with an invite; the entry's author is the new device.
    RedeemInvite {
        /// Hash of the `CreateInvite` entry.
        invite: Hash,
        /// The invite key's signature admitting the author ([`super::redemption_proof`]).
        proof: Signature,
    },
    /// An admin cancels an invite: a redemption it had not seen admits nobody.
    CancelInvite {
        /// Hash of the `CreateInvite` entry.
        invite: Hash,
    },
    /// An admin revokes a device.
    RevokeDevice {
        /// The revoked device.
        device: DeviceId,
        /// The revoked device's work the admin had seen: it stays; later work does not.
        seen: WorkSeen,
    },
    /// An admin makes a new vault key, sealed to each member (rule 9).
    NewKey {
        /// Higher than every key's in the entry's causal past.
        generation: u32,
        /// [`crate::sealing::VaultKey::commitment`] of the key: what an opened copy must
        /// match.
        commitment: Hash,
        /// Copies of the key, one per device, sorted by device.
        sealed: Vec<SealedKey>,
    },
    /// An admin seals an existing vault key to more devices (rule 9).
    ShareKey {
        /// The `NewKey` entry that made the key.
        key: Hash,
        /// That key's generation.
        generation: u32,
        /// Copies of the key, one per device, sorted by device.
        sealed: Vec<SealedKey>,
    },
}

impl Action {
    fn tag(&self) -> u8 {
        match self {
            Action::Genesis { .. } => 0,
            Action::AddDevice { .. } => 1,
            Action::CreateInvite { .. } => 2,
            Action::RedeemInvite { .. } => 3,
            Action::RevokeDevice { .. } => 4,
            Action::NewKey { .. } => 5,
            Action::ShareKey { .. } => 6,
            Action::CancelInvite { .. } => 7,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Genesis { .. } => "genesis",
            Action::AddDevice { .. } => "add device",
            Action::CreateInvite { .. } => "create invite",
            Action::RedeemInvite { .. } => "redeem invite",
            Action::RevokeDevice { .. } => "revoke device",
            Action::NewKey { .. } => "new vault key",
            Action::ShareKey { .. } => "share vault key",
            Action::CancelInvite { .. } => "cancel invite",
        }
    }
}

/// An unsigned membership entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The vault, absent only in the genesis entry (whose hash names the vault).
    pub vault: Option<VaultId>,
    /// Hashes of the entries the author had seen as heads (sorted, no duplicates).
    pub parents: Vec<Hash>,
    /// The signing device.
    pub author: DeviceId,
    /// The author's clock when it wrote the entry (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// What the entry does.
    pub action: Action,
}

impl Entry {
    fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(ENTRY_VERSION).u8(self.action.tag());
        if let Some(vault) = &self.vault {
            w.raw(vault.as_bytes());
        }
        w.len(self.parents.len());
        for parent in &self.parents {
            w.raw(parent.as_bytes());
        }
        w.raw(self.author.public_key()).varint(self.timestamp_ms);
        match &self.action {
            Action::Genesis { name, nonce } => {
                w.str(name).raw(nonce);
            }
            Action::AddDevice { device, role } => {
                w.raw(device.public_key()).u8(role.tag());
            }
            Action::CreateInvite {
                invite_key,
                role,
                expires_at_ms,
            } => {
                w.raw(invite_key.public_key())
                    .u8(role.tag())
                    .varint(*expires_at_ms);
            }
            Action::RedeemInvite { invite, proof } => {
                w.raw(invite.as_bytes()).raw(&proof.0);
            }
            Action::CancelInvite { invite } => {
                w.raw(invite.as_bytes());
            }
            Action::RevokeDevice { device, seen } => {
                w.raw(device.public_key()).len(seen.len());
                for (doc, actors) in seen {
                    w.raw(doc.as_bytes()).len(actors.len());
                    for (actor, seq) in actors {
                        w.bytes(actor).varint(*seq);
                    }
                }
            }
            Action::NewKey {
                generation,
                commitment,
                sealed,
            } => {
                w.varint((*generation).into())
                    .raw(commitment.as_bytes())
                    .len(sealed.len());
                for copy in sealed {
                    copy.write_body(&mut w);
                }
            }
            Action::ShareKey {
                key,
                generation,
                sealed,
            } => {
                w.raw(key.as_bytes())
                    .varint((*generation).into())
                    .len(sealed.len());
                for copy in sealed {
                    copy.write_body(&mut w);
                }
            }
        }
        w.finish()
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("entry version")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "membership entry",
                version,
                supported: ENTRY_VERSION,
            });
        }
        let tag = r.u8("entry action")?;
        let vault = if tag == 0 {
            None
        } else {
            Some(VaultId(Hash(r.array("entry vault")?)))
        };
        let n = r.count(MAX_PARENTS, 32, "entry parents")?;
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            parents.push(Hash(r.array("entry parent")?));
        }
        let author = read_device(&mut r, "entry author")?;
        let timestamp_ms = r.varint("entry timestamp")?;
        let action = match tag {
            0 => Action::Genesis {
                name: r.str(MAX_NAME_LEN, "vault name")?.to_owned(),
                nonce: r.array("genesis nonce")?,
            },
            1 => Action::AddDevice {
                device: read_device(&mut r, "added device")?,
                role: Role::from_tag(r.u8("role")?)?,
            },
            2 => Action::CreateInvite {
                invite_key: read_device(&mut r, "invite key")?,
                role: Role::from_tag(r.u8("role")?)?,
                expires_at_ms: r.varint("invite expiry")?,
            },
            3 => Action::RedeemInvite {
                invite: Hash(r.array("redeemed invite")?),
                proof: Signature(r.array("invite proof")?),
            },
            7 => Action::CancelInvite {
                invite: Hash(r.array("cancelled invite")?),
            },
            4 => {
                let device = read_device(&mut r, "revoked device")?;
                let docs = r.count(MAX_REVOKED_DOCS, 17, "revocation documents")?;
                let mut seen = WorkSeen::new();
                for _ in 0..docs {
                    let doc = DocId(r.array("revocation document")?);
                    if seen.last_key_value().is_some_and(|(last, _)| *last >= doc) {
                        return Err(DecodeError::Invalid {
                            what: "revocation",
                            reason: "documents not in strictly increasing order".into(),
                        });
                    }
                    let count = r.count(MAX_ACTORS_PER_DOC, 2, "revocation actors")?;
                    let mut actors = BTreeMap::new();
                    for _ in 0..count {
                        let actor = r.bytes(MAX_ACTOR_LEN, "revocation actor")?.to_vec();
                        let seq = r.varint("revocation sequence number")?;
                        if actors
                            .last_key_value()
                            .is_some_and(|(last, _)| *last >= actor)
                        {
                            // One encoding per entry: actors sorted, each once.
                            return Err(DecodeError::Invalid {
                                what: "revocation",
                                reason: "actors not in strictly increasing order".into(),
                            });
                        }
                        actors.insert(actor, seq);
                    }
                    seen.insert(doc, actors);
                }
                Action::RevokeDevice { device, seen }
            }
            5 => {
                let generation = read_generation(&mut r)?;
                Action::NewKey {
                    generation,
                    commitment: Hash(r.array("key commitment")?),
                    sealed: read_sealed(&mut r, generation)?,
                }
            }
            6 => {
                let key = Hash(r.array("shared key entry")?);
                let generation = read_generation(&mut r)?;
                Action::ShareKey {
                    key,
                    generation,
                    sealed: read_sealed(&mut r, generation)?,
                }
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "membership action",
                    tag: tag.into(),
                });
            }
        };
        r.finish("membership entry")?;
        let entry = Entry {
            vault,
            parents,
            author,
            timestamp_ms,
            action,
        };
        entry.check_shape()?;
        Ok(entry)
    }

    fn check_shape(&self) -> Result<(), DecodeError> {
        let invalid = |reason: &str| DecodeError::Invalid {
            what: "membership entry",
            reason: reason.into(),
        };
        let is_genesis = matches!(self.action, Action::Genesis { .. });
        if is_genesis && !self.parents.is_empty() {
            return Err(invalid("a genesis entry has no parents"));
        }
        if !is_genesis && self.parents.is_empty() {
            return Err(invalid("only a genesis entry has no parents"));
        }
        if self.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("parents must be sorted and distinct"));
        }
        Ok(())
    }

    /// Signs the entry with `key`, which must be the author's.
    pub fn sign(self, key: &DeviceKey) -> SignedEntry {
        let body = self.encode_body();
        let hash = Hash::of(&[&body]);
        let signature = key.sign(&signing_message(&hash));
        SignedEntry {
            entry: self,
            hash,
            signature,
            body,
        }
    }
}

fn read_generation(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    u32::try_from(r.varint("key generation")?).map_err(|_| DecodeError::Invalid {
        what: "key generation",
        reason: "over 2^32".into(),
    })
}

/// Sealed copies, sorted by recipient with each recipient once (one encoding per entry).
fn read_sealed(r: &mut Reader<'_>, generation: u32) -> Result<Vec<SealedKey>, DecodeError> {
    let count = r.count(MAX_SEALED_KEYS, 112, "sealed keys")?;
    let mut sealed: Vec<SealedKey> = Vec::with_capacity(count);
    for _ in 0..count {
        let copy = SealedKey::read_body(r, generation)?;
        if sealed
            .last()
            .is_some_and(|last| last.recipient >= copy.recipient)
        {
            return Err(DecodeError::Invalid {
                what: "sealed keys",
                reason: "recipients not in strictly increasing order".into(),
            });
        }
        sealed.push(copy);
    }
    Ok(sealed)
}

fn read_device(r: &mut Reader<'_>, what: &'static str) -> Result<DeviceId, DecodeError> {
    DeviceId::from_public_key(r.array(what)?).map_err(|e| DecodeError::Invalid {
        what,
        reason: e.to_string(),
    })
}

fn signing_message(hash: &Hash) -> Vec<u8> {
    [SIGNING_DOMAIN, hash.as_bytes()].concat()
}

/// A membership entry with its author's signature. Constructing one from bytes checks the
/// signature, so every value of this type is authentic.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedEntry {
    pub(super) entry: Entry,
    pub(super) hash: Hash,
    signature: Signature,
    body: Vec<u8>,
}

impl fmt::Debug for SignedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entry({} {} by {:?})",
            self.hash.short(),
            self.entry.action.name(),
            self.entry.author
        )
    }
}

impl SignedEntry {
    /// The entry.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Its content hash (of the unsigned body).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The encoded form: the body with a length prefix, then the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(&self.body).raw(&self.signature.0);
        w.finish()
    }

    /// Decodes an entry and checks its author's signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let mut r = Reader::new(bytes);
        let body = r.bytes(MAX_ENTRY_BYTES, "membership entry body")?;
        let signature = Signature(r.array("membership entry signature")?);
        r.finish("signed membership entry")?;
        let entry = Entry::decode_body(body)?;
        let hash = Hash::of(&[body]);
        if !entry.author.verifies(&signing_message(&hash), &signature) {
            return Err(EntryError::BadSignature {
                entry: hash,
                author: entry.author,
            });
        }
        Ok(Self {
            entry,
            hash,
            signature,
            body: body.to_vec(),
        })
    }
}
