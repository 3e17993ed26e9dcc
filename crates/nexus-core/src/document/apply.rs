//! Taking in changes: checking remote changes (well-formed, by a member, signed) and
//! applying them in causal order, and taking in change records read from storage.

use std::collections::{HashMap, HashSet};

use automerge::{Change, ChangeHash};

use super::nesting::Nesting;
use super::{
    Applied, ApplyError, ChangeAuth, Document, LoadError, MAX_REFUSED, SignedChange,
    change_signing_message, verify_signatures,
};
use crate::codec::DecodeError;
use crate::identity::{DeviceId, Signature};
use crate::membership::Membership;
use crate::storage::{Batch, Table, keys};

impl Document {
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
            // A voided change held aside is refused while it does not stand, and taken
            // like any other once it does (its held copy let go).
            if self.voided.contains_key(&hash) {
                if !self.stands(&change, &auth_author, membership) {
                    applied.rejected.push(ApplyError::Revoked {
                        change: hash,
                        author: auth_author,
                    });
                    continue;
                }
                self.voided.remove(&hash);
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
            if !crate::actor::actor_belongs_to(change.actor_id(), &auth.author) {
                applied.rejected.push(ApplyError::ForeignActor {
                    change: change.hash(),
                    author: auth.author,
                });
            } else if membership.is_member(&auth.author) {
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
        if !applied.accepted.is_empty() && !self.voided.is_empty() {
            // What arrived may be what a held change was waiting for.
            let again = self.revive_voided(membership);
            applied.accepted.extend(again.accepted);
            applied.batch.extend(again.batch);
        }
        applied
    }

    /// Checks the signatures of (hash, author, signature) triples for this document.
    pub(super) fn verify_auths<'a>(
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

    fn record(&mut self, hash: ChangeHash, change: &Change, auth: ChangeAuth, batch: &mut Batch) {
        self.auth.insert(hash, auth);
        self.loose.insert(hash);
        let signed = auth.signed(change);
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
        let mut changes: Vec<Change> = ready
            .iter()
            .filter_map(|h| self.waiting.remove(h))
            .collect();
        let mut nesting = Nesting::on(Some(&self.doc));
        let mut too_deep = Vec::new();
        changes.retain(|change| match nesting.check(change) {
            Ok(()) => true,
            Err(e) => {
                too_deep.push((change.hash(), e));
                false
            }
        });
        for (hash, e) in too_deep {
            self.unrecord(hash, applied);
            applied.rejected.push(e.refusal(hash));
        }
        if self.doc.apply_changes(changes.clone()).is_ok() {
            return;
        }
        for change in changes {
            let hash = change.hash();
            if self.doc.get_change_meta_by_hash(&hash).is_some() {
                continue;
            }
            if let Err(e) = self.doc.apply_changes([change]) {
                self.unrecord(hash, applied);
                applied.rejected.push(ApplyError::Refused {
                    change: hash,
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Refused changes must not stay stored as if valid.
    fn unrecord(&mut self, hash: ChangeHash, applied: &mut Applied) {
        self.auth.remove(&hash);
        if self.loose.remove(&hash) {
            applied
                .batch
                .delete(Table::Changes, keys::change(&self.vault, &self.id, &hash));
        }
        applied.accepted.retain(|h| *h != hash);
    }

    /// Applies change records read from storage (written there by this device, maybe
    /// by another tab or process; they were checked before they were stored). Records
    /// of changes already here are skipped.
    pub fn take_in_stored(&mut self, changes: &[Vec<u8>]) -> Result<(), LoadError> {
        // Every record is parsed before anything changes, so a corrupt one changes nothing.
        let id = self.id;
        let mut parsed = Vec::with_capacity(changes.len());
        let mut voided = Vec::new();
        for bytes in changes {
            if let Some(record) = super::voided::strip_voided(bytes) {
                let signed = SignedChange::decode(record).map_err(|source| LoadError::Corrupt {
                    doc: id,
                    record: "voided change",
                    source,
                })?;
                voided.push(signed);
                continue;
            }
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
        for signed in voided {
            if let Ok(change) = Change::from_bytes(signed.bytes.clone()) {
                let hash = change.hash();
                if !self.auth.contains_key(&hash) {
                    self.voided.insert(hash, signed);
                }
            }
        }
        for (hash, auth, change) in parsed {
            self.voided.remove(&hash);
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
}
