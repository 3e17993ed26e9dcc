//! How deep a document's maps, lists and texts nest. Every reader of a document (JSON for
//! the CLI and JavaScript, Automerge's own `hydrate`) walks it recursively, so a member's
//! change nesting objects 100,000 deep would overflow the stack of every device that
//! reads it. A change that makes an object deeper than [`MAX_DEPTH`] is refused at apply,
//! whether it arrives alone or inside a snapshot, and a local edit cannot make one.

use std::collections::HashMap;

use automerge::legacy::{ObjectId, OpType};
use automerge::{ActorId, Automerge, Change, ChangeHash, ExpandedChange, ReadDoc};

use super::ApplyError;

/// Deepest an object may sit below the document's root (the root's own keys are depth 1).
pub const MAX_DEPTH: usize = 256;

/// Why a change fails the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TooDeep {
    /// It makes an object this deep, over [`MAX_DEPTH`].
    Depth(usize),
    /// It makes an object inside one that neither the document nor its dependencies made.
    UnknownParent,
}

impl TooDeep {
    /// Why `change` is refused.
    pub(super) fn refusal(self, change: ChangeHash) -> ApplyError {
        ApplyError::TooDeep {
            change,
            depth: match self {
                TooDeep::Depth(depth) => depth,
                TooDeep::UnknownParent => 0,
            },
        }
    }
}

/// Depths of the objects made by the changes checked so far, on top of a document.
pub(super) struct Nesting<'a> {
    /// Objects already in this document (`None`: every object is made by the changes
    /// checked, as in a snapshot).
    doc: Option<&'a Automerge>,
    made: HashMap<(u64, ActorId), usize>,
}

impl<'a> Nesting<'a> {
    pub(super) fn on(doc: Option<&'a Automerge>) -> Self {
        Self {
            doc,
            made: HashMap::new(),
        }
    }

    /// Checks one change (its dependencies checked before it).
    pub(super) fn check(&mut self, change: &Change) -> Result<(), TooDeep> {
        let ExpandedChange {
            operations,
            actor_id,
            start_op,
            ..
        } = change.decode();
        for (offset, op) in operations.iter().enumerate() {
            if !matches!(op.action, OpType::Make(_)) {
                continue;
            }
            let depth = match &op.obj {
                ObjectId::Root => 1,
                ObjectId::Id(parent) => {
                    let key = (parent.0, parent.1.clone());
                    match self.made.get(&key) {
                        Some(depth) => depth + 1,
                        None => {
                            self.depth_in_doc(parent.0, &parent.1)
                                .ok_or(TooDeep::UnknownParent)?
                                + 1
                        }
                    }
                }
            };
            if depth > MAX_DEPTH {
                return Err(TooDeep::Depth(depth));
            }
            let counter = start_op.get() + offset as u64;
            self.made.insert((counter, actor_id.clone()), depth);
        }
        Ok(())
    }

    /// Checks a change made here and already applied to `doc`: its parents' depths come
    /// from `doc`, its own new objects from the change.
    pub(super) fn check_local(
        mut self,
        change: &Change,
        doc: &'a Automerge,
    ) -> Result<(), TooDeep> {
        self.doc = Some(doc);
        self.check(change)
    }

    /// The depth of an object already in the document, counted up to one past the limit.
    fn depth_in_doc(&self, counter: u64, actor: &ActorId) -> Option<usize> {
        let doc = self.doc?;
        let obj = doc.import_obj(&format!("{counter}@{actor}")).ok()?;
        let parents = doc.parents(&obj).ok()?;
        Some(parents.take(MAX_DEPTH + 1).count())
    }
}
