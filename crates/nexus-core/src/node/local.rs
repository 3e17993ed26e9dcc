//! Operations of this device's own: creating vaults and documents, edits, membership
//! changes made by an admin, compaction, and taking in what another writer of the
//! shared store (another tab or process) committed.

use std::collections::BTreeMap;

use automerge::{AutomergeError, ChangeHash};

use super::{Event, Node, Output};
use crate::document::{ChangeOptions, Document};
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::{DocId, VaultId};
use crate::membership::Role;
use crate::storage::{Batch, Storage, Touched};
use crate::vault::{Vault, VaultError, VaultLoadError};

impl Node {
    /// Creates a vault with this device as its first admin.
    pub fn create_vault(
        &mut self,
        name: &str,
        nonce: [u8; 16],
        now_ms: u64,
    ) -> Result<(VaultId, Output), VaultError> {
        let (mut vault, mut batch) =
            Vault::create(&self.key, name, nonce, now_ms, self.actor.clone())?;
        batch.extend(vault.maintain_keys(&self.key, now_ms)?);
        let id = vault.id();
        self.vaults.insert(id, vault);
        Ok((
            id,
            Output {
                batch,
                ..Output::default()
            },
        ))
    }

    fn vault_mut(&mut self, id: &VaultId) -> Result<&mut Vault, VaultError> {
        self.vaults
            .get_mut(id)
            .ok_or(VaultError::UnknownVault { vault: *id })
    }

    /// Creates an empty document.
    pub fn create_document(
        &mut self,
        vault: VaultId,
        doc: DocId,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self.vault_mut(&vault)?.create_document(&key, doc, now_ms)?;
        Ok(Output {
            batch,
            ..Output::default()
        })
    }

    /// Edits a document: one signed change, stored, then offered to every peer.
    pub fn change<F>(&mut self, vault: VaultId, doc: DocId, edit: F) -> Result<Output, VaultError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        self.change_with(vault, doc, &ChangeOptions::default(), edit)
            .map(|(out, _)| out)
    }

    /// [`Node::change`] on given heads and with a message ([`ChangeOptions`]); also
    /// returns the new change's hash (`None`: the edit changed nothing).
    pub fn change_with<F>(
        &mut self,
        vault: VaultId,
        doc: DocId,
        options: &ChangeOptions,
        edit: F,
    ) -> Result<(Output, Option<ChangeHash>), VaultError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        let key = self.key.clone();
        let mut out = Output::default();
        let local = self
            .vault_mut(&vault)?
            .change_with(&key, doc, options, edit)?;
        let hash = local.map(|local| {
            out.batch = local.batch;
            local.hash
        });
        if hash.is_some() {
            self.offer(vault, doc, None, &mut out);
        }
        Ok((out, hash))
    }

    /// An admin approves a device by id.
    pub fn add_device(
        &mut self,
        vault: VaultId,
        device: DeviceId,
        role: Role,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let v = self.vault_mut(&vault)?;
        let before: Vec<(DocId, Vec<ChangeHash>)> =
            v.documents().map(|d| (d.id(), d.heads())).collect();
        let batch = v.add_device(&key, device, role, now_ms)?;
        let mut out = self.after_membership_change(vault, batch, None, now_ms);
        // Work its revocation had voided may stand again: news to every peer.
        for (doc, heads) in before {
            let moved = self
                .vault(&vault)
                .and_then(|v| v.document(&doc))
                .is_some_and(|d| d.heads() != heads);
            if moved {
                out.events.push(Event::DocChanged { vault, doc });
                self.offer(vault, doc, None, &mut out);
            }
        }
        Ok(out)
    }

    /// An admin creates an invite. Returns the invite's entry hash.
    pub fn create_invite(
        &mut self,
        vault: VaultId,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(Hash, Output), VaultError> {
        let key = self.key.clone();
        let (hash, batch) =
            self.vault_mut(&vault)?
                .create_invite(&key, secret, role, expires_at_ms, now_ms)?;
        Ok((
            hash,
            self.after_membership_change(vault, batch, None, now_ms),
        ))
    }

    /// An admin cancels an invite: a redemption that has not reached a member by then
    /// admits nobody.
    pub fn cancel_invite(
        &mut self,
        vault: VaultId,
        invite: Hash,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self
            .vault_mut(&vault)?
            .cancel_invite(&key, invite, now_ms)?;
        Ok(self.after_membership_change(vault, batch, None, now_ms))
    }

    /// An admin revokes a device; its sessions here are closed.
    pub fn revoke_device(
        &mut self,
        vault: VaultId,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self
            .vault_mut(&vault)?
            .revoke_device(&key, device, now_ms)?;
        Ok(self.after_membership_change(vault, batch, None, now_ms))
    }

    /// Takes in a vault as another process left it in the shared store (loaded with
    /// [`Vault::load`]), keeping this node's sessions: new membership entries and document
    /// changes are offered to the peers at once, as if made here. A vault this node did not
    /// hold is added and its sessions can then be opened.
    pub fn refresh_vault(&mut self, fresh: Vault, now_ms: u64) -> Output {
        let id = fresh.id();
        let mut out = Output::default();
        let Some(old) = self.vaults.get(&id) else {
            self.vaults.insert(id, fresh);
            out.events.push(Event::VaultJoined { vault: id });
            return out;
        };
        let membership_changed = old.log().heads() != fresh.log().heads();
        let changed_docs: Vec<DocId> = fresh
            .documents()
            .filter(|d| old.document(&d.id()).map(Document::heads) != Some(d.heads()))
            .map(Document::id)
            .collect();
        if !membership_changed && changed_docs.is_empty() {
            return out;
        }
        self.vaults.insert(id, fresh);
        if membership_changed {
            out.extend(self.after_membership_change(id, Batch::new(), None, now_ms));
        }
        for doc in changed_docs {
            self.offer(id, doc, None, &mut out);
        }
        out
    }

    /// What to read back for `touched` (another tab's commit): what it names, widened
    /// to the whole vault when this node does not hold the vault, and to the whole
    /// document when this node does not hold the document or still has changes of it
    /// waiting for others (so that a message this tab missed is made up for).
    pub fn what_to_read(&self, touched: &Touched) -> Touched {
        let mut read = touched.clone();
        let Some(vault) = self.vaults.get(&touched.vault) else {
            read.membership = true;
            return read;
        };
        let partial: Vec<DocId> = read
            .changes
            .keys()
            .filter(|id| vault.document(id).is_none_or(Document::has_waiting))
            .copied()
            .collect();
        for id in partial {
            read.changes.remove(&id);
            read.whole.insert(id);
        }
        read
    }

    /// Takes in what another writer of the shared store (another tab) committed, as
    /// [`Touched`] describes it: only the documents and change records it names are read
    /// back, unless the membership changed or the vault is new here, when the vault is
    /// read whole as [`Node::refresh_vault`] does. Moved documents are offered to the
    /// peers and reported as [`Event::DocChanged`].
    pub fn take_in_stored<S: Storage>(
        &mut self,
        store: &S,
        touched: &Touched,
        now_ms: u64,
    ) -> Result<Output, VaultLoadError<S::Error>> {
        let id = touched.vault;
        let moved = match self.vaults.get_mut(&id) {
            Some(vault) if !touched.membership => vault.take_in_stored(store, touched)?,
            _ => {
                let before: BTreeMap<DocId, Vec<ChangeHash>> = self
                    .vaults
                    .get(&id)
                    .map(|v| v.documents().map(|d| (d.id(), d.heads())).collect())
                    .unwrap_or_default();
                let fresh = Vault::load(store, id, self.actor.clone())?;
                let moved = fresh
                    .documents()
                    .filter(|d| before.get(&d.id()) != Some(&d.heads()))
                    .map(Document::id)
                    .collect();
                let mut out = self.refresh_vault(fresh, now_ms);
                out.events.extend(moved_events(id, moved));
                return Ok(out);
            }
        };
        let mut out = Output::default();
        for doc in &moved {
            self.offer(id, *doc, None, &mut out);
        }
        out.events.extend(moved_events(id, moved));
        Ok(out)
    }

    /// Compacts a document's storage.
    pub fn compact(&mut self, vault: VaultId, doc: DocId) -> Result<Output, VaultError> {
        let batch = self.vault_mut(&vault)?.compact(doc)?;
        Ok(Output {
            batch,
            ..Output::default()
        })
    }
}

fn moved_events(vault: VaultId, docs: Vec<DocId>) -> impl Iterator<Item = Event> {
    docs.into_iter()
        .map(move |doc| Event::DocChanged { vault, doc })
}
