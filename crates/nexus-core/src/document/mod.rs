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
//! Before these, a change whose Automerge actor is not one of its author's is refused
//! ([`crate::actor`]: an actor id starts with its device's tag; a local edit switches the
//! document to an actor of the signing device). Rejected changes are never stored and
//! never applied; the rest are applied and returned as a batch to commit. The actor id
//! says which writer (a tab, a process) of which device made a change; it is never a
//! credential: the signature is.
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

use crate::codec::Writer;
use crate::identity::{DeviceId, DeviceKey, Signature};
use crate::ids::{DocId, VaultId};
use crate::storage::{Batch, Table, keys};

mod apply;
mod nesting;
mod outcomes;
mod revocation;
mod signed_change;
mod snapshot;
mod voided;

pub use nesting::MAX_DEPTH;
pub use outcomes::{
    Applied, ApplyError, ChangeError, ChangeOptions, LoadError, LocalChange, Problem,
};
pub use signed_change::{SignedChange, change_signing_message, verify_signatures};
pub use snapshot::StagedSnapshot;
pub use voided::MAX_VOIDED;

/// Largest Automerge change accepted, in bytes.
pub const MAX_CHANGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest snapshot accepted, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;
/// Most refused change hashes remembered per document.
const MAX_REFUSED: usize = 65_536;

const RECORD_VERSION: u64 = 1;

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

#[derive(Debug, Clone, Copy)]
struct ChangeAuth {
    author: DeviceId,
    signature: Signature,
}

impl ChangeAuth {
    /// `change` with this author and signature, as it is stored and sent.
    fn signed(self, change: &Change) -> SignedChange {
        SignedChange {
            bytes: change.raw_bytes().to_vec(),
            author: self.author,
            signature: self.signature,
        }
    }
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
    /// Changes a revocation voided, held in case a later membership change makes them
    /// stand again (see `voided.rs`).
    voided: BTreeMap<ChangeHash, SignedChange>,
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
            voided: BTreeMap::new(),
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
        self.change_with(key, &ChangeOptions::default(), edit)
    }

    /// [`Document::change`] on given heads and with a message ([`ChangeOptions`]).
    pub fn change_with<F>(
        &mut self,
        key: &DeviceKey,
        options: &ChangeOptions,
        edit: F,
    ) -> Result<Option<LocalChange>, ChangeError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        if let Some(at) = &options.at
            && let Some(unknown) = at.iter().find(|h| !self.is_applied(h))
        {
            return Err(ChangeError::UnknownHeads {
                heads: unknown.to_string(),
            });
        }
        // Write under an actor of this device's own (see `crate::actor`).
        let actor = crate::actor::actor_of(&key.device_id(), self.doc.get_actor());
        if actor != *self.doc.get_actor() {
            self.doc.set_actor(actor);
        }
        let before = self.doc.get_heads();
        let mut tx = match &options.at {
            Some(at) if *at != before => self
                .doc
                .transaction_at(automerge::PatchLog::inactive(), at)
                .map_err(|_| ChangeError::UnknownHeads {
                    heads: format!("{at:?}"),
                })?,
            _ => self.doc.transaction(),
        };
        if let Err(e) = edit(&mut tx) {
            tx.rollback();
            return Err(ChangeError::Edit(Box::new(e)));
        }
        let (hash, _) = match &options.message {
            Some(message) => tx.commit_with(
                automerge::transaction::CommitOptions::default().with_message(message.clone()),
            ),
            None => tx.commit(),
        };
        let Some(hash) = hash else {
            return Ok(None);
        };
        let Some(change) = self.doc.get_change_by_hash(&hash) else {
            return Ok(None);
        };
        if let Err(nesting::TooDeep::Depth(depth)) =
            nesting::Nesting::on(None).check_local(&change, &self.doc)
        {
            // Undo the commit: the document as it was, writing as the same actor.
            let actor = self.doc.get_actor().clone();
            if let Ok(undone) = self.doc.fork_at(&before) {
                self.doc = undone.with_actor(actor);
            }
            return Err(ChangeError::TooDeep { depth });
        }
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

    fn is_applied(&self, hash: &ChangeHash) -> bool {
        self.auth.contains_key(hash) && !self.waiting.contains_key(hash)
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
        Some(self.auth.get(&change.hash())?.signed(change))
    }

    /// Whether a change is stored here but waits for its dependencies.
    pub fn is_waiting(&self, hash: &ChangeHash) -> bool {
        self.waiting.contains_key(hash)
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

    /// The document in Automerge's own `save()` format, history included: what
    /// `@automerge/automerge`'s `load` (or `automerge::Automerge::load`) opens. Changes
    /// still waiting for their dependencies are not in it.
    pub fn export(&self) -> Vec<u8> {
        self.doc.save()
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
