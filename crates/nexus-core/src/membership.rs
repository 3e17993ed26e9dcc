//! The membership log of a vault and the one pure function that decides who belongs.
//!
//! A vault's membership is a hash-linked DAG of signed [`Entry`]s. Each entry names the
//! entries its author had seen (its `parents`), so the log records what every action
//! knew. [`MembershipLog::membership`] (and the pure [`evaluate`]) read the log at a set
//! of heads and return the [`Membership`]: members and their roles, revoked devices and
//! where their work is cut off, and open invites.
//!
//! # The rules
//!
//! The entries in the causal past of the heads are put in one canonical order: parents
//! before children; among entries whose parents are all placed, the smallest
//! `(timestamp, hash)` first. The order depends only on the set of entries, never on the
//! order they arrived in, so every device computes the same answer. Entries are then
//! replayed in that order:
//!
//! 1. **Genesis** makes its author the first admin. A log has exactly one genesis, and its
//!    hash is the [`VaultId`].
//! 2. **AddDevice** (approve a `DeviceId`, e.g. read from a QR code), **CreateInvite** and
//!    **RevokeDevice** need an author who is an admin at that point.
//! 3. **CreateInvite** publishes the SHA-256 of a one-time secret, a role and an expiry.
//!    **RedeemInvite** is signed by the *new* device and reveals the secret, so a device
//!    can join while no admin is online. It is valid when the invite is in its causal past,
//!    the secret matches, its timestamp is not after the expiry, and its author is not
//!    already a member. When a member receives a redemption from the redeeming device
//!    itself, it also refuses one whose timestamp is more than [`MAX_CLOCK_SKEW_MS`] from
//!    its own clock, so an expired invite cannot be redeemed by back-dating.
//! 4. **An invite admits one device.** If it is redeemed twice (concurrently), the
//!    redemption first in the canonical order wins; the other admits nobody.
//! 5. **A device is a member** while it has an admission (AddDevice or RedeemInvite) that
//!    comes causally *after* every revocation of it. A revocation therefore beats an
//!    approval it races with, and re-admitting a revoked device takes a new approval made
//!    by an admin who had seen the revocation.
//! 6. **Revocation wins over the revoked device's concurrent actions.** Every entry by a
//!    revoked device that is not in the causal past of its revocation is void, even if it
//!    came earlier in the canonical order (unless a later re-admission precedes it). Void
//!    entries are stored but have no effect; the replay repeats until no new entry is void.
//! 7. **Two admins who revoke each other concurrently**: the more senior admin wins (the
//!    one admitted earlier in the canonical order; the vault's creator is the most
//!    senior), and the junior admin's revocation is void. Longer cycles of concurrent
//!    revocations resolve by the canonical order and rule 6.
//! 8. A revocation records, per document, how much of the revoked device's work its author
//!    had seen: for each Automerge actor the device wrote with, the highest sequence number
//!    (a [`WorkSeen`]). Automerge numbers an actor's changes 1, 2, 3… and each builds on the
//!    one before, so this is exactly the set of the device's changes in the causal past of
//!    the heads the admin had, yet it can be judged from a change alone, without the rest
//!    of the graph (which may never arrive: a head the admin saw can later be dropped by
//!    another revocation). Changes at or below the recorded numbers stay valid; the
//!    device's other changes are rejected everywhere (see [`crate::Document`]). Several
//!    revocations of one device keep the highest number per actor.
//! 9. **Vault keys.** **NewKey** (admins only) makes a vault key and carries it sealed to
//!    the devices its author counts as members ([`crate::sealing`]); its generation must
//!    be higher than that of every key in its causal past. **ShareKey** (admins only)
//!    seals a key whose `NewKey` is in its causal past to more devices (a device admitted
//!    after the key was made); the first copy per device in the canonical order counts.
//! 10. **The current key** is the last `NewKey` in the canonical order that causally
//!     follows every revocation. After a revocation there is none until an admin who has
//!     seen it makes a new key, which the revoked device never receives. Admins' nodes do
//!     this by themselves ([`crate::Vault::maintain_keys`]): a key at creation, a new one
//!     after each revocation, and shared copies for members who lack the current key.
//!
//! ```
//! use nexus_core::{DeviceKey, MembershipLog, Role};
//!
//! let alice = DeviceKey::from_secret_bytes(&[1; 32]);
//! let bob = DeviceKey::from_secret_bytes(&[2; 32]);
//! let (mut log, _genesis) = MembershipLog::create(&alice, "Home", [0; 16], 1_000).unwrap();
//! log.add_device(&alice, bob.device_id(), Role::Member, 2_000).unwrap();
//! assert!(log.membership().is_member(&bob.device_id()));
//! log.revoke_device(&alice, bob.device_id(), Default::default(), 3_000).unwrap();
//! assert!(!log.membership().is_member(&bob.device_id()));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey, Signature};
use crate::ids::{DocId, VaultId};
use crate::sealing::SealedKey;

/// Largest clock difference tolerated between a redeeming device and the member that
/// first accepts its redemption (10 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// Most parents an entry may name.
pub const MAX_PARENTS: usize = 64;
/// Most entries a vault's membership log may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest vault name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most documents a revocation may record work for.
pub const MAX_REVOKED_DOCS: usize = 100_000;
/// Most Automerge actors recorded per document in a revocation.
pub const MAX_ACTORS_PER_DOC: usize = 64;
/// Longest Automerge actor id, in bytes.
pub const MAX_ACTOR_LEN: usize = 64;
/// Most sealed key copies one entry may carry.
pub const MAX_SEALED_KEYS: usize = 1024;

const ENTRY_VERSION: u64 = 1;
const SIGNING_DOMAIN: &[u8] = b"nexus/membership-entry/v1";

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
        /// SHA-256 of the invite's secret.
        secret_hash: Hash,
        /// The role the invitee gets.
        role: Role,
        /// When the invite stops working (milliseconds since the Unix epoch).
        expires_at_ms: u64,
    },
    /// A new device joins with an invite's secret; the entry's author is the new device.
    RedeemInvite {
        /// Hash of the `CreateInvite` entry.
        invite: Hash,
        /// The one-time secret.
        secret: [u8; 32],
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
                secret_hash,
                role,
                expires_at_ms,
            } => {
                w.raw(secret_hash.as_bytes())
                    .u8(role.tag())
                    .varint(*expires_at_ms);
            }
            Action::RedeemInvite { invite, secret } => {
                w.raw(invite.as_bytes()).raw(secret);
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
            Action::NewKey { generation, sealed } => {
                w.varint((*generation).into()).len(sealed.len());
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
                secret_hash: Hash(r.array("invite secret hash")?),
                role: Role::from_tag(r.u8("role")?)?,
                expires_at_ms: r.varint("invite expiry")?,
            },
            3 => Action::RedeemInvite {
                invite: Hash(r.array("redeemed invite")?),
                secret: r.array("invite secret")?,
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
    entry: Entry,
    hash: Hash,
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
        entry
            .author
            .verifying_key()
            .verify_strict(&signing_message(&hash), &signature.to_dalek())
            .map_err(|_| EntryError::BadSignature {
                entry: hash,
                author: entry.author,
            })?;
        Ok(Self {
            entry,
            hash,
            signature,
            body: body.to_vec(),
        })
    }
}

/// Largest encoded entry body accepted (a revocation recording many documents' heads).
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

/// Why bytes are not an authentic membership entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes do not decode.
    #[error("malformed membership entry: {0}")]
    Decode(#[from] DecodeError),
    /// The signature does not match the author's key.
    #[error(
        "membership entry {entry} has a signature that does not verify against its author {author}"
    )]
    BadSignature {
        /// The entry's hash.
        entry: Hash,
        /// The device it claims as author.
        author: DeviceId,
    },
}

/// Why a membership entry was not accepted into a log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The entry belongs to another vault (or is a second genesis).
    #[error("entry {entry} belongs to vault {found:?}, not to this vault {expected}")]
    WrongVault {
        /// The entry.
        entry: Hash,
        /// This log's vault.
        expected: VaultId,
        /// The vault named in the entry (`None` for a genesis entry).
        found: Option<VaultId>,
    },
    /// Some parents are not in the log yet; insert them first.
    #[error("entry {entry} names {} parent(s) this log does not have yet", missing.len())]
    MissingParents {
        /// The entry.
        entry: Hash,
        /// The unknown parents.
        missing: Vec<Hash>,
    },
    /// The log is full.
    #[error("the membership log already holds the maximum of {MAX_ENTRIES} entries")]
    LogFull,
    /// The entry breaks a membership rule in its own causal past.
    #[error("{action} entry {entry} by {author} rejected: {rule}")]
    Rejected {
        /// The entry.
        entry: Hash,
        /// What it tried to do.
        action: &'static str,
        /// Its author.
        author: DeviceId,
        /// The rule it breaks.
        rule: RuleViolation,
    },
    /// A redemption presented by its author has a timestamp far from this device's clock.
    #[error(
        "invite redemption {entry} claims time {claimed_ms} ms but this device's clock says {now_ms} ms (more than {MAX_CLOCK_SKEW_MS} ms apart); check the clocks"
    )]
    ClockSkew {
        /// The entry.
        entry: Hash,
        /// The entry's timestamp.
        claimed_ms: u64,
        /// This device's clock.
        now_ms: u64,
    },
    /// The bytes were not an authentic entry.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// Which membership rule an entry breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RuleViolation {
    /// The author is not a member.
    #[error("the author is not a member of the vault")]
    NotMember,
    /// The action needs an admin.
    #[error("only an admin may do this and the author is a plain member")]
    NotAdmin,
    /// A log must start with a genesis entry.
    #[error("a vault's log starts with its genesis entry")]
    NotGenesis,
    /// A second genesis in one log.
    #[error("a vault has exactly one genesis entry")]
    SecondGenesis,
    /// The redeemed invite is not in the entry's causal past.
    #[error("the invite being redeemed is unknown to this vault")]
    UnknownInvite,
    /// The revealed secret does not hash to the invite's.
    #[error("the invite secret is wrong")]
    WrongSecret,
    /// The invite had expired at the redemption's time.
    #[error(
        "the invite expired at {expires_at_ms} ms, before the redemption at {redeemed_at_ms} ms"
    )]
    InviteExpired {
        /// The invite's expiry.
        expires_at_ms: u64,
        /// The redemption's timestamp.
        redeemed_at_ms: u64,
    },
    /// The invite was already used.
    #[error("the invite was already redeemed by {by}")]
    InviteAlreadyRedeemed {
        /// The device that redeemed it first.
        by: DeviceId,
    },
    /// The redeeming device is already a member.
    #[error("the device is already a member")]
    AlreadyMember,
    /// A more senior admin revoked this revocation's author concurrently.
    #[error("the revoked admin {by} is more senior and revoked the author concurrently")]
    OverriddenBySenior {
        /// The senior admin.
        by: DeviceId,
    },
    /// A revocation of the author, concurrent with this entry, voids it.
    #[error("the author was revoked by an entry that had not seen this one")]
    VoidedByRevocation,
    /// A new key whose generation is not above every key the author had seen.
    #[error("key generation {generation} is not above generation {newest} already in the log")]
    StaleKeyGeneration {
        /// The entry's generation.
        generation: u32,
        /// The highest generation in its causal past.
        newest: u32,
    },
    /// A shared key whose `NewKey` is not in the entry's causal past, or of another
    /// generation.
    #[error("the shared key is not a vault key of that generation in the log")]
    UnknownKey,
}

/// A current member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// The entry that admitted it.
    pub admitted_by: Hash,
    /// Seniority: position of its first admission in the canonical order (0 = creator).
    pub seniority: usize,
}

/// A revoked device and where its work is cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revocation entries (more than one if it was revoked several times).
    pub entries: Vec<Hash>,
    /// The device's work seen by the revoking admins (highest per actor over all its
    /// revocations): changes at or below it stay valid.
    pub seen: WorkSeen,
}

/// An invite and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The admin that created it.
    pub created_by: DeviceId,
    /// The role it grants.
    pub role: Role,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The device that redeemed it, if any.
    pub redeemed_by: Option<DeviceId>,
    /// SHA-256 of the invite's secret.
    pub secret_hash: Hash,
}

/// A vault key made by a `NewKey` entry, and to whom it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its generation.
    pub generation: u32,
    /// The admin that made it.
    pub created_by: DeviceId,
    /// Copies of the key, by recipient.
    pub sealed: BTreeMap<DeviceId, SealedKey>,
}

/// Who belongs to a vault at some set of heads. Built by [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    name: String,
    members: BTreeMap<DeviceId, Member>,
    revoked: BTreeMap<DeviceId, Revocation>,
    invites: BTreeMap<Hash, Invite>,
    void: BTreeSet<Hash>,
    keys: BTreeMap<Hash, KeyInfo>,
    current_key: Option<Hash>,
}

impl Membership {
    /// The vault's name, from its genesis.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `device` is a current member.
    pub fn is_member(&self, device: &DeviceId) -> bool {
        self.members.contains_key(device)
    }

    /// Whether `device` is a current admin.
    pub fn is_admin(&self, device: &DeviceId) -> bool {
        self.role(device) == Some(Role::Admin)
    }

    /// A member's role.
    pub fn role(&self, device: &DeviceId) -> Option<Role> {
        self.members.get(device).map(|m| m.role)
    }

    /// Current members.
    pub fn members(&self) -> &BTreeMap<DeviceId, Member> {
        &self.members
    }

    /// Revoked devices that are not members again.
    pub fn revoked(&self) -> &BTreeMap<DeviceId, Revocation> {
        &self.revoked
    }

    /// The revocation of `device`, if it is revoked.
    pub fn revocation(&self, device: &DeviceId) -> Option<&Revocation> {
        self.revoked.get(device)
    }

    /// Invites, by the hash of their `CreateInvite` entry.
    pub fn invites(&self) -> &BTreeMap<Hash, Invite> {
        &self.invites
    }

    /// Whether `secret` is the secret of the invite created by entry `invite`.
    pub fn invite_secret_matches(&self, invite: &Hash, secret: &[u8; 32]) -> bool {
        self.invites
            .get(invite)
            .is_some_and(|i| Hash::of(&[secret]) == i.secret_hash)
    }

    /// Entries that are stored but have no effect (rules 4, 6, 7 and 9).
    pub fn void_entries(&self) -> &BTreeSet<Hash> {
        &self.void
    }

    /// Every vault key, by the hash of the `NewKey` entry that made it.
    pub fn keys(&self) -> &BTreeMap<Hash, KeyInfo> {
        &self.keys
    }

    /// The key to encrypt with now (rule 10), or `None` until an admin makes one after
    /// the latest revocation.
    pub fn current_key(&self) -> Option<(Hash, &KeyInfo)> {
        let hash = self.current_key?;
        self.keys.get(&hash).map(|info| (hash, info))
    }
}

/// Reads membership at `heads` from a set of entries keyed by hash. Pure: the same
/// entries and heads give the same answer on every device. Entries in the causal past of
/// `heads` that are missing from `entries` are skipped.
pub fn evaluate(entries: &HashMap<Hash, SignedEntry>, heads: &[Hash]) -> Membership {
    Replay::new(entries, heads).run().membership
}

/// The canonical order of the entries in the causal past of some heads, with their
/// ancestor sets, replayed until no new entry is void.
struct Replay<'a> {
    order: Vec<&'a SignedEntry>,
    /// `ancestors[i]` has bit `j` set when entry `j` is a strict ancestor of entry `i`.
    ancestors: Vec<Vec<u64>>,
}

struct Outcome {
    membership: Membership,
    /// Why each entry that had no effect was refused, by position in the order.
    refused: HashMap<usize, RuleViolation>,
}

#[derive(Default)]
struct DeviceState {
    /// (position, role) of each valid admission.
    admissions: Vec<(usize, Role)>,
    /// Positions of each valid revocation.
    revocations: Vec<usize>,
}

struct InviteState {
    position: usize,
    secret_hash: Hash,
    invite: Invite,
}

impl<'a> Replay<'a> {
    fn new(entries: &'a HashMap<Hash, SignedEntry>, heads: &[Hash]) -> Self {
        // Collect the causal past of the heads.
        let mut closure: HashMap<Hash, &'a SignedEntry> = HashMap::new();
        let mut stack: Vec<Hash> = heads.to_vec();
        while let Some(hash) = stack.pop() {
            if closure.contains_key(&hash) {
                continue;
            }
            if let Some(entry) = entries.get(&hash) {
                closure.insert(hash, entry);
                stack.extend(entry.entry.parents.iter().copied());
            }
        }
        // Kahn's algorithm with a min-heap on (timestamp, hash).
        let mut pending_parents: HashMap<Hash, usize> = HashMap::new();
        let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for (hash, entry) in &closure {
            let known: Vec<&Hash> = entry
                .entry
                .parents
                .iter()
                .filter(|p| closure.contains_key(p))
                .collect();
            for parent in &known {
                children.entry(**parent).or_default().push(*hash);
            }
            if known.is_empty() {
                ready.push(Reverse((entry.entry.timestamp_ms, *hash)));
            } else {
                pending_parents.insert(*hash, known.len());
            }
        }
        let mut order = Vec::with_capacity(closure.len());
        let mut position: HashMap<Hash, usize> = HashMap::new();
        let words = closure.len().div_ceil(64);
        let mut ancestors: Vec<Vec<u64>> = Vec::with_capacity(closure.len());
        while let Some(Reverse((_, hash))) = ready.pop() {
            let entry = closure[&hash];
            let mut set = vec![0u64; words];
            for parent in &entry.entry.parents {
                if let Some(&p) = position.get(parent) {
                    for (word, parent_word) in set.iter_mut().zip(&ancestors[p]) {
                        *word |= parent_word;
                    }
                    set[p / 64] |= 1 << (p % 64);
                }
            }
            position.insert(hash, order.len());
            order.push(entry);
            ancestors.push(set);
            for child in children.get(&hash).into_iter().flatten() {
                if let Some(count) = pending_parents.get_mut(child) {
                    *count -= 1;
                    if *count == 0 {
                        ready.push(Reverse((closure[child].entry.timestamp_ms, *child)));
                    }
                }
            }
        }
        Self { order, ancestors }
    }

    fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        self.ancestors[of][ancestor / 64] & (1 << (ancestor % 64)) != 0
    }

    fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.is_ancestor(a, b) && !self.is_ancestor(b, a)
    }

    fn run(&self) -> Outcome {
        let mut void: BTreeSet<usize> = BTreeSet::new();
        // Each pass either adds an entry to `void` or ends, so this ends.
        loop {
            let pass = self.pass(&void);
            let newly_void = self.voided_by_revocations(&pass.devices, &void);
            if newly_void.is_empty() {
                return self.finish(pass, &void);
            }
            void.extend(newly_void);
        }
    }

    fn pass(&self, void: &BTreeSet<usize>) -> Pass {
        let mut pass = Pass::default();
        for (i, signed) in self.order.iter().enumerate() {
            if void.contains(&i) {
                continue;
            }
            if let Err(rule) = self.apply(&mut pass, i, signed, void) {
                pass.refused.insert(i, rule);
            }
        }
        pass
    }

    /// The role of `device` at the current point of a pass, by rule 5.
    fn current_role(&self, pass: &Pass, device: &DeviceId) -> Option<(usize, Role)> {
        let state = pass.devices.get(device)?;
        state
            .admissions
            .iter()
            .rev()
            .find(|(admission, _)| {
                state
                    .revocations
                    .iter()
                    .all(|&r| self.is_ancestor(r, *admission))
            })
            .copied()
    }

    fn seniority(pass: &Pass, device: &DeviceId) -> usize {
        pass.devices
            .get(device)
            .and_then(|s| s.admissions.first())
            .map_or(usize::MAX, |(p, _)| *p)
    }

    fn apply(
        &self,
        pass: &mut Pass,
        i: usize,
        signed: &SignedEntry,
        void: &BTreeSet<usize>,
    ) -> Result<(), RuleViolation> {
        let entry = &signed.entry;
        let author = entry.author;
        let author_role = self.current_role(pass, &author).map(|(_, role)| role);
        let require_admin = || match author_role {
            Some(Role::Admin) => Ok(()),
            Some(Role::Member) => Err(RuleViolation::NotAdmin),
            None => Err(RuleViolation::NotMember),
        };
        match &entry.action {
            Action::Genesis { name, .. } => {
                if pass.genesis_seen {
                    return Err(RuleViolation::SecondGenesis);
                }
                pass.genesis_seen = true;
                pass.name = name.clone();
                pass.admit(author, i, Role::Admin);
            }
            Action::AddDevice { device, role } => {
                require_admin()?;
                pass.admit(*device, i, *role);
            }
            Action::CreateInvite {
                secret_hash,
                role,
                expires_at_ms,
            } => {
                require_admin()?;
                pass.invites.insert(
                    signed.hash,
                    InviteState {
                        position: i,
                        secret_hash: *secret_hash,
                        invite: Invite {
                            created_by: author,
                            role: *role,
                            expires_at_ms: *expires_at_ms,
                            redeemed_by: None,
                            secret_hash: *secret_hash,
                        },
                    },
                );
            }
            Action::RedeemInvite { invite, secret } => {
                let state = pass
                    .invites
                    .get(invite)
                    .filter(|s| self.is_ancestor(s.position, i))
                    .ok_or(RuleViolation::UnknownInvite)?;
                if Hash::of(&[secret]) != state.secret_hash {
                    return Err(RuleViolation::WrongSecret);
                }
                if entry.timestamp_ms > state.invite.expires_at_ms {
                    return Err(RuleViolation::InviteExpired {
                        expires_at_ms: state.invite.expires_at_ms,
                        redeemed_at_ms: entry.timestamp_ms,
                    });
                }
                if let Some(by) = state.invite.redeemed_by {
                    return Err(RuleViolation::InviteAlreadyRedeemed { by });
                }
                if author_role.is_some() {
                    return Err(RuleViolation::AlreadyMember);
                }
                let role = state.invite.role;
                if let Some(state) = pass.invites.get_mut(invite) {
                    state.invite.redeemed_by = Some(author);
                }
                pass.admit(author, i, role);
            }
            Action::RevokeDevice { device, .. } => {
                require_admin()?;
                // Rule 7: a concurrent revocation of this author by a more senior admin.
                let senior_counter = (0..self.order.len()).find(|&j| {
                    !void.contains(&j)
                        && self.concurrent(i, j)
                        && self.order[j].entry.author == *device
                        && matches!(&self.order[j].entry.action,
                            Action::RevokeDevice { device: target, .. } if *target == author)
                        && Self::seniority(pass, device) < Self::seniority(pass, &author)
                });
                if senior_counter.is_some() {
                    return Err(RuleViolation::OverriddenBySenior { by: *device });
                }
                pass.devices.entry(*device).or_default().revocations.push(i);
                pass.revocations.push(i);
            }
            Action::NewKey { generation, sealed } => {
                require_admin()?;
                let newest = pass
                    .keys
                    .values()
                    .filter(|(position, _)| self.is_ancestor(*position, i))
                    .map(|(_, info)| info.generation)
                    .max();
                if let Some(newest) = newest.filter(|newest| *generation <= *newest) {
                    return Err(RuleViolation::StaleKeyGeneration {
                        generation: *generation,
                        newest,
                    });
                }
                let info = KeyInfo {
                    generation: *generation,
                    created_by: author,
                    sealed: sealed.iter().map(|c| (c.recipient, c.clone())).collect(),
                };
                pass.keys.insert(signed.hash, (i, info));
                pass.new_keys.push(i);
            }
            Action::ShareKey {
                key,
                generation,
                sealed,
            } => {
                require_admin()?;
                let (_, info) = pass
                    .keys
                    .get_mut(key)
                    .filter(|(position, info)| {
                        self.is_ancestor(*position, i) && info.generation == *generation
                    })
                    .ok_or(RuleViolation::UnknownKey)?;
                for copy in sealed {
                    info.sealed
                        .entry(copy.recipient)
                        .or_insert_with(|| copy.clone());
                }
            }
        }
        Ok(())
    }

    /// Rule 6: entries by a revoked device that its revocation had not seen.
    fn voided_by_revocations(
        &self,
        devices: &HashMap<DeviceId, DeviceState>,
        void: &BTreeSet<usize>,
    ) -> Vec<usize> {
        let mut newly_void = Vec::new();
        for (device, state) in devices {
            for &r in &state.revocations {
                for j in 0..self.order.len() {
                    if j == r
                        || void.contains(&j)
                        || self.order[j].entry.author != *device
                        || self.is_ancestor(j, r)
                    {
                        continue;
                    }
                    let readmitted_before = state.admissions.iter().any(|&(a, _)| {
                        self.is_ancestor(r, a) && (a == j || self.is_ancestor(a, j))
                    });
                    if !readmitted_before {
                        newly_void.push(j);
                    }
                }
            }
        }
        newly_void.sort_unstable();
        newly_void.dedup();
        newly_void
    }

    fn finish(&self, pass: Pass, void: &BTreeSet<usize>) -> Outcome {
        let mut membership = Membership {
            name: pass.name.clone(),
            ..Membership::default()
        };
        for (device, state) in &pass.devices {
            if let Some((admission, role)) = self.current_role(&pass, device) {
                membership.members.insert(
                    *device,
                    Member {
                        role,
                        admitted_by: self.order[admission].hash,
                        seniority: Self::seniority(&pass, device),
                    },
                );
            } else if !state.revocations.is_empty() {
                let mut revocation = Revocation {
                    entries: Vec::new(),
                    seen: WorkSeen::new(),
                };
                for &r in &state.revocations {
                    revocation.entries.push(self.order[r].hash);
                    if let Action::RevokeDevice { seen, .. } = &self.order[r].entry.action {
                        for (doc, actors) in seen {
                            let merged = revocation.seen.entry(*doc).or_default();
                            for (actor, seq) in actors {
                                let max = merged.entry(actor.clone()).or_default();
                                *max = (*max).max(*seq);
                            }
                        }
                    }
                }
                membership.revoked.insert(*device, revocation);
            }
        }
        membership.invites = pass
            .invites
            .into_iter()
            .map(|(hash, state)| (hash, state.invite))
            .collect();
        // Rule 10: the last new key that saw every revocation.
        membership.current_key = pass
            .new_keys
            .iter()
            .rev()
            .find(|&&k| pass.revocations.iter().all(|&r| self.is_ancestor(r, k)))
            .map(|&k| self.order[k].hash);
        membership.keys = pass
            .keys
            .into_iter()
            .map(|(hash, (_, info))| (hash, info))
            .collect();
        let mut refused = pass.refused;
        for &i in void {
            refused.insert(i, RuleViolation::VoidedByRevocation);
        }
        membership.void = refused.keys().map(|&i| self.order[i].hash).collect();
        Outcome {
            membership,
            refused,
        }
    }
}

#[derive(Default)]
struct Pass {
    genesis_seen: bool,
    name: String,
    devices: HashMap<DeviceId, DeviceState>,
    invites: HashMap<Hash, InviteState>,
    revocations: Vec<usize>,
    /// Vault keys by `NewKey` entry: (position, key).
    keys: HashMap<Hash, (usize, KeyInfo)>,
    /// Positions of valid `NewKey` entries, in order.
    new_keys: Vec<usize>,
    refused: HashMap<usize, RuleViolation>,
}

impl Pass {
    fn admit(&mut self, device: DeviceId, position: usize, role: Role) {
        self.devices
            .entry(device)
            .or_default()
            .admissions
            .push((position, role));
    }
}

/// A vault's membership log: every accepted entry, its heads, and the membership they give.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    vault: VaultId,
    entries: HashMap<Hash, SignedEntry>,
    heads: BTreeSet<Hash>,
    current: Membership,
}

/// How an entry was received, for the checks that depend on who presented it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// This device's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The authenticated device that sent the entry (`None` when it was made here or
    /// loaded from storage).
    pub from: Option<DeviceId>,
}

impl Received {
    /// An entry loaded from this device's own storage: already checked when stored.
    pub const STORED: Received = Received {
        now_ms: 0,
        from: None,
    };
}

impl MembershipLog {
    /// Creates a new vault: signs its genesis entry with `creator`'s key.
    pub fn create(
        creator: &DeviceKey,
        name: &str,
        nonce: [u8; 16],
        now_ms: u64,
    ) -> Result<(Self, SignedEntry), MembershipError> {
        let mut name = name.to_owned();
        while name.len() > MAX_NAME_LEN {
            name.pop();
        }
        let genesis = Entry {
            vault: None,
            parents: Vec::new(),
            author: creator.device_id(),
            timestamp_ms: now_ms,
            action: Action::Genesis { name, nonce },
        }
        .sign(creator);
        Ok((Self::from_genesis(genesis.clone())?, genesis))
    }

    /// Starts a log from a genesis entry received or loaded from storage.
    pub fn from_genesis(genesis: SignedEntry) -> Result<Self, MembershipError> {
        let hash = genesis.hash;
        if !matches!(genesis.entry.action, Action::Genesis { .. }) {
            return Err(MembershipError::Rejected {
                entry: hash,
                action: genesis.entry.action.name(),
                author: genesis.entry.author,
                rule: RuleViolation::NotGenesis,
            });
        }
        let mut entries = HashMap::new();
        entries.insert(hash, genesis);
        let heads = BTreeSet::from([hash]);
        let current = evaluate(&entries, &[hash]);
        Ok(Self {
            vault: VaultId(hash),
            entries,
            heads,
            current,
        })
    }

    /// The vault this log belongs to.
    pub fn vault_id(&self) -> VaultId {
        self.vault
    }

    /// Membership at the current heads.
    pub fn membership(&self) -> &Membership {
        &self.current
    }

    /// The current heads.
    pub fn heads(&self) -> Vec<Hash> {
        self.heads.iter().copied().collect()
    }

    /// Whether the log holds `hash`.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// An entry by hash.
    pub fn get(&self, hash: &Hash) -> Option<&SignedEntry> {
        self.entries.get(hash)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a log holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, parents before children.
    pub fn entries(&self) -> Vec<&SignedEntry> {
        Replay::new(&self.entries, &self.heads()).order
    }

    /// Hashes of `heads` and all their ancestors that this log holds.
    pub fn ancestry(&self, heads: &[Hash]) -> HashSet<Hash> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Hash> = heads.to_vec();
        while let Some(hash) = stack.pop() {
            if let Some(entry) = self.entries.get(&hash)
                && seen.insert(hash)
            {
                stack.extend(entry.entry.parents.iter().copied());
            }
        }
        seen
    }

    /// Membership at other heads (e.g. what a peer's heads imply).
    pub fn membership_at(&self, heads: &[Hash]) -> Membership {
        evaluate(&self.entries, heads)
    }

    /// Accepts one entry if it is valid in its own causal past. Returns `false` for an
    /// entry already in the log.
    pub fn insert(
        &mut self,
        signed: SignedEntry,
        received: Received,
    ) -> Result<bool, MembershipError> {
        let hash = signed.hash;
        if self.entries.contains_key(&hash) {
            return Ok(false);
        }
        let entry = &signed.entry;
        if entry.vault != Some(self.vault) {
            return Err(MembershipError::WrongVault {
                entry: hash,
                expected: self.vault,
                found: entry.vault,
            });
        }
        let missing: Vec<Hash> = entry
            .parents
            .iter()
            .filter(|p| !self.entries.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(MembershipError::MissingParents {
                entry: hash,
                missing,
            });
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(MembershipError::LogFull);
        }
        if let (Action::RedeemInvite { .. }, Some(from)) = (&entry.action, received.from)
            && from == entry.author
            && entry.timestamp_ms.abs_diff(received.now_ms) > MAX_CLOCK_SKEW_MS
        {
            return Err(MembershipError::ClockSkew {
                entry: hash,
                claimed_ms: entry.timestamp_ms,
                now_ms: received.now_ms,
            });
        }
        // Judge the entry against its own causal past.
        let author = entry.author;
        let action = entry.action.name();
        self.entries.insert(hash, signed);
        let replay = Replay::new(&self.entries, &[hash]);
        let outcome = replay.run();
        let own_position = replay.order.len() - 1;
        if let Some(rule) = outcome.refused.get(&own_position) {
            let rule = rule.clone();
            self.entries.remove(&hash);
            return Err(MembershipError::Rejected {
                entry: hash,
                action,
                author,
                rule,
            });
        }
        if let Some(entry) = self.entries.get(&hash) {
            for parent in &entry.entry.parents {
                self.heads.remove(parent);
            }
        }
        self.heads.insert(hash);
        self.current = evaluate(&self.entries, &self.heads());
        Ok(true)
    }

    /// Inserts entries given in any order, retrying those whose parents come later in
    /// the batch. Returns the hashes accepted and the entries refused with why.
    pub fn insert_many(
        &mut self,
        entries: impl IntoIterator<Item = SignedEntry>,
        received: Received,
    ) -> (Vec<Hash>, Vec<MembershipError>) {
        let mut pending: Vec<SignedEntry> = entries.into_iter().collect();
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        loop {
            let mut waiting = Vec::new();
            let before = pending.len();
            for signed in pending {
                let hash = signed.hash;
                match self.insert(signed.clone(), received) {
                    Ok(true) => accepted.push(hash),
                    Ok(false) => {}
                    Err(MembershipError::MissingParents { .. }) => waiting.push(signed),
                    Err(e) => refused.push(e),
                }
            }
            if waiting.is_empty() || waiting.len() == before {
                for signed in waiting {
                    if let Err(e) = self.insert(signed, received) {
                        refused.push(e);
                    }
                }
                return (accepted, refused);
            }
            pending = waiting;
        }
    }

    /// Signs an entry by `key` on top of the current heads and inserts it.
    pub fn author(
        &mut self,
        key: &DeviceKey,
        action: Action,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let signed = Entry {
            vault: Some(self.vault),
            parents: self.heads(),
            author: key.device_id(),
            timestamp_ms: now_ms,
            action,
        }
        .sign(key);
        self.insert(signed.clone(), Received { now_ms, from: None })?;
        Ok(signed)
    }

    /// An admin approves `device`.
    pub fn add_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        role: Role,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(admin, Action::AddDevice { device, role }, now_ms)
    }

    /// An admin creates an invite for `secret`; share the secret and the returned entry's
    /// hash with the invitee.
    pub fn create_invite(
        &mut self,
        admin: &DeviceKey,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let action = Action::CreateInvite {
            secret_hash: Hash::of(&[secret]),
            role,
            expires_at_ms,
        };
        self.author(admin, action, now_ms)
    }

    /// A new device redeems an invite with its own key.
    pub fn redeem_invite(
        &mut self,
        newcomer: &DeviceKey,
        invite: Hash,
        secret: [u8; 32],
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(newcomer, Action::RedeemInvite { invite, secret }, now_ms)
    }

    /// An admin revokes `device`, recording how much of its work the admin has seen.
    pub fn revoke_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        seen: WorkSeen,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(admin, Action::RevokeDevice { device, seen }, now_ms)
    }
}
