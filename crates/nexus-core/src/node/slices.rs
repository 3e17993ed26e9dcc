//! Big messages taken in a slice per [`Node::work`] call: a peer's snapshot parsed, its
//! signatures checked a slice at a time, then applied; a message of many changes checked
//! and applied a slice at a time, its change records [`Held`] back and stored at the end
//! as one compacted snapshot. Messages of the session wait in its backlog meanwhile.

use std::collections::VecDeque;

use automerge::ChangeHash;

use super::{Event, Node, Output, SessionId};
use crate::document::SignedChange;
use crate::ids::{DocId, VaultId};
use crate::storage::{Op, Table};

/// A peer's snapshot on its way in: each step is one call of [`Node::work`].
#[derive(Debug, Clone)]
pub(super) enum Staged {
    /// Received, not parsed yet.
    Received { doc: DocId, bytes: Vec<u8> },
    /// Parsed; signatures being checked.
    Parsed(Box<crate::document::StagedSnapshot>),
    /// Changes from one message, in the order sent, checked and applied a slice at a
    /// time.
    Changes {
        doc: DocId,
        changes: VecDeque<SignedChange>,
        held: Box<Held>,
    },
}

/// What the slices of one big message of changes applied so far, with the records of the
/// applied changes held back: after the last slice, the document is stored as one
/// compacted snapshot instead of one record per change (thousands of small writes would
/// cost a browser's IndexedDB more than the checking and applying).
#[derive(Debug, Clone, Default)]
pub(super) struct Held {
    /// Everything but the held records.
    applied: crate::document::Applied,
    /// The held change records (key, value).
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Held {
    /// Adds a slice's outcome, holding back its change records.
    fn hold(&mut self, applied: crate::document::Applied) {
        for op in applied.batch.into_ops() {
            match op {
                Op::Put {
                    table: Table::Changes,
                    key,
                    value,
                } => self.records.push((key, value)),
                Op::Put { table, key, value } => self.applied.batch.put(table, key, value),
                Op::Delete { table, key } => self.applied.batch.delete(table, key),
            }
        }
        self.applied.accepted.extend(applied.accepted);
        self.applied.rejected.extend(applied.rejected);
    }
}

impl Node {
    /// Whether [`Node::work`] has something to do (a snapshot being checked, messages
    /// waiting behind one).
    pub fn has_work(&self) -> bool {
        !self.unfinished.is_empty()
            || self
                .sessions
                .values()
                .any(|s| s.staged.is_some() || !s.backlog.is_empty())
    }

    /// Does one slice of pending work: one step of a staged snapshot (loading its
    /// document, reading its signatures, checking the next [`NodeConfig::verify_slice`](super::NodeConfig::verify_slice)
    /// of them, or applying it once all are checked), or handles one message that waited
    /// behind one. Call while [`Node::has_work`], giving other work a
    /// turn between calls.
    pub fn work(&mut self, now_ms: u64) -> Output {
        let mut out = Output::default();
        if let Some((vault, doc, held)) = self.unfinished.pop() {
            let applied = self.store_held(vault, doc, held);
            out.batch.extend(applied.batch);
            if !applied.accepted.is_empty() {
                out.events.push(Event::DocChanged { vault, doc });
            }
            return out;
        }
        let slice = self.config.verify_slice;
        let Some((&id, session)) = self
            .sessions
            .iter_mut()
            .find(|(_, s)| s.staged.is_some() || !s.backlog.is_empty())
        else {
            return out;
        };
        let vault = session.vault;
        match session.staged.take() {
            Some((theirs, Staged::Received { doc, bytes })) => {
                // Parsing (loading the document) is a step of its own.
                let Some(vault) = vault else {
                    return out;
                };
                match crate::document::StagedSnapshot::load(vault, doc, &bytes) {
                    Ok(staged) => session.staged = Some((theirs, Staged::Parsed(Box::new(staged)))),
                    Err(aborted) => self.after_apply(id, vault, doc, theirs, aborted, &mut out),
                }
                return out;
            }
            Some((theirs, Staged::Parsed(mut staged))) => {
                // Reading the signatures, checking the last slice and applying are
                // separate steps too.
                if !staged.signatures_read() {
                    let doc = staged.doc();
                    match staged.read_signatures() {
                        Ok(()) => session.staged = Some((theirs, Staged::Parsed(staged))),
                        Err(aborted) => {
                            let Some(vault) = vault else {
                                return out;
                            };
                            self.after_apply(id, vault, doc, theirs, aborted, &mut out);
                        }
                    }
                } else if staged.is_checked() {
                    self.apply_staged(id, theirs, *staged, now_ms, &mut out);
                } else {
                    staged.verify_some(slice);
                    session.staged = Some((theirs, Staged::Parsed(staged)));
                }
                return out;
            }
            Some((
                theirs,
                Staged::Changes {
                    doc,
                    mut changes,
                    mut held,
                },
            )) => {
                // Each slice is checked and applied as a message of its own; changes come
                // in causal order, so a slice never waits for a later one.
                let Some(vault) = vault else {
                    return out;
                };
                let take = slice.max(1).min(changes.len());
                let first: Vec<SignedChange> = changes.drain(..take).collect();
                let Some(v) = self.vaults.get_mut(&vault) else {
                    return out;
                };
                let applied = v.apply_changes_from_peer(doc, first, now_ms);
                if applied.aborted {
                    // What the earlier slices applied stays; then the peer is cut off.
                    let earlier = self.store_held(vault, doc, *held);
                    self.after_apply(id, vault, doc, theirs.clone(), earlier, &mut out);
                    self.after_apply(id, vault, doc, theirs, applied, &mut out);
                    return out;
                }
                held.hold(applied);
                if changes.is_empty() {
                    let all = self.store_held(vault, doc, *held);
                    self.after_apply(id, vault, doc, theirs, all, &mut out);
                } else if let Some(session) = self.sessions.get_mut(&id) {
                    session.staged = Some((theirs, Staged::Changes { doc, changes, held }));
                }
                return out;
            }
            None => {}
        }
        if let Some(bytes) = session.backlog.pop_front() {
            self.handle_message_now(id, &bytes, now_ms, &mut out);
        }
        out
    }

    /// The outcome of the slices `held` with its records: the applied changes folded
    /// into one compacted snapshot of the document, and the records of changes that
    /// still wait for their dependencies.
    fn store_held(&mut self, vault: VaultId, doc: DocId, held: Held) -> crate::document::Applied {
        let Held {
            mut applied,
            records,
        } = held;
        let Some(v) = self.vaults.get_mut(&vault) else {
            return applied;
        };
        let mut unstored = Vec::new();
        if let Some(d) = v.document(&doc) {
            for (key, value) in records {
                let Some(hash) = crate::storage::keys::change_hash(&key) else {
                    continue;
                };
                if d.has_change(&hash) {
                    unstored.push(hash);
                } else if d.is_waiting(&hash) {
                    applied.batch.put(Table::Changes, key, value);
                }
            }
        }
        if !unstored.is_empty()
            && let Ok(batch) = v.compact_with_unstored(doc, &unstored)
        {
            applied.batch.extend(batch);
        }
        applied
    }

    fn apply_staged(
        &mut self,
        id: SessionId,
        theirs: Vec<ChangeHash>,
        staged: crate::document::StagedSnapshot,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get_mut(&vault) else {
            return;
        };
        let doc = staged.doc();
        let applied = v.apply_staged_snapshot_from_peer(staged, now_ms);
        self.after_apply(id, vault, doc, theirs, applied, out);
    }

    /// Many changes to check and apply a slice at a time: [`Node::work`] takes the next
    /// slice per call.
    pub(super) fn stage_changes(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        changes: Vec<SignedChange>,
    ) {
        if let Some(session) = self.sessions.get_mut(&id) {
            let changes = changes.into();
            let held = Box::default();
            let staged = Staged::Changes { doc, changes, held };
            session.staged = Some((theirs, staged));
        }
    }

    /// A snapshot to check a slice at a time: kept as received; [`Node::work`] parses it,
    /// checks its signatures a slice per call, then applies it.
    pub(super) fn stage_snapshot(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        bytes: Vec<u8>,
    ) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.staged = Some((theirs, Staged::Received { doc, bytes }));
        }
    }
}
