//! Changes a revocation voided, held aside instead of forgotten. A revocation drops a
//! revoked device's changes past its cut and everything built on them, members' work
//! included; a later membership change (the device admitted again, the revocation itself
//! voided by a concurrent one) can make them stand again, and then they are applied as
//! if they had just arrived. Without this, a member's change built on such work would be
//! lost for good on the one device that held it.
//!
//! Held changes are stored as records of their own kind in [`Table::Changes`], under the
//! change's key: a voided record is [`VOIDED_RECORD`] followed by the change record.

use std::collections::HashSet;

use automerge::{Change, ChangeHash};

use super::{Applied, Document, SignedChange};
use crate::codec::{Reader, Writer};
use crate::identity::DeviceId;
use crate::membership::Membership;
use crate::storage::{Batch, Table, keys};

/// Most voided changes held per document; past it, a voided change is forgotten (and
/// refused if it comes again), as every one was before.
pub const MAX_VOIDED: usize = 10_000;

/// The first varint of a voided change's record (a change record starts with 1).
const VOIDED_RECORD: u64 = 0x56;

/// The record of a voided change.
pub(super) fn voided_record(signed: &SignedChange) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(VOIDED_RECORD).raw(&signed.encode());
    w.finish()
}

/// The change record inside `bytes` if they are a voided change's record.
pub(super) fn strip_voided(bytes: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(bytes);
    (r.varint("record kind").ok()? == VOIDED_RECORD).then(|| &bytes[bytes.len() - r.remaining()..])
}

impl Document {
    /// Holds a change aside as voided (stored as such), or forgets it when
    /// [`MAX_VOIDED`] are held.
    pub(super) fn void(&mut self, hash: ChangeHash, change: &Change, batch: &mut Batch) {
        let Some(auth) = self.auth.get(&hash).copied() else {
            return;
        };
        if self.voided.len() >= MAX_VOIDED {
            self.forget(hash, batch);
            return;
        }
        let signed = auth.signed(change);
        batch.put(
            Table::Changes,
            keys::change(&self.vault, &self.id, &hash),
            voided_record(&signed),
        );
        self.waiting.remove(&hash);
        self.auth.remove(&hash);
        self.loose.remove(&hash);
        self.voided.insert(hash, signed);
    }

    /// Whether a change by `author` stands under `membership`: by a member, or by a
    /// revoked device inside its revocation's cut.
    pub(super) fn stands(
        &self,
        change: &Change,
        author: &DeviceId,
        membership: &Membership,
    ) -> bool {
        membership.is_member(author)
            || (membership.revocation(author).is_some()
                && self.seen_by_revoker(change, author, membership))
    }

    /// Changes held aside because a revocation voided them.
    pub fn voided(&self) -> impl Iterator<Item = &ChangeHash> {
        self.voided.keys()
    }

    /// Applies the voided changes that stand again under `membership` (their authors
    /// are members, or revoked devices whose revokers had seen them) and whose
    /// dependencies are here or stand again with them. The rest stay held.
    pub fn revive_voided(&mut self, membership: &Membership) -> Applied {
        if self.voided.is_empty() {
            return Applied::default();
        }
        let mut standing: Vec<(ChangeHash, Change)> = Vec::new();
        for (hash, signed) in &self.voided {
            let Ok(change) = Change::from_bytes(signed.bytes.clone()) else {
                continue;
            };
            if self.stands(&change, &signed.author, membership) {
                standing.push((*hash, change));
            }
        }
        // Only what can be applied now: each dependency here, or reviving with it.
        let mut reviving: HashSet<ChangeHash> = HashSet::new();
        loop {
            let before = reviving.len();
            for (hash, change) in &standing {
                if !reviving.contains(hash)
                    && change
                        .deps()
                        .iter()
                        .all(|d| self.is_applied(d) || reviving.contains(d))
                {
                    reviving.insert(*hash);
                }
            }
            if reviving.len() == before {
                break;
            }
        }
        if reviving.is_empty() {
            return Applied::default();
        }
        let changes: Vec<SignedChange> = reviving
            .iter()
            .filter_map(|h| self.voided.remove(h))
            .collect();
        for hash in &reviving {
            self.refused.remove(hash);
        }
        self.apply(changes, membership)
    }
}
