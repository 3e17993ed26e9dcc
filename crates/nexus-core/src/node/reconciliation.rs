//! Range-based reconciliation of a vault's documents: the fingerprint of (document id,
//! heads hash) items over a range, the initiator's root range, and the answer to a peer's
//! ranges (equal ones end, small ones are listed, others split). Listed documents that
//! differ go on to [`super::doc_sync`].

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;

use super::doc_sync::sorted;
use super::{Node, Output, SessionId};
use crate::hash::Hash;
use crate::ids::{DocId, VaultId};
use crate::protocol::{MAX_RANGES, Message, Range, RangeBody};
use crate::vault::Vault;

/// A range with at most this many documents is listed rather than split.
const LIST_THRESHOLD: usize = 16;

/// A differing range is split into this many parts.
const SPLIT_FANOUT: usize = 16;

impl Node {
    /// The reconciliation fingerprint of a vault's documents: equal on two devices when
    /// (with overwhelming probability) they hold the same heads for every document.
    pub fn fingerprint(&self, vault: &VaultId) -> Option<[u8; 16]> {
        let v = self.vaults.get(vault)?;
        let digest = digest(v);
        Some(fingerprint(digest.values()).0)
    }

    pub(super) fn send_root_reconcile(&mut self, id: SessionId, now_ms: u64, out: &mut Output) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(vault) = session.vault.and_then(|v| self.vaults.get(&v)) else {
            return;
        };
        session.last_reconcile_ms = now_ms;
        // A new reconciliation cycle: earlier Bloom filters and requests may have been
        // lost, so they may be sent again.
        session.have_sent.clear();
        session.need_sent.clear();
        let items = digest(vault);
        let (fingerprint, count) = fingerprint(items.values());
        out.send(
            id,
            &Message::Reconcile {
                ranges: vec![Range {
                    lower: DocId([0; 16]),
                    upper: None,
                    body: RangeBody::Fingerprint { fingerprint, count },
                }],
            },
        );
    }

    pub(super) fn on_reconcile(&mut self, id: SessionId, ranges: Vec<Range>, out: &mut Output) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get(&vault) else {
            return;
        };
        if ranges
            .iter()
            .any(|r| r.lower == DocId([0; 16]) && r.upper.is_none())
            && let Some(s) = self.sessions.get_mut(&id)
        {
            s.have_sent.clear();
            s.need_sent.clear();
        }
        let items = digest(v);
        let mut reply: Vec<Range> = Vec::new();
        let mut listed: Vec<(DocId, Vec<ChangeHash>)> = Vec::new();
        for range in ranges {
            let mine: Vec<(&DocId, &[u8; 16])> = match range.upper {
                Some(upper) => items.range(range.lower..upper).collect(),
                None => items.range(range.lower..).collect(),
            };
            match range.body {
                RangeBody::Fingerprint {
                    fingerprint: theirs,
                    count,
                } => {
                    let (ours, our_count) = fingerprint(mine.iter().map(|(_, h)| *h));
                    if ours == theirs && our_count == count {
                        continue;
                    }
                    if mine.len() <= LIST_THRESHOLD {
                        let list = mine.iter().map(|(d, _)| (**d, heads_of(v, d))).collect();
                        reply.push(Range {
                            lower: range.lower,
                            upper: range.upper,
                            body: RangeBody::Items(list),
                        });
                    } else {
                        reply.extend(split(&mine, range.lower, range.upper));
                    }
                }
                RangeBody::Items(theirs) => {
                    let theirs: BTreeMap<DocId, Vec<ChangeHash>> = theirs.into_iter().collect();
                    let docs: BTreeSet<DocId> = theirs
                        .keys()
                        .copied()
                        .chain(mine.iter().map(|(d, _)| **d))
                        .collect();
                    for doc in docs {
                        listed.push((doc, theirs.get(&doc).cloned().unwrap_or_default()));
                    }
                }
            }
        }
        for chunk in reply.chunks(MAX_RANGES) {
            out.send(
                id,
                &Message::Reconcile {
                    ranges: chunk.to_vec(),
                },
            );
        }
        for (doc, their_heads) in listed {
            self.on_doc_heads(id, doc, sorted(their_heads), true, out);
        }
    }
}

/// The 16-byte hash of one reconciliation item.
fn item_hash(doc: &DocId, heads: &[ChangeHash]) -> [u8; 16] {
    let mut parts: Vec<&[u8]> = vec![doc.as_bytes()];
    for head in heads {
        parts.push(&head.0);
    }
    let full = Hash::of(&parts);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full.0[..16]);
    out
}

fn fingerprint<'a>(items: impl Iterator<Item = &'a [u8; 16]>) -> ([u8; 16], u64) {
    let mut fp = [0u8; 16];
    let mut count = 0;
    for item in items {
        for (a, b) in fp.iter_mut().zip(item) {
            *a ^= b;
        }
        count += 1;
    }
    (fp, count)
}

fn heads_of(v: &Vault, doc: &DocId) -> Vec<ChangeHash> {
    v.document(doc).map(|d| d.heads()).unwrap_or_default()
}

/// (document, item hash) for every document with at least one change.
fn digest(v: &Vault) -> BTreeMap<DocId, [u8; 16]> {
    v.documents()
        .filter_map(|d| {
            let heads = d.heads();
            (!heads.is_empty()).then(|| (d.id(), item_hash(&d.id(), &heads)))
        })
        .collect()
}

/// Splits a differing range into up to [`SPLIT_FANOUT`] parts with equal counts of our items.
fn split(mine: &[(&DocId, &[u8; 16])], lower: DocId, upper: Option<DocId>) -> Vec<Range> {
    let n = mine.len();
    let mut bounds: Vec<DocId> = (1..SPLIT_FANOUT)
        .map(|k| *mine[k * n / SPLIT_FANOUT].0)
        .collect();
    bounds.retain(|b| *b > lower);
    bounds.dedup();
    let mut ranges = Vec::new();
    let mut start = lower;
    let mut index = 0;
    for bound in bounds.into_iter().map(Some).chain(std::iter::once(upper)) {
        let end = index
            + mine[index..]
                .iter()
                .take_while(|(d, _)| bound.is_none_or(|b| **d < b))
                .count();
        let (fingerprint, count) = fingerprint(mine[index..end].iter().map(|(_, h)| *h));
        ranges.push(Range {
            lower: start,
            upper: bound,
            body: RangeBody::Fingerprint { fingerprint, count },
        });
        index = end;
        if let Some(b) = bound {
            start = b;
        }
    }
    ranges
}
