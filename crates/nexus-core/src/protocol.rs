//! The wire format of the sync protocol (`/nexus/sync/2`): messages and their codec.
//!
//! One stream carries one vault's session between two devices; the transport frames
//! messages (each frame one [`Message`]). Every message starts with the protocol version
//! and a tag; every collection has a limit checked before anything is allocated, so a
//! hostile peer can make decoding fail but never panic or balloon memory.

use automerge::ChangeHash;

use crate::codec::{DecodeError, Reader, Writer};
use crate::document::SignedChange;
use crate::hash::Hash;
use crate::identity::{DeviceId, Signature};
use crate::ids::{DocId, VaultId};
use crate::membership::SignedEntry;

/// The libp2p protocol name the engine registers.
pub const PROTOCOL_NAME: &str = "/nexus/sync/2";
/// The version carried in every message.
pub const PROTOCOL_VERSION: u64 = 2;
/// Largest encoded message accepted.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// A document whose snapshot is at most this large is sent whole to a device that has
/// none of it.
pub const MAX_SNAPSHOT_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Documents with fewer changes than this are sent as changes even to an empty device.
pub const SNAPSHOT_MIN_CHANGES: usize = 32;
/// Changes are sent in messages of at most about this many bytes.
pub const CHANGES_CHUNK_BYTES: usize = 1024 * 1024;
/// Most membership entries in one message.
pub const MAX_ENTRIES_PER_MESSAGE: usize = crate::membership::MAX_ENTRIES;
/// Most ranges in one reconciliation message.
pub const MAX_RANGES: usize = 1024;
/// Most (document, heads) items in one range.
pub const MAX_ITEMS: usize = 4096;
/// Most heads listed for one document.
pub const MAX_HEADS: usize = 256;
/// Most changes in one message.
pub const MAX_CHANGES_PER_MESSAGE: usize = 100_000;
/// Largest Bloom filter, in bytes.
pub const MAX_BLOOM_BYTES: usize = 1024 * 1024;
/// Longest free-text reason.
pub const MAX_REASON_LEN: usize = 1024;

/// Why a device refused or ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseCode {
    /// The peer is not a member of the vault.
    NotMember,
    /// The peer was revoked.
    Revoked,
    /// The peer sent something malformed or against the protocol.
    ProtocolViolation,
    /// The peer speaks another protocol version.
    Version,
    /// The invite presented is unknown, used, expired or wrong.
    BadInvite,
    /// This device does not have the vault.
    UnknownVault,
}

impl RefuseCode {
    /// The code's stable name, for programs and logs: `NOT_MEMBER`, `REVOKED`,
    /// `PROTOCOL_VIOLATION`, `VERSION`, `BAD_INVITE`, `UNKNOWN_VAULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseCode::NotMember => "NOT_MEMBER",
            RefuseCode::Revoked => "REVOKED",
            RefuseCode::ProtocolViolation => "PROTOCOL_VIOLATION",
            RefuseCode::Version => "VERSION",
            RefuseCode::BadInvite => "BAD_INVITE",
            RefuseCode::UnknownVault => "UNKNOWN_VAULT",
        }
    }

    fn tag(self) -> u8 {
        match self {
            RefuseCode::NotMember => 0,
            RefuseCode::Revoked => 1,
            RefuseCode::ProtocolViolation => 2,
            RefuseCode::Version => 3,
            RefuseCode::BadInvite => 4,
            RefuseCode::UnknownVault => 5,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => RefuseCode::NotMember,
            1 => RefuseCode::Revoked,
            2 => RefuseCode::ProtocolViolation,
            3 => RefuseCode::Version,
            4 => RefuseCode::BadInvite,
            5 => RefuseCode::UnknownVault,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "refusal code",
                    tag: tag.into(),
                });
            }
        })
    }
}

/// An invite held by a device that wants to join: what its code gave it. The secret
/// stays on the device (a peer is shown only a [`JoinProof`]); its `Debug` leaves the
/// secret out, so logging a request never leaks it, and the secret is wiped when the
/// request is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Hash of the `CreateInvite` entry.
    pub invite: Hash,
    /// The invite's one-time secret.
    pub secret: [u8; 32],
}

impl Drop for JoinRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl zeroize::ZeroizeOnDrop for JoinRequest {}

impl JoinRequest {
    /// What `redeemer` shows a member of `vault`: proof that it holds the secret, bound
    /// to its own device id, so a peer it is shown to cannot use it.
    pub fn proof(&self, vault: &VaultId, redeemer: &DeviceId) -> JoinProof {
        JoinProof {
            invite: self.invite,
            proof: crate::membership::redemption_proof(&self.secret, vault, &self.invite, redeemer),
        }
    }
}

/// What a joining device shows in its `Hello`: the invite and the invite key's signature
/// over (vault, invite, the joining device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinProof {
    /// Hash of the `CreateInvite` entry.
    pub invite: Hash,
    /// The invite key's signature admitting the sender.
    pub proof: Signature,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("invite", &self.invite)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What one side of a reconciliation range says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeBody {
    /// A summary: XOR of the item hashes in the range, and how many items there are.
    Fingerprint {
        /// XOR of 16-byte item hashes.
        fingerprint: [u8; 16],
        /// Number of documents in the range.
        count: u64,
    },
    /// Every document in the range with its heads.
    Items(Vec<(DocId, Vec<ChangeHash>)>),
}

/// A range of document ids, `lower` inclusive to `upper` exclusive (`None`: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First id in the range.
    pub lower: DocId,
    /// First id after the range, or `None` for the end of the id space.
    pub upper: Option<DocId>,
    /// The sender's view of the range.
    pub body: RangeBody,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Opens a session: the vault and this side's membership heads.
    Hello {
        /// The vault this session is about.
        vault: VaultId,
        /// The sender's membership heads.
        membership_heads: Vec<Hash>,
        /// Proof of an invite, when the sender is joining.
        join: Option<JoinProof>,
        /// Most changes the sender takes in one document snapshot (0: any number). A
        /// bigger document reaches it as a snapshot of its first changes, then the rest
        /// as changes, so that no single step of the sender loads all of it.
        snapshot_max_changes: u64,
    },
    /// Membership entries the receiver may lack. `withheld` says the sender does not (yet)
    /// consider the receiver a member and sent only what proves its own standing.
    Entries {
        /// The entries, in any order.
        entries: Vec<SignedEntry>,
        /// Whether the sender held entries back.
        withheld: bool,
    },
    /// The session is refused or ended; the sender closes after this.
    Refuse {
        /// Why, for programs.
        code: RefuseCode,
        /// Why, for people.
        reason: String,
    },
    /// Range-based set reconciliation of (document, heads).
    Reconcile {
        /// The ranges.
        ranges: Vec<Range>,
    },
    /// The sender's heads for a document. `reply` marks an answer to the receiver's heads.
    DocHeads {
        /// The document.
        doc: DocId,
        /// Heads.
        heads: Vec<ChangeHash>,
        /// Whether this answers a `DocHeads`.
        reply: bool,
    },
    /// The sender's heads and a Bloom filter of every change it has, sent when both sides
    /// have changes the other lacks.
    DocHave {
        /// The document.
        doc: DocId,
        /// Heads.
        heads: Vec<ChangeHash>,
        /// The Bloom filter ([`Bloom`]).
        bloom: Vec<u8>,
    },
    /// Signed changes the receiver lacks, in causal order, with the sender's heads.
    DocChanges {
        /// The document.
        doc: DocId,
        /// The sender's heads.
        heads: Vec<ChangeHash>,
        /// The changes.
        changes: Vec<SignedChange>,
    },
    /// The whole document as a snapshot record (compacted Automerge document plus every
    /// change's author and signature), sent instead of changes to a device that has none.
    DocSnapshot {
        /// The document.
        doc: DocId,
        /// The sender's heads.
        heads: Vec<ChangeHash>,
        /// The snapshot ([`crate::Document::snapshot_bytes`]).
        snapshot: Vec<u8>,
    },
    /// Changes the sender needs by hash (dependencies it is missing).
    DocNeed {
        /// The document.
        doc: DocId,
        /// Wanted changes.
        hashes: Vec<ChangeHash>,
    },
}

fn write_heads(w: &mut Writer, heads: &[ChangeHash]) {
    w.len(heads.len());
    for head in heads {
        w.raw(&head.0);
    }
}

fn read_heads(
    r: &mut Reader<'_>,
    max: usize,
    what: &'static str,
) -> Result<Vec<ChangeHash>, DecodeError> {
    let n = r.count(max, 32, what)?;
    let mut heads = Vec::with_capacity(n);
    for _ in 0..n {
        heads.push(ChangeHash(r.array(what)?));
    }
    Ok(heads)
}

impl Message {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Entries { .. } => "entries",
            Message::Refuse { .. } => "refuse",
            Message::Reconcile { .. } => "reconcile",
            Message::DocHeads { .. } => "doc-heads",
            Message::DocHave { .. } => "doc-have",
            Message::DocChanges { .. } => "doc-changes",
            Message::DocNeed { .. } => "doc-need",
            Message::DocSnapshot { .. } => "doc-snapshot",
        }
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(PROTOCOL_VERSION);
        match self {
            Message::Hello {
                vault,
                membership_heads,
                join,
                snapshot_max_changes,
            } => {
                w.u8(0).raw(vault.as_bytes()).len(membership_heads.len());
                for head in membership_heads {
                    w.raw(head.as_bytes());
                }
                match join {
                    None => {
                        w.u8(0);
                    }
                    Some(join) => {
                        w.u8(1).raw(join.invite.as_bytes()).raw(&join.proof.0);
                    }
                }
                w.varint(*snapshot_max_changes);
            }
            Message::Entries { entries, withheld } => {
                w.u8(1).u8(u8::from(*withheld)).len(entries.len());
                for entry in entries {
                    w.bytes(&entry.encode());
                }
            }
            Message::Refuse { code, reason } => {
                let mut reason = reason.as_str();
                while reason.len() > MAX_REASON_LEN {
                    let mut cut = MAX_REASON_LEN;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason = &reason[..cut];
                }
                w.u8(2).u8(code.tag()).str(reason);
            }
            Message::Reconcile { ranges } => {
                w.u8(3).len(ranges.len());
                for range in ranges {
                    w.raw(range.lower.as_bytes());
                    match &range.upper {
                        None => w.u8(0),
                        Some(upper) => w.u8(1).raw(upper.as_bytes()),
                    };
                    match &range.body {
                        RangeBody::Fingerprint { fingerprint, count } => {
                            w.u8(0).raw(fingerprint).varint(*count);
                        }
                        RangeBody::Items(items) => {
                            w.u8(1).len(items.len());
                            for (doc, heads) in items {
                                w.raw(doc.as_bytes());
                                write_heads(&mut w, heads);
                            }
                        }
                    }
                }
            }
            Message::DocHeads { doc, heads, reply } => {
                w.u8(4).raw(doc.as_bytes()).u8(u8::from(*reply));
                write_heads(&mut w, heads);
            }
            Message::DocHave { doc, heads, bloom } => {
                w.u8(5).raw(doc.as_bytes());
                write_heads(&mut w, heads);
                w.bytes(bloom);
            }
            Message::DocChanges {
                doc,
                heads,
                changes,
            } => {
                w.u8(6).raw(doc.as_bytes());
                write_heads(&mut w, heads);
                w.len(changes.len());
                for change in changes {
                    w.len(change.encoded_len());
                    change.encode_into(&mut w);
                }
            }
            Message::DocNeed { doc, hashes } => {
                w.u8(7).raw(doc.as_bytes());
                write_heads(&mut w, hashes);
            }
            Message::DocSnapshot {
                doc,
                heads,
                snapshot,
            } => {
                w.u8(8).raw(doc.as_bytes());
                write_heads(&mut w, heads);
                w.bytes(snapshot);
            }
        }
        w.finish()
    }

    /// How many membership entries `bytes` hold if they are an `Entries` message, read
    /// from the header alone: before any of their signatures is checked (what bounds a
    /// stranger's cost). `None` for any other message, or a header that does not parse.
    pub fn entries_count(bytes: &[u8]) -> Option<usize> {
        let mut r = Reader::new(bytes);
        if r.varint("protocol version").ok()? != PROTOCOL_VERSION || r.u8("message tag").ok()? != 1
        {
            return None;
        }
        r.u8("withheld flag").ok()?;
        r.len(MAX_ENTRIES_PER_MESSAGE, "entries").ok()
    }

    /// Decodes a message, checking every limit and every entry's signature. Change
    /// signatures are checked when the changes are applied (in one batch).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLong {
                what: "message",
                len: bytes.len() as u64,
                max: MAX_MESSAGE_BYTES as u64,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.varint("protocol version")?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "sync protocol",
                version,
                supported: PROTOCOL_VERSION,
            });
        }
        let tag = r.u8("message tag")?;
        let message = match tag {
            0 => {
                let vault = VaultId(Hash(r.array("hello vault")?));
                let n = r.count(crate::membership::MAX_PARENTS * 4, 32, "membership heads")?;
                let mut membership_heads = Vec::with_capacity(n);
                for _ in 0..n {
                    membership_heads.push(Hash(r.array("membership head")?));
                }
                let join = match r.u8("join flag")? {
                    0 => None,
                    1 => Some(JoinProof {
                        invite: Hash(r.array("join invite")?),
                        proof: Signature(r.array("join proof")?),
                    }),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "join flag",
                            tag: tag.into(),
                        });
                    }
                };
                Message::Hello {
                    vault,
                    membership_heads,
                    join,
                    snapshot_max_changes: r.varint("snapshot limit")?,
                }
            }
            1 => {
                let withheld = read_bool(&mut r, "withheld flag")?;
                let n = r.count(MAX_ENTRIES_PER_MESSAGE, 1, "entries")?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let bytes = r.bytes(crate::membership::MAX_ENTRY_BYTES + 128, "entry")?;
                    let entry = SignedEntry::decode(bytes).map_err(|e| DecodeError::Invalid {
                        what: "membership entry",
                        reason: e.to_string(),
                    })?;
                    entries.push(entry);
                }
                Message::Entries { entries, withheld }
            }
            2 => Message::Refuse {
                code: RefuseCode::from_tag(r.u8("refusal code")?)?,
                reason: r.str(MAX_REASON_LEN, "refusal reason")?.to_owned(),
            },
            3 => {
                let n = r.count(MAX_RANGES, 18, "ranges")?;
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    let lower = DocId(r.array("range lower bound")?);
                    let upper = match r.u8("range upper flag")? {
                        0 => None,
                        1 => Some(DocId(r.array("range upper bound")?)),
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "range upper flag",
                                tag: tag.into(),
                            });
                        }
                    };
                    if upper.is_some_and(|u| u <= lower) {
                        return Err(DecodeError::Invalid {
                            what: "range",
                            reason: "upper bound not above lower bound".into(),
                        });
                    }
                    let body = match r.u8("range body")? {
                        0 => RangeBody::Fingerprint {
                            fingerprint: r.array("range fingerprint")?,
                            count: r.varint("range count")?,
                        },
                        1 => {
                            let n = r.count(MAX_ITEMS, 17, "range items")?;
                            let mut items = Vec::with_capacity(n);
                            for _ in 0..n {
                                let doc = DocId(r.array("item document")?);
                                items.push((doc, read_heads(&mut r, MAX_HEADS, "item heads")?));
                            }
                            RangeBody::Items(items)
                        }
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "range body",
                                tag: tag.into(),
                            });
                        }
                    };
                    ranges.push(Range { lower, upper, body });
                }
                Message::Reconcile { ranges }
            }
            4 => {
                let doc = DocId(r.array("document")?);
                let reply = read_bool(&mut r, "reply flag")?;
                let heads = read_heads(&mut r, MAX_HEADS, "heads")?;
                Message::DocHeads { doc, heads, reply }
            }
            5 => Message::DocHave {
                doc: DocId(r.array("document")?),
                heads: read_heads(&mut r, MAX_HEADS, "heads")?,
                bloom: r.bytes(MAX_BLOOM_BYTES, "bloom filter")?.to_vec(),
            },
            6 => {
                let doc = DocId(r.array("document")?);
                let heads = read_heads(&mut r, MAX_HEADS, "heads")?;
                let n = r.count(MAX_CHANGES_PER_MESSAGE, 1, "changes")?;
                let mut changes = Vec::with_capacity(n);
                let mut last_author = None;
                for _ in 0..n {
                    let bytes = r.bytes(crate::document::MAX_CHANGE_BYTES + 128, "change")?;
                    changes.push(SignedChange::decode_with(bytes, &mut last_author)?);
                }
                Message::DocChanges {
                    doc,
                    heads,
                    changes,
                }
            }
            7 => Message::DocNeed {
                doc: DocId(r.array("document")?),
                hashes: read_heads(&mut r, MAX_HEADS * 16, "needed changes")?,
            },
            8 => Message::DocSnapshot {
                doc: DocId(r.array("document")?),
                heads: read_heads(&mut r, MAX_HEADS, "heads")?,
                snapshot: r.bytes(MAX_MESSAGE_BYTES, "snapshot")?.to_vec(),
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "message",
                    tag: tag.into(),
                });
            }
        };
        r.finish("message")?;
        Ok(message)
    }
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag {
            what,
            tag: tag.into(),
        }),
    }
}

/// A Bloom filter over change hashes: 10 bits per change and 7 probes (about 1% false
/// positives). Each filter carries a salt that moves its probe positions, so a change
/// hidden by a false positive in one filter is very likely seen in the next one.
/// Encoded as the salt (4 bytes, little endian) followed by the bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    salt: u32,
    bits: Vec<u8>,
}

const BLOOM_PROBES: usize = 7;

impl Bloom {
    /// A filter sized for `n` hashes, with probe positions moved by `salt`.
    pub fn with_capacity(n: usize, salt: u32) -> Self {
        let bytes = (n * 10).div_ceil(8).clamp(1, MAX_BLOOM_BYTES - 4);
        Self {
            salt,
            bits: vec![0; bytes],
        }
    }

    /// A filter received from a peer. Any bytes are a valid filter; fewer than five make
    /// an empty one (which contains nothing, so the peer gets everything).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        if bytes.len() < 5 {
            return Self {
                salt: 0,
                bits: Vec::new(),
            };
        }
        let salt = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Self {
            salt,
            bits: bytes[4..].to_vec(),
        }
    }

    /// The encoded filter.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = self.salt.to_le_bytes().to_vec();
        out.extend(self.bits);
        out
    }

    fn probes(&self, hash: &ChangeHash) -> [usize; BLOOM_PROBES] {
        let nbits = (self.bits.len() * 8).max(1) as u64;
        let salt = u64::from(self.salt);
        std::array::from_fn(|i| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&hash.0[i * 4..i * 4 + 4]);
            let mixed = (u64::from(u32::from_le_bytes(word)) ^ salt.rotate_left(i as u32 * 9))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((mixed >> 32) % nbits) as usize
        })
    }

    /// Adds a hash.
    pub fn insert(&mut self, hash: &ChangeHash) {
        if self.bits.is_empty() {
            return;
        }
        for bit in self.probes(hash) {
            self.bits[bit / 8] |= 1 << (bit % 8);
        }
    }

    /// Whether the hash may be in the set (never false for one that is).
    pub fn contains(&self, hash: &ChangeHash) -> bool {
        !self.bits.is_empty()
            && self
                .probes(hash)
                .iter()
                .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}
