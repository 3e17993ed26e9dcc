//! Documents: Automerge documents whose every change is signed by its author device.
//!
//! A [`Document`] wraps an `automerge::Automerge`. A local edit ([`Document::change`])
//! becomes one Automerge change made with this writer's actor id, signed with the device
//! key over (vault id, doc id, change hash), and returned with the storage [`Batch`] that
//! persists it. Remote changes go through [`Document::apply`], which checks, in order:
//!
//! 1. the bytes are a well-formed Automerge change;
//! 2. the author is a current member of the vault, or a revoked device whose change the
//!    revoking admin had seen: its actor's sequence number is at or below the one its
//!    revocation recorded (see [`crate::WorkSeen`]). This is judged from the change alone,
//!    so every device decides the same without waiting for other changes;
//! 3. the signatures verify (all at once with batch verification, falling back to one by
//!    one to find the forgeries when a batch fails).
//!
//! Rejected changes are never stored and never applied; the rest are applied and returned
//! as a batch to commit. The actor id only says which writer (a tab, a process) made a
//! change; it is never a credential: the signature is.
//!
//! Compaction ([`Document::compact`]) replaces the individual change records by one
//! snapshot that keeps every covered change's author and signature, so the signatures
//! stay verifiable ([`Document::verify`]).
//!
//! ```
//! use nexus_core::{ActorId, DeviceKey, DocId, Document, MembershipLog, VaultId};
//! use automerge::{transaction::Transactable, ROOT};
//!
//! let key = DeviceKey::from_secret_bytes(&[1; 32]);
//! let (log, _) = MembershipLog::create(&key, "Notes", [0; 16], 0).unwrap();
//! let mut doc = Document::new(log.vault_id(), DocId([5; 16]), ActorId::from(&[1u8; 16][..]));
//! let local = doc
//!     .change(&key, |tx| tx.put(ROOT, "title", "groceries").map(|_| ()))
//!     .unwrap()
//!     .expect("one change");
//!
//! let mut replica = Document::new(log.vault_id(), DocId([5; 16]), ActorId::from(&[2u8; 16][..]));
//! let applied = replica.apply(vec![local.change], log.membership());
//! assert!(applied.rejected.is_empty());
//! assert_eq!(replica.heads(), doc.heads());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{ActorId, Automerge, AutomergeError, Change, ChangeHash, ReadDoc};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::identity::{DeviceId, DeviceKey, Signature};
use crate::ids::{DocId, VaultId};
use crate::membership::Membership;
use crate::storage::{Batch, Table, keys};

/// Largest Automerge change accepted, in bytes.
pub const MAX_CHANGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest snapshot accepted, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;
/// Most refused change hashes remembered per document.
const MAX_REFUSED: usize = 65_536;

const CHANGE_DOMAIN: &[u8] = b"nexus/change/v1";
const SNAPSHOT_VERSION: u64 = 1;
const RECORD_VERSION: u64 = 1;

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

    /// Decodes a change record (the signature is checked later, by [`Document::apply`]).
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
    if items.is_empty() {
        return Vec::new();
    }
    let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        items.iter().map(|(_, _, s)| s.to_dalek()).collect();
    let mut key_cache: HashMap<DeviceId, ed25519_dalek::VerifyingKey> = HashMap::new();
    let keys: Vec<ed25519_dalek::VerifyingKey> = items
        .iter()
        .map(|(_, d, _)| *key_cache.entry(*d).or_insert_with(|| d.verifying_key()))
        .collect();
    if items.len() > 1 && crate::arch::batch_verifies(&messages, &signatures, &keys) {
        return vec![true; items.len()];
    }
    messages
        .iter()
        .zip(&signatures)
        .zip(&keys)
        .map(|((m, s), k)| k.verify_strict(m, s).is_ok())
        .collect()
}

/// A snapshot record read up to its signatures (see [`Document::load_snapshot`]).
struct SnapshotHead {
    doc: Automerge,
    authors: Vec<DeviceId>,
    /// Where the signatures start in the record.
    signatures_at: usize,
}

/// A snapshot record of `doc`: its heads, its compacted Automerge save, and the author
/// and signature of each of `hashes` (its changes, sorted).
fn snapshot_record(
    doc: &Automerge,
    hashes: &[ChangeHash],
    auth: &HashMap<ChangeHash, ChangeAuth>,
) -> Vec<u8> {
    let save = doc.save();
    let mut heads = doc.get_heads();
    heads.sort();
    let mut authors: Vec<DeviceId> = hashes
        .iter()
        .filter_map(|h| auth.get(h).map(|a| a.author))
        .collect();
    authors.sort();
    authors.dedup();
    let author_index: HashMap<DeviceId, u64> = authors
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, i as u64))
        .collect();
    let mut w = Writer::new();
    w.varint(SNAPSHOT_VERSION).len(heads.len());
    for head in &heads {
        w.raw(&head.0);
    }
    w.bytes(&save).len(authors.len());
    for author in &authors {
        w.raw(author.public_key());
    }
    w.len(hashes.len());
    for hash in hashes {
        if let Some(auth) = auth.get(hash) {
            w.varint(author_index.get(&auth.author).copied().unwrap_or(0))
                .raw(&auth.signature.0);
        }
    }
    w.finish()
}

/// An empty Automerge document writing as `actor`. `Automerge::new` draws a random actor
/// id (in a browser, a call into `crypto.getRandomValues`) that would be replaced at once;
/// cloning an empty document draws nothing, which matters when a profile of thousands of
/// documents opens.
fn empty_automerge(actor: ActorId) -> Automerge {
    thread_local! {
        static EMPTY: Automerge = Automerge::new();
    }
    EMPTY.with(Automerge::clone).with_actor(actor)
}

/// A peer's document snapshot, parsed, whose signatures are checked a slice at a time
/// so that a big document does not hold up a single-threaded engine (a browser tab) for
/// the whole check. The steps, each short enough to run between other work:
/// [`StagedSnapshot::load`] (the Automerge document), [`StagedSnapshot::read_signatures`],
/// [`StagedSnapshot::verify_some`] until [`StagedSnapshot::is_checked`], then
/// [`Document::apply_staged_snapshot`]. [`StagedSnapshot::parse`] does the first two.
#[derive(Clone)]
pub struct StagedSnapshot {
    vault: VaultId,
    doc: DocId,
    bytes: Vec<u8>,
    loaded: Automerge,
    /// The authors, and where the signatures start, until they are read.
    unread: Option<(Vec<DeviceId>, usize)>,
    auths: Vec<(ChangeHash, ChangeAuth)>,
    verified: usize,
    forged: Option<usize>,
}

impl std::fmt::Debug for StagedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSnapshot")
            .field("doc", &self.doc)
            .field("signatures_read", &self.unread.is_none())
            .field("changes", &self.auths.len())
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// The aborted [`Applied`] for a snapshot that does not parse.
fn malformed_snapshot(e: &LoadError) -> Applied {
    let mut applied = Applied::default();
    applied.rejected.push(ApplyError::MalformedSnapshot {
        reason: e.to_string(),
    });
    applied.aborted = true;
    applied
}

impl StagedSnapshot {
    /// Parses a snapshot of `doc` in `vault` (loading the document it carries and reading
    /// its signatures). A snapshot that does not parse gives the aborted [`Applied`] to
    /// report.
    pub fn parse(vault: VaultId, doc: DocId, bytes: &[u8]) -> Result<Self, Applied> {
        let mut staged = Self::load(vault, doc, bytes)?;
        staged.read_signatures()?;
        Ok(staged)
    }

    /// The first step: reads the snapshot's header and loads the document it carries.
    pub fn load(vault: VaultId, doc: DocId, bytes: &[u8]) -> Result<Self, Applied> {
        let head = Document::load_snapshot(doc, bytes).map_err(|e| malformed_snapshot(&e))?;
        Ok(Self {
            vault,
            doc,
            bytes: bytes.to_vec(),
            loaded: head.doc,
            unread: Some((head.authors, head.signatures_at)),
            auths: Vec::new(),
            verified: 0,
            forged: None,
        })
    }

    /// Whether the signatures have been read ([`StagedSnapshot::read_signatures`]).
    pub fn signatures_read(&self) -> bool {
        self.unread.is_none()
    }

    /// The second step: lists the loaded document's changes and reads the author and
    /// signature of each. Does nothing the second time.
    pub fn read_signatures(&mut self) -> Result<(), Applied> {
        let Some((authors, signatures_at)) = self.unread.take() else {
            return Ok(());
        };
        self.auths = Document::read_snapshot_auths(
            self.doc,
            &self.bytes,
            &self.loaded,
            &authors,
            signatures_at,
        )
        .map_err(|e| malformed_snapshot(&e))?;
        Ok(())
    }

    /// Checks up to `max` more signatures (as one batch). Returns whether every signature
    /// has been checked (or one failed: the rest need not be).
    pub fn verify_some(&mut self, max: usize) -> bool {
        if self.unread.is_some() {
            return false;
        }
        if self.is_checked() {
            return true;
        }
        let end = self
            .auths
            .len()
            .min(self.verified.saturating_add(max.max(1)));
        let messages: Vec<[u8; 95]> = self.auths[self.verified..end]
            .iter()
            .map(|(hash, _)| change_signing_message(&self.vault, &self.doc, hash))
            .collect();
        let items: Vec<(&[u8], DeviceId, Signature)> = messages
            .iter()
            .zip(&self.auths[self.verified..end])
            .map(|(m, (_, auth))| (m.as_slice(), auth.author, auth.signature))
            .collect();
        let results = verify_signatures(&items);
        if let Some(bad) = results.iter().position(|ok| !ok) {
            self.forged = Some(self.verified + bad);
        }
        self.verified = end;
        self.is_checked()
    }

    /// Whether every signature has been checked, or one failed (false while the
    /// signatures have not been read).
    pub fn is_checked(&self) -> bool {
        self.unread.is_none() && (self.forged.is_some() || self.verified >= self.auths.len())
    }

    /// The document.
    pub fn doc(&self) -> DocId {
        self.doc
    }

    /// Changes the snapshot covers (0 until the signatures have been read).
    pub fn changes(&self) -> usize {
        self.auths.len()
    }
}

/// Why a remote change was rejected. Rejected changes are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The bytes are not an Automerge change.
    #[error("malformed change from {author}: {reason}")]
    Malformed {
        /// The claimed author.
        author: DeviceId,
        /// What is wrong.
        reason: String,
    },
    /// A document snapshot sent by a peer does not decode or load.
    #[error("malformed document snapshot: {reason}")]
    MalformedSnapshot {
        /// What is wrong.
        reason: String,
    },
    /// The author is not a member of the vault.
    #[error("change {change} is by {author}, who is not a member of this vault")]
    NotMember {
        /// The change.
        change: ChangeHash,
        /// Its author.
        author: DeviceId,
    },
    /// The author was revoked and the change lies outside what its revocation had seen.
    #[error(
        "change {change} is by {author}, who was revoked, and the revoking admin had not seen it"
    )]
    Revoked {
        /// The change.
        change: ChangeHash,
        /// Its author.
        author: DeviceId,
    },
    /// The signature does not verify for this vault, document and author.
    #[error(
        "change {change} has a signature that does not verify for author {author} in this document (forged, tampered or sent to the wrong document)"
    )]
    BadSignature {
        /// The change.
        change: ChangeHash,
        /// Its claimed author.
        author: DeviceId,
    },
    /// Automerge refused the change (for example a reused sequence number).
    #[error("change {change} was refused by the document: {reason}")]
    Refused {
        /// The change.
        change: ChangeHash,
        /// Automerge's reason.
        reason: String,
    },
}

/// What [`Document::apply`] did.
#[derive(Debug, Clone, Default)]
#[must_use = "the batch must be committed before the changes are acknowledged or forwarded"]
pub struct Applied {
    /// Records to commit, atomically, before acting on the rest.
    pub batch: Batch,
    /// Changes that are new and valid (applied, or stored while they wait for their
    /// dependencies).
    pub accepted: Vec<ChangeHash>,
    /// Changes refused, with why.
    pub rejected: Vec<ApplyError>,
    /// Whether the whole batch was refused because of a forgery (all-or-nothing mode).
    pub aborted: bool,
}

/// A local edit: the signed change and the batch that persists it.
#[derive(Debug)]
#[must_use = "the batch must be committed for the change to be durable"]
pub struct LocalChange {
    /// The signed change, to send to peers.
    pub change: SignedChange,
    /// Its hash.
    pub hash: ChangeHash,
    /// The record to commit.
    pub batch: Batch,
}

/// Why a local edit failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The edit function returned an error; the document is unchanged.
    #[error("the edit failed and was rolled back: {0}")]
    Edit(Box<AutomergeError>),
}

/// Why stored records could not be loaded into a document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A record does not decode.
    #[error("document {doc}: corrupt {record} record: {source}")]
    Corrupt {
        /// The document.
        doc: DocId,
        /// Which record.
        record: &'static str,
        /// The decoding error.
        source: DecodeError,
    },
    /// Automerge could not load the snapshot.
    #[error("document {doc}: the snapshot does not load: {reason}")]
    Snapshot {
        /// The document.
        doc: DocId,
        /// Automerge's reason.
        reason: String,
    },
}

/// A problem found by [`Document::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A change has no recorded signature.
    Unsigned(ChangeHash),
    /// A change's signature does not verify.
    BadSignature(ChangeHash),
}

#[derive(Debug, Clone, Copy)]
struct ChangeAuth {
    author: DeviceId,
    signature: Signature,
}

/// An Automerge document of a vault with the signatures of all its changes.
#[derive(Debug, Clone)]
pub struct Document {
    vault: VaultId,
    id: DocId,
    doc: Automerge,
    auth: HashMap<ChangeHash, ChangeAuth>,
    /// Changes stored as individual records (not folded into the snapshot).
    loose: HashSet<ChangeHash>,
    /// Valid changes stored but not applied yet because their dependencies are missing.
    waiting: HashMap<ChangeHash, Change>,
    /// Changes refused because their revoked author made them after its cut. Changes that
    /// build on them can never apply and are dropped too.
    refused: HashSet<ChangeHash>,
}

impl Document {
    /// An empty document; `actor` names this writer (random per tab or process).
    pub fn new(vault: VaultId, id: DocId, actor: ActorId) -> Self {
        Self {
            vault,
            id,
            doc: empty_automerge(actor),
            auth: HashMap::new(),
            loose: HashSet::new(),
            waiting: HashMap::new(),
            refused: HashSet::new(),
        }
    }

    /// Whether changes are stored here that wait for changes not here yet.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The document id.
    pub fn id(&self) -> DocId {
        self.id
    }

    /// The vault it belongs to.
    pub fn vault(&self) -> VaultId {
        self.vault
    }

    /// The Automerge document, for reading.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The current heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }

    /// Number of changes applied.
    pub fn change_count(&self) -> usize {
        self.auth.len() - self.waiting.len()
    }

    /// The author of a known change.
    pub fn author_of(&self, change: &ChangeHash) -> Option<DeviceId> {
        self.auth.get(change).map(|a| a.author)
    }

    /// Makes one signed change by running `edit` in a transaction. Returns `None` when the
    /// edit changed nothing.
    pub fn change<F>(
        &mut self,
        key: &DeviceKey,
        edit: F,
    ) -> Result<Option<LocalChange>, ChangeError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        let mut tx = self.doc.transaction();
        if let Err(e) = edit(&mut tx) {
            tx.rollback();
            return Err(ChangeError::Edit(Box::new(e)));
        }
        let (hash, _) = tx.commit();
        let Some(hash) = hash else {
            return Ok(None);
        };
        let Some(change) = self.doc.get_change_by_hash(&hash) else {
            return Ok(None);
        };
        let signed = SignedChange {
            bytes: change.raw_bytes().to_vec(),
            author: key.device_id(),
            signature: key.sign(&change_signing_message(&self.vault, &self.id, &hash)),
        };
        self.auth.insert(
            hash,
            ChangeAuth {
                author: signed.author,
                signature: signed.signature,
            },
        );
        self.loose.insert(hash);
        let mut batch = Batch::new();
        batch.put(
            Table::Changes,
            keys::change(&self.vault, &self.id, &hash),
            signed.encode(),
        );
        Ok(Some(LocalChange {
            change: signed,
            hash,
            batch,
        }))
    }

    /// Checks and applies remote changes. See the module doc for the checks. The
    /// in-memory document moves ahead at once; commit [`Applied::batch`] before
    /// acknowledging or forwarding, and reload the document from storage if that fails.
    pub fn apply(&mut self, changes: Vec<SignedChange>, membership: &Membership) -> Applied {
        self.apply_with(changes, membership, false)
    }

    /// [`Document::apply`], optionally refusing the whole batch (applying nothing, storing
    /// nothing) if any change is malformed, forged or by a stranger.
    pub fn apply_with(
        &mut self,
        changes: Vec<SignedChange>,
        membership: &Membership,
        all_or_nothing: bool,
    ) -> Applied {
        let mut applied = Applied::default();
        // 1. Parse, drop duplicates.
        let mut fresh: Vec<(Change, ChangeAuth)> = Vec::new();
        let mut seen = HashSet::new();
        for signed in changes {
            let auth_author = signed.author;
            let change = match Change::from_bytes(signed.bytes) {
                Ok(change) => change,
                Err(e) => {
                    applied.rejected.push(ApplyError::Malformed {
                        author: signed.author,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let hash = change.hash();
            // Automerge does not check the chunk checksum (bytes 4..8, the hash's first
            // four bytes); a change whose checksum lies was altered in transit.
            if change.raw_bytes().get(4..8) != Some(&hash.0[..4]) {
                applied.rejected.push(ApplyError::Malformed {
                    author: auth_author,
                    reason: format!("change {hash} has a checksum that does not match its hash"),
                });
                continue;
            }
            if self.auth.contains_key(&hash) || !seen.insert(hash) {
                continue;
            }
            fresh.push((
                change,
                ChangeAuth {
                    author: signed.author,
                    signature: signed.signature,
                },
            ));
        }
        // 2. Signatures, all at once.
        let verified = self.verify_auths(fresh.iter().map(|(c, a)| (c.hash(), a)));
        let mut good = Vec::new();
        for ((change, auth), ok) in fresh.into_iter().zip(verified) {
            if ok {
                good.push((change, auth));
            } else {
                applied.rejected.push(ApplyError::BadSignature {
                    change: change.hash(),
                    author: auth.author,
                });
            }
        }
        // 3. Authorship: members pass; revoked devices only inside their cut.
        let mut by_members = Vec::new();
        let mut by_revoked = Vec::new();
        for (change, auth) in good {
            if membership.is_member(&auth.author) {
                by_members.push((change, auth));
            } else if membership.revocation(&auth.author).is_some() {
                by_revoked.push((change, auth));
            } else {
                applied.rejected.push(ApplyError::NotMember {
                    change: change.hash(),
                    author: auth.author,
                });
            }
        }
        if all_or_nothing && !applied.rejected.is_empty() {
            applied.aborted = true;
            return applied;
        }
        for (change, auth) in by_revoked {
            if self.seen_by_revoker(&change, &auth.author, membership) {
                by_members.push((change, auth));
            } else {
                let hash = change.hash();
                if self.refused.len() < MAX_REFUSED {
                    self.refused.insert(hash);
                }
                applied.rejected.push(ApplyError::Revoked {
                    change: hash,
                    author: auth.author,
                });
            }
        }
        // 4. Record and apply.
        for (change, auth) in by_members {
            let hash = change.hash();
            self.record(hash, &change, auth, &mut applied.batch);
            self.waiting.insert(hash, change);
            applied.accepted.push(hash);
        }
        self.apply_waiting(&mut applied);
        self.drop_orphans(&mut applied);
        applied
    }

    /// Drops waiting changes that build on refused ones: they can never apply.
    fn drop_orphans(&mut self, applied: &mut Applied) {
        if self.refused.is_empty() || self.waiting.is_empty() {
            return;
        }
        loop {
            let orphans: Vec<ChangeHash> = self
                .waiting
                .iter()
                .filter(|(_, c)| c.deps().iter().any(|d| self.refused.contains(d)))
                .map(|(h, _)| *h)
                .collect();
            if orphans.is_empty() {
                return;
            }
            for hash in orphans {
                self.forget(hash, &mut applied.batch);
                applied.accepted.retain(|h| *h != hash);
            }
        }
    }

    /// Checks the signatures of (hash, author, signature) triples for this document.
    fn verify_auths<'a>(
        &self,
        auths: impl Iterator<Item = (ChangeHash, &'a ChangeAuth)>,
    ) -> Vec<bool> {
        let (messages, auths): (Vec<[u8; 95]>, Vec<&ChangeAuth>) = auths
            .map(|(h, a)| (change_signing_message(&self.vault, &self.id, &h), a))
            .unzip();
        let items: Vec<(&[u8], DeviceId, Signature)> = messages
            .iter()
            .zip(&auths)
            .map(|(m, a)| (m.as_slice(), a.author, a.signature))
            .collect();
        verify_signatures(&items)
    }

    fn is_applied(&self, hash: &ChangeHash) -> bool {
        self.auth.contains_key(hash) && !self.waiting.contains_key(hash)
    }

    fn record(&mut self, hash: ChangeHash, change: &Change, auth: ChangeAuth, batch: &mut Batch) {
        self.auth.insert(hash, auth);
        self.loose.insert(hash);
        let signed = SignedChange {
            bytes: change.raw_bytes().to_vec(),
            author: auth.author,
            signature: auth.signature,
        };
        batch.put(
            Table::Changes,
            keys::change(&self.vault, &self.id, &hash),
            signed.encode(),
        );
    }

    /// Applies waiting changes whose dependencies have arrived, parents first, in one
    /// Automerge call; falls back to one change at a time if Automerge refuses the lot.
    fn apply_waiting(&mut self, applied: &mut Applied) {
        // Kahn's order over the waiting changes whose dependencies are, or will be, applied.
        let mut missing: HashMap<ChangeHash, usize> = HashMap::new();
        let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
        let mut queue: Vec<ChangeHash> = Vec::new();
        for (hash, change) in &self.waiting {
            let mut count = 0;
            for dep in change.deps() {
                if self.waiting.contains_key(dep) {
                    dependents.entry(*dep).or_default().push(*hash);
                    count += 1;
                } else if !self.is_applied(dep) {
                    count = usize::MAX; // depends on a change not here at all
                    break;
                }
            }
            match count {
                0 => queue.push(*hash),
                usize::MAX => {}
                n => {
                    missing.insert(*hash, n);
                }
            }
        }
        queue.sort_unstable();
        let mut ready: Vec<ChangeHash> = Vec::with_capacity(queue.len());
        while let Some(hash) = queue.pop() {
            ready.push(hash);
            for child in dependents.get(&hash).into_iter().flatten() {
                if let Some(n) = missing.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        queue.push(*child);
                    }
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        let changes: Vec<Change> = ready
            .iter()
            .filter_map(|h| self.waiting.remove(h))
            .collect();
        if self.doc.apply_changes(changes.clone()).is_ok() {
            return;
        }
        for change in changes {
            let hash = change.hash();
            if self.doc.get_change_meta_by_hash(&hash).is_some() {
                continue;
            }
            if let Err(e) = self.doc.apply_changes([change]) {
                // Refused changes must not stay stored as if valid.
                self.auth.remove(&hash);
                if self.loose.remove(&hash) {
                    applied
                        .batch
                        .delete(Table::Changes, keys::change(&self.vault, &self.id, &hash));
                }
                applied.accepted.retain(|h| *h != hash);
                applied.rejected.push(ApplyError::Refused {
                    change: hash,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Whether `change`, by a revoked `author`, is work its revoking admins had seen.
    fn seen_by_revoker(&self, change: &Change, author: &DeviceId, membership: &Membership) -> bool {
        membership
            .revocation(author)
            .and_then(|r| r.seen.get(&self.id))
            .and_then(|actors| actors.get(change.actor_id().to_bytes()))
            .is_some_and(|max| change.seq() <= *max)
    }

    /// How much of `device`'s work this document holds: per actor, the highest sequence
    /// number among its applied changes. An admin records this when revoking `device`.
    pub fn work_seen(&self, device: &DeviceId) -> BTreeMap<Vec<u8>, u64> {
        let mut seen: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for change in self.doc.get_changes(&[]) {
            if self.auth.get(&change.hash()).map(|a| &a.author) == Some(device) {
                let max = seen
                    .entry(change.actor_id().to_bytes().to_vec())
                    .or_default();
                *max = (*max).max(change.seq());
            }
        }
        seen
    }

    /// A one-line summary of internal state, for simulator failure reports.
    #[doc(hidden)]
    pub fn debug_state(&self) -> String {
        let mut waiting: Vec<String> = self
            .waiting
            .iter()
            .map(|(h, c)| {
                let deps: Vec<String> = c
                    .deps()
                    .iter()
                    .map(|d| {
                        format!(
                            "{}{}",
                            &d.to_string()[..6],
                            if self.is_applied(d) {
                                "+"
                            } else if self.auth.contains_key(d) {
                                "~"
                            } else {
                                "-"
                            }
                        )
                    })
                    .collect();
                format!("{}<-[{}]", &h.to_string()[..6], deps.join(","))
            })
            .collect();
        waiting.sort();
        format!(
            "heads={:?} known={} waiting={:?} refused={}",
            self.heads()
                .iter()
                .map(|h| h.to_string()[..6].to_string())
                .collect::<Vec<_>>(),
            self.auth.len(),
            waiting,
            self.refused.len()
        )
    }

    /// Whether a change is applied here.
    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        self.is_applied(hash)
    }

    /// Hashes of every applied change.
    pub fn applied_hashes(&self) -> impl Iterator<Item = &ChangeHash> {
        self.auth.keys().filter(|h| !self.waiting.contains_key(h))
    }

    /// Dependencies of waiting changes that this device does not have at all.
    pub fn missing_deps(&self) -> Vec<ChangeHash> {
        let mut missing: Vec<ChangeHash> = self
            .waiting
            .values()
            .flat_map(|c| c.deps().iter().copied())
            .filter(|d| !self.auth.contains_key(d))
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// Signed changes by hash (those applied here), in the order asked.
    pub fn changes_by_hash(&self, hashes: &[ChangeHash]) -> Vec<SignedChange> {
        hashes
            .iter()
            .filter(|h| self.is_applied(h))
            .filter_map(|h| self.signed(&self.doc.get_change_by_hash(h)?))
            .collect()
    }

    /// The signed changes that a peer with `have` heads lacks, in causal order.
    pub fn changes_since(&self, have: &[ChangeHash]) -> Vec<SignedChange> {
        let known: Vec<ChangeHash> = have
            .iter()
            .filter(|h| self.is_applied(h))
            .copied()
            .collect();
        self.doc
            .get_changes(&known)
            .iter()
            .filter_map(|c| self.signed(c))
            .collect()
    }

    /// A change of this document with its author and signature.
    fn signed(&self, change: &Change) -> Option<SignedChange> {
        let auth = self.auth.get(&change.hash())?;
        Some(SignedChange {
            bytes: change.raw_bytes().to_vec(),
            author: auth.author,
            signature: auth.signature,
        })
    }

    /// Drops the changes of revoked devices that lie outside their revocation's cut, and of
    /// devices that turned out never to have been members (admitted by an entry that a
    /// concurrent revocation voided), and every change built on them, rebuilding the
    /// document. Returns the batch that
    /// rewrites storage (a fresh snapshot), or `None` when nothing had to go.
    pub fn enforce_revocations(
        &mut self,
        membership: &Membership,
    ) -> Option<(Batch, Vec<ChangeHash>)> {
        let revoked_here: HashSet<DeviceId> = self
            .auth
            .values()
            .map(|a| a.author)
            .filter(|a| !membership.is_member(a))
            .collect();
        if revoked_here.is_empty() {
            return None;
        }
        let unseen = |doc: &Self, change: &Change| {
            doc.auth.get(&change.hash()).is_some_and(|auth| {
                revoked_here.contains(&auth.author)
                    && !doc.seen_by_revoker(change, &auth.author, membership)
            })
        };
        let mut batch = Batch::new();
        // Stored changes still waiting for dependencies go the same way, with whatever
        // waits on them.
        let unseen_waiting: Vec<ChangeHash> = self
            .waiting
            .iter()
            .filter(|(_, c)| unseen(self, c))
            .map(|(h, _)| *h)
            .collect();
        let mut dropped_waiting = Vec::new();
        for hash in unseen_waiting {
            self.forget(hash, &mut batch);
            dropped_waiting.push(hash);
        }
        let mut orphans = Applied::default();
        self.drop_orphans(&mut orphans);
        batch.extend(orphans.batch);
        let all = self.doc.get_changes(&[]);
        let mut dropped: HashSet<ChangeHash> = all
            .iter()
            .filter(|c| unseen(self, c))
            .map(|c| c.hash())
            .collect();
        if dropped.is_empty() {
            return (!dropped_waiting.is_empty()).then_some((batch, dropped_waiting));
        }
        // `get_changes` lists parents before children, so one pass finds descendants.
        let mut kept = Vec::new();
        let actor_now = self.doc.get_actor().clone();
        let mut own_dropped = false;
        for change in all {
            let drop = dropped.contains(&change.hash())
                || change.deps().iter().any(|d| dropped.contains(d));
            if drop {
                own_dropped |= change.actor_id() == &actor_now;
                dropped.insert(change.hash());
            } else {
                kept.push(change);
            }
        }
        let mut actor = actor_now;
        if own_dropped {
            // Our own changes were dropped: writing on with the same actor would reuse their
            // sequence numbers for different changes, which peers refuse. Switch to a new
            // actor derived from the old one and what was dropped.
            let mut parts: Vec<&[u8]> = vec![actor.to_bytes()];
            let mut sorted: Vec<&ChangeHash> = dropped.iter().collect();
            sorted.sort();
            for hash in &sorted {
                parts.push(&hash.0);
            }
            actor = ActorId::from(&crate::hash::Hash::of(&parts).0[..16]);
        }
        let mut rebuilt = empty_automerge(actor);
        if rebuilt.apply_changes(kept).is_err() {
            return None;
        }
        self.doc = rebuilt;
        for hash in &dropped {
            self.forget(*hash, &mut batch);
        }
        // Waiting changes built on what was just dropped can never apply either.
        let mut orphans = Applied::default();
        self.drop_orphans(&mut orphans);
        batch.extend(orphans.batch);
        batch.extend(self.compact());
        let mut dropped: Vec<ChangeHash> = dropped.into_iter().chain(dropped_waiting).collect();
        dropped.sort();
        Some((batch, dropped))
    }

    /// Forgets a change for good: not applied, not waiting, refused if it comes again, and
    /// its own record deleted.
    fn forget(&mut self, hash: ChangeHash, batch: &mut Batch) {
        self.waiting.remove(&hash);
        self.auth.remove(&hash);
        if self.refused.len() < MAX_REFUSED {
            self.refused.insert(hash);
        }
        if self.loose.remove(&hash) {
            batch.delete(Table::Changes, keys::change(&self.vault, &self.id, &hash));
        }
    }

    /// Like [`Document::compact`], for a document some of whose changes were applied but
    /// their records never committed (`unstored`: their batch was held back to be folded
    /// into this one): nothing is deleted for them.
    pub fn compact_with_unstored(&mut self, unstored: &[ChangeHash]) -> Batch {
        for hash in unstored {
            self.loose.remove(hash);
        }
        self.compact()
    }

    /// Whether a change is stored here but waits for its dependencies.
    pub fn is_waiting(&self, hash: &ChangeHash) -> bool {
        self.waiting.contains_key(hash)
    }

    /// Folds every applied change into one snapshot record and deletes their individual
    /// records, in one batch. The snapshot keeps each covered change's author and signature.
    pub fn compact(&mut self) -> Batch {
        let (bytes, hashes) = self.snapshot_parts();
        let mut batch = Batch::new();
        batch.put(Table::Snapshots, keys::doc(&self.vault, &self.id), bytes);
        for hash in &hashes {
            if self.loose.remove(hash) {
                batch.delete(Table::Changes, keys::change(&self.vault, &self.id, hash));
            }
        }
        batch
    }

    /// The document as one snapshot record: heads, the compacted Automerge save, and the
    /// author and signature of every applied change (in sorted hash order). The same bytes
    /// are stored by [`Document::compact`] and sent to a device that has nothing yet.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        self.snapshot_parts().0
    }

    fn snapshot_parts(&self) -> (Vec<u8>, Vec<ChangeHash>) {
        let mut hashes: Vec<ChangeHash> = self.applied_hashes().copied().collect();
        hashes.sort();
        (snapshot_record(&self.doc, &hashes, &self.auth), hashes)
    }

    /// The document for a device that has none of it and takes at most `max_changes` in
    /// one snapshot: a snapshot record of its first `max_changes` changes in causal order,
    /// and the signed changes after them, in causal order. With no more than
    /// `max_changes` changes, the record holds them all and nothing follows.
    pub fn snapshot_and_rest(&self, max_changes: usize) -> (Vec<u8>, Vec<SignedChange>) {
        if self.change_count() <= max_changes {
            return (self.snapshot_bytes(), Vec::new());
        }
        let changes = self.doc.get_changes(&[]);
        let split = max_changes.min(changes.len());
        let (first, rest) = changes.split_at(split);
        let mut prefix = empty_automerge(ActorId::from([0u8; 16].as_slice()));
        if prefix.apply_changes(first.iter().cloned()).is_err() {
            // Changes this document holds always apply to a document of their
            // predecessors; should they not, the whole document goes as one snapshot.
            return (self.snapshot_bytes(), Vec::new());
        }
        let mut hashes: Vec<ChangeHash> = first.iter().map(Change::hash).collect();
        hashes.sort();
        let record = snapshot_record(&prefix, &hashes, &self.auth);
        let rest = rest.iter().filter_map(|c| self.signed(c)).collect();
        (record, rest)
    }

    /// Reads a snapshot record: the document and each change's author and signature.
    fn parse_snapshot(
        id: DocId,
        bytes: &[u8],
    ) -> Result<(Automerge, Vec<(ChangeHash, ChangeAuth)>), LoadError> {
        let head = Self::load_snapshot(id, bytes)?;
        let auths =
            Self::read_snapshot_auths(id, bytes, &head.doc, &head.authors, head.signatures_at)?;
        Ok((head.doc, auths))
    }

    /// The first part of reading a snapshot record, and the costly one: its header and
    /// the Automerge document it carries.
    fn load_snapshot(id: DocId, bytes: &[u8]) -> Result<SnapshotHead, LoadError> {
        let corrupt = |source| LoadError::Corrupt {
            doc: id,
            record: "snapshot",
            source,
        };
        let mut r = Reader::new(bytes);
        let version = r.varint("snapshot version").map_err(corrupt)?;
        if version != SNAPSHOT_VERSION {
            return Err(corrupt(DecodeError::UnsupportedVersion {
                what: "snapshot",
                version,
                supported: SNAPSHOT_VERSION,
            }));
        }
        let n = r.count(1 << 20, 32, "snapshot heads").map_err(corrupt)?;
        for _ in 0..n {
            r.array::<32>("snapshot head").map_err(corrupt)?;
        }
        let save = r
            .bytes(MAX_SNAPSHOT_BYTES, "snapshot document")
            .map_err(corrupt)?;
        let n = r.count(1 << 20, 32, "snapshot authors").map_err(corrupt)?;
        let mut authors = Vec::with_capacity(n);
        for _ in 0..n {
            let key = r.array("snapshot author").map_err(corrupt)?;
            let author = DeviceId::from_public_key(key).map_err(|e| {
                corrupt(DecodeError::Invalid {
                    what: "snapshot author",
                    reason: e.to_string(),
                })
            })?;
            authors.push(author);
        }
        let signatures_at = bytes.len() - r.remaining();
        let doc = Automerge::load(save).map_err(|e| LoadError::Snapshot {
            doc: id,
            reason: e.to_string(),
        })?;
        Ok(SnapshotHead {
            doc,
            authors,
            signatures_at,
        })
    }

    /// The second part of reading a snapshot record: the author and signature of each of
    /// the loaded document's changes, in sorted hash order.
    fn read_snapshot_auths(
        id: DocId,
        bytes: &[u8],
        doc: &Automerge,
        authors: &[DeviceId],
        signatures_at: usize,
    ) -> Result<Vec<(ChangeHash, ChangeAuth)>, LoadError> {
        let corrupt = |source| LoadError::Corrupt {
            doc: id,
            record: "snapshot",
            source,
        };
        let mut r = Reader::new(bytes.get(signatures_at..).unwrap_or_default());
        let mut hashes: Vec<ChangeHash> =
            doc.get_changes_meta(&[]).iter().map(|c| c.hash).collect();
        hashes.sort();
        let n = r
            .count(1 << 24, 65, "snapshot signatures")
            .map_err(corrupt)?;
        if n != hashes.len() {
            return Err(corrupt(DecodeError::Invalid {
                what: "snapshot signatures",
                reason: format!("{n} signatures for {} changes", hashes.len()),
            }));
        }
        let mut auths = Vec::with_capacity(n);
        for hash in hashes {
            let index = r.varint("snapshot author index").map_err(corrupt)?;
            let author = *authors.get(index as usize).ok_or_else(|| {
                corrupt(DecodeError::Invalid {
                    what: "snapshot author index",
                    reason: format!("{index} is past the {} authors", authors.len()),
                })
            })?;
            let signature = Signature(r.array("snapshot signature").map_err(corrupt)?);
            auths.push((hash, ChangeAuth { author, signature }));
        }
        r.finish("snapshot").map_err(corrupt)?;
        Ok(auths)
    }

    /// Takes a peer's snapshot of this document (sent to a device that has nothing of it).
    /// All or nothing: a malformed snapshot, a bad signature or a stranger's change refuses
    /// the whole of it. An empty document adopts the snapshot as it is; otherwise, or when
    /// a revoked device's changes need their cut checked, the snapshot's changes go through
    /// [`Document::apply`].
    pub fn apply_snapshot(&mut self, bytes: &[u8], membership: &Membership) -> Applied {
        match StagedSnapshot::parse(self.vault, self.id, bytes) {
            Ok(mut staged) => {
                staged.verify_some(usize::MAX);
                self.apply_staged_snapshot(staged, membership)
            }
            Err(applied) => applied,
        }
    }

    /// [`Document::apply_snapshot`] for a snapshot parsed and verified ahead, a slice at a
    /// time ([`StagedSnapshot`]). Signatures not verified yet are verified now.
    pub fn apply_staged_snapshot(
        &mut self,
        mut staged: StagedSnapshot,
        membership: &Membership,
    ) -> Applied {
        let mut applied = Applied::default();
        if staged.vault != self.vault || staged.doc != self.id {
            applied.rejected.push(ApplyError::MalformedSnapshot {
                reason: format!("a snapshot of {} applied to {}", staged.doc, self.id),
            });
            applied.aborted = true;
            return applied;
        }
        if let Err(aborted) = staged.read_signatures() {
            return aborted;
        }
        staged.verify_some(usize::MAX);
        if let Some(index) = staged.forged {
            let (hash, auth) = &staged.auths[index];
            applied.rejected.push(ApplyError::BadSignature {
                change: *hash,
                author: auth.author,
            });
            applied.aborted = true;
            return applied;
        }
        let StagedSnapshot {
            bytes,
            loaded,
            auths,
            ..
        } = staged;
        let bytes = bytes.as_slice();
        let all_members = auths.iter().all(|(_, a)| membership.is_member(&a.author));
        if all_members && self.auth.is_empty() {
            let actor = self.doc.get_actor().clone();
            self.doc = loaded.with_actor(actor);
            for (hash, auth) in auths {
                self.auth.insert(hash, auth);
                applied.accepted.push(hash);
            }
            applied.batch.put(
                Table::Snapshots,
                keys::doc(&self.vault, &self.id),
                bytes.to_vec(),
            );
            return applied;
        }
        let by_hash: HashMap<ChangeHash, ChangeAuth> = auths.into_iter().collect();
        let changes: Vec<SignedChange> = loaded
            .get_changes(&[])
            .into_iter()
            .filter_map(|c| {
                let auth = by_hash.get(&c.hash())?;
                Some(SignedChange {
                    bytes: c.raw_bytes().to_vec(),
                    author: auth.author,
                    signature: auth.signature,
                })
            })
            .collect();
        self.apply_with(changes, membership, true)
    }

    /// Rebuilds a document from its stored snapshot (if any) and change records. Records
    /// were checked when they were stored; [`Document::verify`] checks them again.
    pub fn load(
        vault: VaultId,
        id: DocId,
        actor: ActorId,
        snapshot: Option<&[u8]>,
        changes: &[Vec<u8>],
    ) -> Result<Self, LoadError> {
        let mut document = Self::new(vault, id, actor.clone());
        if let Some(bytes) = snapshot {
            let (doc, auths) = Self::parse_snapshot(id, bytes)?;
            document.auth.extend(auths);
            document.doc = doc.with_actor(actor);
        }
        document.take_in_stored(changes)?;
        Ok(document)
    }

    /// Applies change records read from storage (written there by this device, maybe
    /// by another tab or process; they were checked before they were stored). Records
    /// of changes already here are skipped.
    pub fn take_in_stored(&mut self, changes: &[Vec<u8>]) -> Result<(), LoadError> {
        // Every record is parsed before anything changes, so a corrupt one changes nothing.
        let id = self.id;
        let mut parsed = Vec::with_capacity(changes.len());
        for bytes in changes {
            let signed = SignedChange::decode(bytes).map_err(|source| LoadError::Corrupt {
                doc: id,
                record: "change",
                source,
            })?;
            let change = Change::from_bytes(signed.bytes).map_err(|e| LoadError::Corrupt {
                doc: id,
                record: "change",
                source: DecodeError::Invalid {
                    what: "automerge change",
                    reason: e.to_string(),
                },
            })?;
            let auth = ChangeAuth {
                author: signed.author,
                signature: signed.signature,
            };
            parsed.push((change.hash(), auth, change));
        }
        for (hash, auth, change) in parsed {
            self.auth.insert(hash, auth);
            self.loose.insert(hash);
            if self.doc.get_change_meta_by_hash(&hash).is_none() {
                self.waiting.insert(hash, change);
            }
        }
        let mut ignored = Applied::default();
        self.apply_waiting(&mut ignored);
        Ok(())
    }

    /// Checks every change's signature (batch verification). Returns the problems found.
    pub fn verify(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut hashes: Vec<ChangeHash> =
            self.doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
        hashes.extend(self.waiting.keys().copied());
        let mut signed = Vec::new();
        for hash in hashes {
            match self.auth.get(&hash) {
                Some(auth) => signed.push((hash, *auth)),
                None => problems.push(Problem::Unsigned(hash)),
            }
        }
        let verified = self.verify_auths(signed.iter().map(|(h, a)| (*h, a)));
        for ((hash, _), ok) in signed.iter().zip(verified) {
            if !ok {
                problems.push(Problem::BadSignature(*hash));
            }
        }
        problems
    }

    /// The document's value as JSON-like data, for display and tests.
    pub fn hydrate(&self) -> automerge::hydrate::Value {
        self.doc.hydrate(None)
    }

    /// The document's value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        crate::json::to_json(&self.hydrate())
    }

    /// What changed between `before` (heads this document had at some point, for example
    /// from [`Document::heads`]) and now, as Automerge patches. Hashes this document does
    /// not hold (left by a change that revocation later removed) are skipped, so the
    /// patches then start from the part of `before` that is still known.
    pub fn patches_since(&self, before: &[ChangeHash]) -> Vec<automerge::Patch> {
        let known: Vec<ChangeHash> = before
            .iter()
            .filter(|h| self.doc.get_change_by_hash(h).is_some())
            .copied()
            .collect();
        self.doc.diff(&known, &self.doc.get_heads())
    }

    /// The stored metadata record of a document.
    pub fn meta_record(&self, created_ms: u64) -> Batch {
        let mut w = Writer::new();
        w.varint(RECORD_VERSION).varint(created_ms);
        let mut batch = Batch::new();
        batch.put(Table::Docs, keys::doc(&self.vault, &self.id), w.finish());
        batch
    }

    /// A value at `key` in the document's root map, for quick reads.
    pub fn get_root(&self, key: &str) -> Option<automerge::Value<'_>> {
        self.doc
            .get(automerge::ROOT, key)
            .ok()
            .flatten()
            .map(|(v, _)| v)
    }
}
