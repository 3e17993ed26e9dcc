//! Enforcing revocations on a document: the work a revoked device's revokers had seen
//! stays, its other changes and everything built on them go.

use std::collections::{BTreeMap, HashSet};

use automerge::{ActorId, Change, ChangeHash};

use super::{Applied, Document, MAX_REFUSED, empty_automerge};
use crate::identity::DeviceId;
use crate::membership::Membership;
use crate::storage::{Batch, Table, keys};

impl Document {
    /// Drops waiting changes that build on refused ones: they can never apply.
    pub(super) fn drop_orphans(&mut self, applied: &mut Applied) {
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

    /// Whether `change`, by a revoked `author`, is work its revoking admins had seen.
    pub(super) fn seen_by_revoker(
        &self,
        change: &Change,
        author: &DeviceId,
        membership: &Membership,
    ) -> bool {
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
            if let Some(change) = self.waiting.get(&hash).cloned() {
                self.void(hash, &change, &mut batch);
            }
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
        let mut voided = Vec::new();
        let actor_now = self.doc.get_actor().clone();
        let mut own_dropped = false;
        for change in all {
            let drop = dropped.contains(&change.hash())
                || change.deps().iter().any(|d| dropped.contains(d));
            if drop {
                own_dropped |= change.actor_id() == &actor_now;
                dropped.insert(change.hash());
                voided.push(change.clone());
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
        // Held aside, not forgotten: a later membership change may make them stand.
        for change in &voided {
            self.void(change.hash(), change, &mut batch);
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
    pub(super) fn forget(&mut self, hash: ChangeHash, batch: &mut Batch) {
        self.waiting.remove(&hash);
        self.auth.remove(&hash);
        if self.refused.len() < MAX_REFUSED {
            self.refused.insert(hash);
        }
        if self.loose.remove(&hash) {
            batch.delete(Table::Changes, keys::change(&self.vault, &self.id, &hash));
        }
    }
}
