//! Syncing one document with a peer by heads: sending exactly the changes a peer lacks
//! when its heads are known here, swapping Bloom filters when both sides have changes the
//! other lacks, asking for missing dependencies by hash, and a snapshot for a device that
//! has none of the document.

use automerge::ChangeHash;

use super::{Event, Node, Output, SessionId};
use crate::document::SignedChange;
use crate::ids::{DocId, VaultId};
use crate::protocol::{
    Bloom, CHANGES_CHUNK_BYTES, MAX_ITEMS, MAX_SNAPSHOT_MESSAGE_BYTES, Message, RefuseCode,
};

/// Most changes sent in answer to one `DocNeed`.
const MAX_NEED_ANSWER: usize = 4096;

impl Node {
    /// The peer's heads for a document (from a listing, `DocHeads` or a `DocHave`).
    pub(super) fn on_doc_heads(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        reply: bool,
        out: &mut Output,
    ) {
        let Some((vault, ours, known)) = self.learn_their_heads(id, &doc, &theirs) else {
            return;
        };
        if theirs == ours {
            return;
        }
        if known {
            self.send_changes_since(id, vault, doc, &theirs, out);
        } else if !reply {
            out.send(
                id,
                &Message::DocHeads {
                    doc,
                    heads: ours,
                    reply: true,
                },
            );
        } else {
            self.send_have(id, vault, doc, out);
        }
    }

    pub(super) fn on_doc_have(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        bloom: Bloom,
        out: &mut Output,
    ) {
        let Some((vault, _, known)) = self.learn_their_heads(id, &doc, &theirs) else {
            return;
        };
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let missing: Vec<SignedChange> = if known {
            // Their heads say exactly what they have: no need for the filter.
            d.changes_since(&theirs)
        } else {
            let common: Vec<ChangeHash> =
                theirs.iter().filter(|h| d.has_change(h)).copied().collect();
            d.changes_since(&common)
                .into_iter()
                .filter(|c| {
                    automerge::Change::from_bytes(c.bytes.clone())
                        .map(|change| !bloom.contains(&change.hash()))
                        .unwrap_or(false)
                })
                .collect()
        };
        let heads = d.heads();
        send_chunked(out, id, doc, &heads, missing);
        if !known {
            self.send_have(id, vault, doc, out);
        }
    }

    /// Changes (or a whole-document snapshot) from the peer.
    pub(super) fn on_doc_data(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        data: DocData,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get_mut(&vault) else {
            return;
        };
        let applied = match data {
            DocData::Changes(changes) => v.apply_changes_from_peer(doc, changes, now_ms),
            DocData::Snapshot(bytes) => v.apply_snapshot_from_peer(doc, &bytes, now_ms),
        };
        self.after_apply(id, vault, doc, theirs, applied, out);
    }

    /// What follows applying a peer's changes: cut off a forger, store, tell the app,
    /// forward to the other sessions, and answer what the peer lacks or ask what we lack.
    pub(super) fn after_apply(
        &mut self,
        id: SessionId,
        vault: VaultId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        applied: crate::document::Applied,
        out: &mut Output,
    ) {
        if applied.aborted {
            // Nothing of the message was applied or stored; the peer is cut off.
            let reason = match applied.rejected.first() {
                Some(error) => format!("sent an invalid change: {error}"),
                None => "sent an invalid change".to_string(),
            };
            self.close_with(id, RefuseCode::ProtocolViolation, reason, out);
            return;
        }
        for error in &applied.rejected {
            out.events.push(Event::Rejected {
                session: id,
                error: error.clone(),
            });
        }
        let accepted = !applied.accepted.is_empty();
        out.batch.extend(applied.batch);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.their_heads.insert(doc, theirs.clone());
        }
        if accepted {
            out.events.push(Event::DocChanged { vault, doc });
            self.offer(vault, doc, Some(id), out);
        }
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let ours = d.heads();
        let known = theirs.iter().all(|h| d.has_change(h));
        if known {
            if ours != theirs {
                self.send_changes_since(id, vault, doc, &theirs, out);
            }
        } else {
            let missing = d.missing_deps();
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            // Ask once per reconciliation cycle: the same request again would get the
            // same answer.
            if !missing.is_empty() && s.need_sent.get(&doc) != Some(&missing) {
                s.need_sent.insert(doc, missing.clone());
                out.send(
                    id,
                    &Message::DocNeed {
                        doc,
                        hashes: missing,
                    },
                );
            }
        }
    }

    pub(super) fn on_doc_need(
        &mut self,
        id: SessionId,
        doc: DocId,
        mut hashes: Vec<ChangeHash>,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        hashes.truncate(MAX_NEED_ANSWER);
        let changes = d.changes_by_hash(&hashes);
        let heads = d.heads();
        send_chunked(out, id, doc, &heads, changes);
    }

    /// Records the peer's heads for `doc`; returns this device's heads and whether it
    /// knows all of the peer's.
    fn learn_their_heads(
        &mut self,
        id: SessionId,
        doc: &DocId,
        theirs: &[ChangeHash],
    ) -> Option<(VaultId, Vec<ChangeHash>, bool)> {
        let session = self.sessions.get_mut(&id)?;
        session.their_heads.insert(*doc, theirs.to_vec());
        let vault = session.vault?;
        let v = self.vaults.get(&vault)?;
        Some(match v.document(doc) {
            Some(d) => (vault, d.heads(), theirs.iter().all(|h| d.has_change(h))),
            None => (vault, Vec::new(), theirs.is_empty()),
        })
    }

    pub(super) fn send_changes_since(
        &mut self,
        id: SessionId,
        vault: VaultId,
        doc: DocId,
        theirs: &[ChangeHash],
        out: &mut Output,
    ) {
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let heads = d.heads();
        let limit = match self.sessions.get(&id).map(|s| s.their_snapshot_max_changes) {
            None | Some(0) => usize::MAX,
            Some(limit) => limit,
        };
        let snapshot = (theirs.is_empty() && d.change_count() >= self.config.snapshot_min_changes)
            .then(|| d.snapshot_and_rest(limit))
            .filter(|(bytes, _)| bytes.len() <= MAX_SNAPSHOT_MESSAGE_BYTES);
        if let Some((snapshot, rest)) = snapshot {
            // A device with nothing gets the compacted document and the signatures; one
            // that takes only so many changes at a time gets the rest as changes.
            out.send(
                id,
                &Message::DocSnapshot {
                    doc,
                    heads: heads.clone(),
                    snapshot,
                },
            );
            send_chunked(out, id, doc, &heads, rest);
        } else {
            let changes = d.changes_since(theirs);
            if changes.is_empty() {
                return;
            }
            send_chunked(out, id, doc, &heads, changes);
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.their_heads.insert(doc, heads);
        }
    }

    fn send_have(&mut self, id: SessionId, vault: VaultId, doc: DocId, out: &mut Output) {
        let (heads, bloom) = match self.vaults.get(&vault).and_then(|v| v.document(&doc)) {
            Some(d) => {
                let hashes: Vec<&ChangeHash> = d.applied_hashes().collect();
                self.bloom_salt = self.bloom_salt.wrapping_add(0x6D2B_79F5);
                let mut bloom = Bloom::with_capacity(hashes.len(), self.bloom_salt);
                for hash in hashes {
                    bloom.insert(hash);
                }
                (d.heads(), bloom)
            }
            None => (Vec::new(), Bloom::with_capacity(0, 0)),
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.have_sent.get(&doc) == Some(&heads) {
            return;
        }
        s.have_sent.insert(doc, heads.clone());
        out.send(
            id,
            &Message::DocHave {
                doc,
                heads,
                bloom: bloom.into_bytes(),
            },
        );
    }
}

/// What a peer sent for a document.
pub(super) enum DocData {
    Changes(Vec<SignedChange>),
    Snapshot(Vec<u8>),
}

pub(super) fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads.dedup();
    heads
}

fn send_chunked(
    out: &mut Output,
    id: SessionId,
    doc: DocId,
    heads: &[ChangeHash],
    changes: Vec<SignedChange>,
) {
    let mut chunk: Vec<SignedChange> = Vec::new();
    let mut size = 0;
    for change in changes {
        size += change.bytes.len() + 110;
        chunk.push(change);
        if size >= CHANGES_CHUNK_BYTES || chunk.len() >= MAX_ITEMS * 16 {
            out.send(
                id,
                &Message::DocChanges {
                    doc,
                    heads: heads.to_vec(),
                    changes: std::mem::take(&mut chunk),
                },
            );
            size = 0;
        }
    }
    if !chunk.is_empty() {
        out.send(
            id,
            &Message::DocChanges {
                doc,
                heads: heads.to_vec(),
                changes: chunk,
            },
        );
    }
}
