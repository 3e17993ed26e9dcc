//! Mailbox bundles: what changed since the last bundle, packed for a relay
//! ([`Node::bundle_since`]), and a bundle another member left there taken in
//! ([`Node::receive_bundle`]).

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;

use super::session::Phase;
use super::{Event, Node, Output};
use crate::bundle::Bundle;
use crate::document::Document;
use crate::identity::DeviceId;
use crate::ids::{DocId, VaultId};
use crate::membership::{Received, SignedEntry};

/// A bundle ready to encrypt, from [`Node::bundle_since`].
#[derive(Debug)]
pub struct PreparedBundle {
    /// The bundle.
    pub bundle: Bundle,
    /// The heads each covered document is at once the bundle is delivered: the `since`
    /// for the next one.
    pub heads: BTreeMap<DocId, Vec<ChangeHash>>,
    /// Documents skipped because their new changes alone exceed the size limit.
    pub too_large: Vec<DocId>,
}

impl Node {
    /// The devices this node has a session with for `vault` that is syncing documents.
    pub fn ready_peers(&self, vault: &VaultId) -> BTreeSet<DeviceId> {
        self.sessions
            .values()
            .filter(|s| s.vault == Some(*vault) && s.phase == Phase::Ready)
            .map(|s| s.peer)
            .collect()
    }

    /// What changed in `vault` since `since` (per document, the heads as of the last
    /// bundle), as a [`Bundle`] of at most `max_bytes` of plaintext with the vault's
    /// membership entries. `None` when no document changed. Documents that do not fit wait
    /// for the next bundle; one whose new changes alone exceed `max_bytes` is skipped (it
    /// travels by sync sessions only) and named in [`PreparedBundle::too_large`].
    pub fn bundle_since(
        &self,
        vault: &VaultId,
        since: &BTreeMap<DocId, Vec<ChangeHash>>,
        max_bytes: usize,
    ) -> Option<PreparedBundle> {
        let v = self.vaults.get(vault)?;
        // Cheap first: most calls find nothing new. Heads are kept sorted (as
        // [`Document::heads`] returns them), so they compare directly.
        let changed: Vec<&Document> = v
            .documents()
            .filter(|d| since.get(&d.id()).is_none_or(|have| *have != d.heads()))
            .collect();
        if changed.is_empty() {
            return None;
        }
        let entries: Vec<SignedEntry> = v.log().entries().into_iter().cloned().collect();
        let base: usize = 64 + entries.iter().map(|e| e.encode().len() + 5).sum::<usize>();
        let mut size = base;
        let mut prepared = PreparedBundle {
            bundle: Bundle {
                entries,
                docs: Vec::new(),
            },
            heads: BTreeMap::new(),
            too_large: Vec::new(),
        };
        for d in changed {
            let heads = d.heads();
            let have = since.get(&d.id()).map(Vec::as_slice).unwrap_or_default();
            let changes = d.changes_since(have);
            let doc_size: usize = 32 + changes.iter().map(|c| c.encoded_len() + 5).sum::<usize>();
            if base + doc_size > max_bytes {
                prepared.too_large.push(d.id());
                prepared.heads.insert(d.id(), heads);
                continue;
            }
            if size + doc_size > max_bytes {
                continue; // the next bundle
            }
            size += doc_size;
            prepared.heads.insert(d.id(), heads);
            if !changes.is_empty() {
                prepared.bundle.docs.push((d.id(), changes));
            }
        }
        (!prepared.heads.is_empty()).then_some(prepared)
    }

    /// Takes in a bundle left at a relay by another member: its entries and changes go
    /// through the same checks as a peer's (invalid ones are dropped), are stored, and are
    /// offered to the peers connected now.
    pub fn receive_bundle(&mut self, vault: VaultId, bundle: Bundle, now_ms: u64) -> Output {
        let mut out = Output::default();
        let Some(v) = self.vaults.get_mut(&vault) else {
            return out;
        };
        let before = v.log().heads();
        let ingested = v.ingest_entries(bundle.entries, Received::from_mailbox(now_ms));
        for doc in ingested.dropped.keys() {
            out.events.push(Event::DocChanged { vault, doc: *doc });
        }
        if v.log().heads() != before {
            out.extend(self.after_membership_change(vault, ingested.batch, None, now_ms));
        } else {
            out.batch.extend(ingested.batch);
        }
        for doc in ingested.revived.keys() {
            out.events.push(Event::DocChanged { vault, doc: *doc });
            self.offer(vault, *doc, None, &mut out);
        }
        for (doc, changes) in bundle.docs {
            let Some(v) = self.vaults.get_mut(&vault) else {
                break;
            };
            let applied = v.apply_changes(doc, changes, now_ms);
            out.batch.extend(applied.batch);
            if !applied.accepted.is_empty() {
                out.events.push(Event::DocChanged { vault, doc });
                self.offer(vault, doc, None, &mut out);
            }
        }
        out
    }
}
