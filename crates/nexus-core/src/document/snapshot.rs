//! Snapshot records: compaction into one record that keeps every change's signature, the
//! record's encoding, and taking in a peer's snapshot, at once or a slice at a time
//! ([`StagedSnapshot`]).

use std::collections::HashMap;

use automerge::{ActorId, Automerge, Change, ChangeHash};

use super::nesting::Nesting;
use super::{
    Applied, ApplyError, ChangeAuth, Document, LoadError, MAX_SNAPSHOT_BYTES, SignedChange,
    change_signing_message, empty_automerge, verify_signatures,
};
use crate::codec::{DecodeError, Reader, Writer};
use crate::identity::{DeviceId, Signature};
use crate::ids::{DocId, VaultId};
use crate::membership::Membership;
use crate::storage::{Batch, Table, keys};

const SNAPSHOT_VERSION: u64 = 1;

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

impl Document {
    /// Like [`Document::compact`], for a document some of whose changes were applied but
    /// their records never committed (`unstored`: their batch was held back to be folded
    /// into this one): nothing is deleted for them.
    pub fn compact_with_unstored(&mut self, unstored: &[ChangeHash]) -> Batch {
        for hash in unstored {
            self.loose.remove(hash);
        }
        self.compact()
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
    pub(super) fn parse_snapshot(
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
            let mut nesting = Nesting::on(None);
            let authors: std::collections::HashMap<_, _> =
                auths.iter().map(|(h, a)| (*h, a.author)).collect();
            for change in loaded.get_changes(&[]) {
                let hash = change.hash();
                match authors.get(&hash) {
                    Some(author) if crate::actor::actor_belongs_to(change.actor_id(), author) => {}
                    Some(author) => {
                        applied.rejected.push(ApplyError::ForeignActor {
                            change: hash,
                            author: *author,
                        });
                        applied.aborted = true;
                        return applied;
                    }
                    None => {}
                }
                if let Err(e) = nesting.check(&change) {
                    applied.rejected.push(e.refusal(change.hash()));
                    applied.aborted = true;
                    return applied;
                }
            }
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
            .filter_map(|c| Some(by_hash.get(&c.hash())?.signed(&c)))
            .collect();
        self.apply_with(changes, membership, true)
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};

    use super::*;
    use crate::identity::DeviceKey;
    use crate::membership::{MembershipLog, Role};

    /// A member sends a fresh device a snapshot whose document nests maps 300 deep (made
    /// without its own node, which refuses such an edit): refused whole, nothing stored,
    /// like the same changes sent one by one.
    #[test]
    fn a_snapshot_nesting_too_deep_is_refused_whole() {
        let (alice, bob) = (
            DeviceKey::from_secret_bytes(&[1; 32]),
            DeviceKey::from_secret_bytes(&[2; 32]),
        );
        let (mut log, _) = MembershipLog::create(&alice, "v", [0; 16], 0).unwrap();
        log.add_device(&alice, bob.device_id(), Role::Member, 1)
            .unwrap();
        let (vault, doc) = (log.vault_id(), DocId([4; 16]));
        let actor = crate::actor::actor_of(&bob.device_id(), &ActorId::from(&[9u8; 16][..]));
        let mut deep = empty_automerge(actor);
        let mut tx = deep.transaction();
        let mut obj = ROOT;
        for _ in 0..300 {
            obj = tx.put_object(&obj, "n", ObjType::Map).unwrap();
        }
        tx.commit();
        let mut auth = HashMap::new();
        for change in deep.get_changes(&[]) {
            let hash = change.hash();
            let signature = bob.sign(&change_signing_message(&vault, &doc, &hash));
            auth.insert(
                hash,
                ChangeAuth {
                    author: bob.device_id(),
                    signature,
                },
            );
        }
        let mut hashes: Vec<ChangeHash> = auth.keys().copied().collect();
        hashes.sort();
        let record = snapshot_record(&deep, &hashes, &auth);

        let mut fresh = Document::new(vault, doc, ActorId::from(&[3u8; 16][..]));
        let applied = fresh.apply_snapshot(&record, log.membership());
        assert!(applied.aborted);
        assert!(
            matches!(applied.rejected.as_slice(), [ApplyError::TooDeep { depth, .. }] if *depth > super::super::MAX_DEPTH),
            "{:?}",
            applied.rejected
        );
        assert!(applied.batch.is_empty(), "nothing stored");
        assert_eq!(fresh.change_count(), 0);
    }
}
