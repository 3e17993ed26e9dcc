//! A vault: its membership log and its documents, kept consistent with each other and
//! with storage.
//!
//! (Longer than most files here on purpose: every method of [`Vault`] keeps one
//! invariant, membership and documents and the batch that stores them agreeing, and
//! reads best beside the others that keep it.)
//!
//! [`Vault`] is the unit the engine holds per vault. Every mutating call returns the
//! [`Batch`] that persists it; the caller commits the batch before telling anyone (the
//! app, peers) about the change, which is how "a write resolves only after it is durable"
//! is kept on every backend.
//!
//! ```
//! use nexus_core::{ActorId, DeviceKey, DocId, MemoryStore, Storage, Vault};
//! use automerge::{transaction::Transactable, ROOT};
//!
//! let alice = DeviceKey::from_secret_bytes(&[1; 32]);
//! let mut store = MemoryStore::new();
//! let (mut vault, batch) = Vault::create(&alice, "Home", [0; 16], 1_000, ActorId::random()).unwrap();
//! store.commit(batch).unwrap();
//! let doc = DocId([1; 16]);
//! store.commit(vault.create_document(&alice, doc, 1_000).unwrap()).unwrap();
//! let local = vault
//!     .change(&alice, doc, |tx| tx.put(ROOT, "title", "hello").map(|_| ()))
//!     .unwrap()
//!     .unwrap();
//! store.commit(local.batch).unwrap();
//!
//! let reopened = Vault::load(&store, vault.id(), ActorId::random()).unwrap();
//! assert_eq!(reopened.document(&doc).unwrap().heads(), vault.document(&doc).unwrap().heads());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, AutomergeError, ChangeHash};
use thiserror::Error;

use crate::document::{
    Applied, ChangeError, ChangeOptions, Document, LoadError, LocalChange, SignedChange,
};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey};
use crate::ids::{DocId, VaultId};
use crate::membership::MAX_SEALED_KEYS;
use crate::membership::{
    Action, EntryError, Membership, MembershipError, MembershipLog, Received, Role, SignedEntry,
    WorkSeen,
};
use crate::sealing::{SealError, VaultKey, seal_key};
use crate::storage::{Batch, Storage, Table, Touched, keys};

/// Why a vault operation failed. Nothing was changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The membership log refused the entry.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// This device is not a member, so it may not write.
    #[error(
        "device {device} is not a member of vault {vault}; ask an admin to approve it or redeem an invite"
    )]
    NotMember {
        /// This device.
        device: DeviceId,
        /// The vault.
        vault: VaultId,
    },
    /// This device does not hold the vault.
    #[error("this device does not hold vault {vault}")]
    UnknownVault {
        /// The vault.
        vault: VaultId,
    },
    /// No offer of this vault is waiting (it was never offered, was answered already, or
    /// was pushed out by newer offers: the member offers it again when it next connects).
    #[error("vault {vault} is not waiting to be accepted")]
    NotOffered {
        /// The vault.
        vault: VaultId,
    },
    /// No document with this id in the vault.
    #[error("vault {vault} has no document {doc}")]
    UnknownDocument {
        /// The vault.
        vault: VaultId,
        /// The document id asked for.
        doc: DocId,
    },
    /// A document with this id already exists.
    #[error("vault {vault} already has a document {doc}")]
    DocumentExists {
        /// The vault.
        vault: VaultId,
        /// The document id.
        doc: DocId,
    },
    /// The edit failed.
    #[error("editing document {doc}: {source}")]
    Change {
        /// The document.
        doc: DocId,
        /// What failed.
        source: ChangeError,
    },
    /// Sealing a vault key failed.
    #[error("sealing vault {vault}'s key: {source}")]
    Seal {
        /// The vault.
        vault: VaultId,
        /// What failed.
        source: SealError,
    },
}

/// Why a vault could not be loaded from storage.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VaultLoadError<E: std::error::Error + 'static> {
    /// The backend failed.
    #[error("reading vault {vault} from storage: {source}")]
    Storage {
        /// The vault.
        vault: VaultId,
        /// The backend's error.
        source: E,
    },
    /// No genesis entry is stored for this vault.
    #[error("vault {0} is not in this store")]
    NotFound(VaultId),
    /// A stored membership entry is corrupt.
    #[error("vault {vault}: a stored membership entry is corrupt: {source}")]
    CorruptEntry {
        /// The vault.
        vault: VaultId,
        /// Why.
        source: EntryError,
    },
    /// A stored document is corrupt.
    #[error("vault {vault}: {source}")]
    Document {
        /// The vault.
        vault: VaultId,
        /// Why.
        source: LoadError,
    },
}

/// What ingesting membership entries did.
#[derive(Debug, Default)]
#[must_use = "the batch must be committed"]
pub struct Ingested {
    /// Records to commit: the new entries, and documents rewritten by revocations.
    pub batch: Batch,
    /// Hashes of the entries accepted.
    pub accepted: Vec<Hash>,
    /// Entries refused, with why.
    pub refused: Vec<MembershipError>,
    /// Changes dropped from documents because a revocation made them invalid.
    pub dropped: BTreeMap<DocId, Vec<ChangeHash>>,
    /// Changes a revocation had voided that stand again and were applied.
    pub revived: BTreeMap<DocId, Vec<ChangeHash>>,
}

/// Change hashes per document.
type ChangesOf = BTreeMap<DocId, Vec<ChangeHash>>;

/// A vault: membership log plus documents.
#[derive(Debug, Clone)]
pub struct Vault {
    log: MembershipLog,
    docs: BTreeMap<DocId, Document>,
    /// Documents first heard of from a peer that have no accepted change (and so no
    /// record) yet.
    unsaved: BTreeSet<DocId>,
    actor: ActorId,
}

fn entry_record(vault: &VaultId, entry: &SignedEntry, batch: &mut Batch) {
    batch.put(
        Table::Membership,
        keys::membership(vault, &entry.hash()),
        entry.encode(),
    );
}

impl Vault {
    /// Creates a vault with `creator` as its first admin. `actor` names this writer.
    pub fn create(
        creator: &DeviceKey,
        name: &str,
        nonce: [u8; 16],
        now_ms: u64,
        actor: ActorId,
    ) -> Result<(Self, Batch), VaultError> {
        let (log, genesis) = MembershipLog::create(creator, name, nonce, now_ms)?;
        let mut batch = Batch::new();
        entry_record(&log.vault_id(), &genesis, &mut batch);
        Ok((
            Self {
                log,
                docs: BTreeMap::new(),
                unsaved: BTreeSet::new(),
                actor,
            },
            batch,
        ))
    }

    /// Starts a replica of a vault from entries received from a member (the genesis among
    /// them). Returns the vault and the batch that stores the accepted entries.
    pub fn from_entries(
        vault: VaultId,
        entries: Vec<SignedEntry>,
        received: Received,
        actor: ActorId,
    ) -> Result<(Self, Ingested), VaultError> {
        let Some(genesis) = entries.iter().find(|e| e.hash() == vault.0).cloned() else {
            return Err(MembershipError::WrongVault {
                entry: vault.0,
                expected: vault,
                found: None,
            }
            .into());
        };
        let log = MembershipLog::from_genesis(genesis.clone())?;
        let mut this = Self {
            log,
            docs: BTreeMap::new(),
            unsaved: BTreeSet::new(),
            actor,
        };
        let mut ingested = this.ingest_entries(entries, received);
        entry_record(&vault, &genesis, &mut ingested.batch);
        Ok((this, ingested))
    }

    /// Lists the vaults in a store.
    pub fn list<S: Storage>(store: &S) -> Result<Vec<VaultId>, S::Error> {
        let mut out: Vec<VaultId> = Vec::new();
        for (key, _) in store.scan(Table::Membership, &[])? {
            if key.len() == 64 && key[..32] == key[32..] {
                let mut id = [0u8; 32];
                id.copy_from_slice(&key[..32]);
                out.push(VaultId(Hash(id)));
            }
        }
        Ok(out)
    }

    /// Loads a vault and all its documents from storage.
    pub fn load<S: Storage>(
        store: &S,
        vault: VaultId,
        actor: ActorId,
    ) -> Result<Self, VaultLoadError<S::Error>> {
        let (mut this, docs) = Self::load_membership(store, vault, actor)?;
        for id in docs {
            this.load_document(store, id)?;
        }
        Ok(this)
    }

    /// Loads a vault's membership, with none of its documents yet, and lists the
    /// documents stored for it (to read with [`Vault::load_document`]).
    pub(crate) fn load_membership<S: Storage>(
        store: &S,
        vault: VaultId,
        actor: ActorId,
    ) -> Result<(Self, Vec<DocId>), VaultLoadError<S::Error>> {
        let storage = |source| VaultLoadError::Storage { vault, source };
        let corrupt = |source| VaultLoadError::CorruptEntry { vault, source };
        let mut entries = Vec::new();
        for (_, value) in store
            .scan(Table::Membership, &keys::vault_prefix(&vault))
            .map_err(storage)?
        {
            entries.push(SignedEntry::decode(&value).map_err(corrupt)?);
        }
        let Some(genesis) = entries.iter().find(|e| e.hash() == vault.0).cloned() else {
            return Err(VaultLoadError::NotFound(vault));
        };
        let mut log =
            MembershipLog::from_genesis(genesis).map_err(|_| VaultLoadError::NotFound(vault))?;
        let (_, refused) = log.insert_many(entries, Received::STORED);
        // Stored entries were accepted once; one refused now means the store was edited.
        if let Some(MembershipError::Entry(e)) = refused.into_iter().next() {
            return Err(corrupt(e));
        }
        let mut docs: BTreeSet<DocId> = BTreeSet::new();
        // A document is loaded when any record of it is stored: its metadata, or a change
        // or snapshot stored before its metadata was (a change made here while a peer's
        // snapshot of it was still being checked, then a restart).
        for table in [Table::Docs, Table::Changes, Table::Snapshots] {
            for (key, _) in store
                .scan(table, &keys::vault_prefix(&vault))
                .map_err(storage)?
            {
                if let Some(doc) = key.get(32..48).and_then(|k| <[u8; 16]>::try_from(k).ok()) {
                    docs.insert(DocId(doc));
                }
            }
        }
        let docs: Vec<DocId> = docs.into_iter().collect();
        let this = Self {
            log,
            docs: BTreeMap::new(),
            unsaved: BTreeSet::new(),
            actor,
        };
        Ok((this, docs))
    }

    /// Reads one stored document into this vault (part of loading it).
    pub(crate) fn load_document<S: Storage>(
        &mut self,
        store: &S,
        id: DocId,
    ) -> Result<(), VaultLoadError<S::Error>> {
        let doc = Self::read_document(store, self.id(), id, self.actor.clone())?;
        self.docs.insert(id, doc);
        Ok(())
    }

    /// Reads one document's snapshot and change records.
    fn read_document<S: Storage>(
        store: &S,
        vault: VaultId,
        id: DocId,
        actor: ActorId,
    ) -> Result<Document, VaultLoadError<S::Error>> {
        let storage = |source| VaultLoadError::Storage { vault, source };
        let doc_key = keys::doc(&vault, &id);
        let snapshot = store.get(Table::Snapshots, &doc_key).map_err(storage)?;
        let changes: Vec<Vec<u8>> = store
            .scan(Table::Changes, &doc_key)
            .map_err(storage)?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Document::load(vault, id, actor, snapshot.as_deref(), &changes)
            .map_err(|source| VaultLoadError::Document { vault, source })
    }

    /// Takes in what another writer of the same store committed to this vault's
    /// documents, as [`Touched`] describes it (a membership change needs
    /// [`Vault::load`] instead). Documents in `touched.whole` are read again whole;
    /// for the others only the listed change records are read and applied (documents
    /// not held here are skipped: [`crate::node::Node::what_to_read`] lists them whole).
    /// Returns the documents whose heads moved.
    pub fn take_in_stored<S: Storage>(
        &mut self,
        store: &S,
        touched: &Touched,
    ) -> Result<Vec<DocId>, VaultLoadError<S::Error>> {
        let vault = self.id();
        let storage = |source| VaultLoadError::Storage { vault, source };
        let mut moved = Vec::new();
        for id in &touched.whole {
            if store
                .get(Table::Docs, &keys::doc(&vault, id))
                .map_err(storage)?
                .is_none()
            {
                continue;
            }
            let fresh = Self::read_document(store, vault, *id, self.actor.clone())?;
            if self.docs.get(id).map(Document::heads) != Some(fresh.heads()) {
                moved.push(*id);
            }
            self.docs.insert(*id, fresh);
        }
        for (id, hashes) in &touched.changes {
            // A document not held here needs reading whole (`Node::what_to_read`).
            let Some(doc) = self.docs.get_mut(id) else {
                continue;
            };
            let mut records = Vec::with_capacity(hashes.len());
            for hash in hashes {
                if let Some(bytes) = store
                    .get(Table::Changes, &keys::change(&vault, id, hash))
                    .map_err(storage)?
                {
                    records.push(bytes);
                }
            }
            let before = doc.heads();
            doc.take_in_stored(&records)
                .map_err(|source| VaultLoadError::Document { vault, source })?;
            if doc.heads() != before {
                moved.push(*id);
            }
        }
        Ok(moved)
    }

    /// The vault id.
    pub fn id(&self) -> VaultId {
        self.log.vault_id()
    }

    /// Current membership.
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }

    /// The membership log.
    pub fn log(&self) -> &MembershipLog {
        &self.log
    }

    /// The name under which one device can be found at a relay's rendezvous point, so
    /// that the members who approved it by its DeviceId can reach it before it holds the
    /// vault. (The relay sees the device's id on its connection anyway.)
    pub fn device_rendezvous_namespace(device: &DeviceId) -> String {
        let hash = crate::hash::Hash::of(&[b"nexus/rendezvous/device/v1", device.public_key()]);
        format!("nexus-device-{}", bs58::encode(&hash.0[..20]).into_string())
    }

    /// The name under which `device` registers this vault at a relay's rendezvous point:
    /// derived from the newest vault key it holds ([`VaultKey::rendezvous_name`]), so the
    /// name changes with every rotation and a revoked device, which never gets the key made
    /// after its revocation, cannot find the members any more. Before the vault has a key
    /// (or while this device holds none), from the vault id and the genesis entry's random
    /// nonce, which only members hold. Either way the relay learns neither the vault id nor
    /// anything that names it.
    pub fn rendezvous_namespace(&self, device: &DeviceKey) -> String {
        self.rendezvous_lookups(device)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.genesis_rendezvous_name())
    }

    /// The names under which `device` looks the vault's members up: those of the two
    /// newest keys it holds (a member that missed the latest rotation still registers
    /// under the one before), or the genesis name while it holds no key.
    pub fn rendezvous_lookups(&self, device: &DeviceKey) -> Vec<String> {
        let id = self.id();
        let names: Vec<String> = self
            .held_keys(device)
            .iter()
            .take(2)
            .map(|(_, key)| key.rendezvous_name(&id))
            .collect();
        if names.is_empty() {
            vec![self.genesis_rendezvous_name()]
        } else {
            names
        }
    }

    fn genesis_rendezvous_name(&self) -> String {
        let id = self.id();
        let nonce = match self.log.get(&id.0).map(|e| &e.entry().action) {
            Some(crate::membership::Action::Genesis { nonce, .. }) => *nonce,
            _ => [0; 16],
        };
        let hash = crate::hash::Hash::of(&[b"nexus/rendezvous/v1", id.as_bytes(), &nonce]);
        format!("nexus-{}", bs58::encode(&hash.0[..20]).into_string())
    }

    /// The documents.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        self.docs.values()
    }

    /// One document.
    pub fn document(&self, id: &DocId) -> Option<&Document> {
        self.docs.get(id)
    }

    /// Keeps the vault's key current (membership rules 9 and 10) when `admin` is an
    /// admin: makes a key when there is none (a new vault, or a revocation since the last
    /// key), and seals the current key to members who lack it. Returns an empty batch when
    /// nothing is needed or `admin` is not an admin.
    pub fn maintain_keys(&mut self, admin: &DeviceKey, now_ms: u64) -> Result<Batch, VaultError> {
        let me = admin.device_id();
        let vault = self.id();
        let membership = self.log.membership();
        if !membership.is_admin(&me) {
            return Ok(Batch::new());
        }
        let seal_error = |source| VaultError::Seal { vault, source };
        // A current key that no admin holds a copy of (its maker was demoted) cannot be
        // shared: replace it. So is one whose copies to this admin all fail to open or to
        // match the key's commitment (a hostile admin's bad key).
        // So is one that left this admin out though it was a member when the key was made
        // (a hostile admin's key sealed to itself alone would stall every deposit).
        let admitted = membership.members().get(&me).map(|m| m.admitted_by);
        let bad_for_me = |hash: &Hash, info: &crate::membership::KeyInfo| {
            if info.sealed.contains_key(&me) {
                info.open_for(&vault, admin).is_none()
            } else {
                admitted.is_some_and(|a| self.log.ancestry(&[*hash]).contains(&a))
            }
        };
        let current = membership.current_key().filter(|(hash, info)| {
            info.sealed.keys().any(|holder| membership.is_admin(holder)) && !bad_for_me(hash, info)
        });
        match current {
            None => {
                let generation = membership
                    .keys()
                    .values()
                    .map(|k| k.generation.saturating_add(1))
                    .max()
                    .unwrap_or(0);
                let key = VaultKey::derive(admin, &vault, &self.log.heads(), generation);
                let mut sealed = membership
                    .members()
                    .keys()
                    .map(|device| seal_key(&key, &vault, device))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(seal_error)?;
                // An entry carries at most MAX_SEALED_KEYS copies: the rest follow in
                // ShareKey entries.
                let rest = sealed.split_off(sealed.len().min(MAX_SEALED_KEYS));
                let new_key = self.log.author(
                    admin,
                    Action::NewKey {
                        generation,
                        commitment: key.commitment(&vault),
                        sealed,
                    },
                    now_ms,
                )?;
                let mut batch = self.record_entry(&new_key);
                for chunk in rest.chunks(MAX_SEALED_KEYS) {
                    let share = Action::ShareKey {
                        key: new_key.hash(),
                        generation,
                        sealed: chunk.to_vec(),
                    };
                    let entry = self.log.author(admin, share, now_ms)?;
                    batch.extend(self.record_entry(&entry));
                }
                Ok(batch)
            }
            Some((hash, info)) => {
                // Only an admin holding the key can share it; others wait for one who does.
                let Some(key) = info.open_for(&vault, admin) else {
                    return Ok(Batch::new());
                };
                // Copies are the same whoever seals them: a member whose copies are all
                // different from the right one (a hostile admin's) gets the right one.
                let mut sealed = Vec::new();
                for device in membership.members().keys() {
                    let copy = seal_key(&key, &vault, device).map_err(seal_error)?;
                    if !info.holds(device, &copy) {
                        sealed.push(copy);
                    }
                }
                let generation = info.generation;
                let mut batch = Batch::new();
                for chunk in sealed.chunks(MAX_SEALED_KEYS) {
                    let share = Action::ShareKey {
                        key: hash,
                        generation,
                        sealed: chunk.to_vec(),
                    };
                    let entry = self.log.author(admin, share, now_ms)?;
                    batch.extend(self.record_entry(&entry));
                }
                Ok(batch)
            }
        }
    }

    /// The vault key to encrypt with now, opened with this device's key, and the hash of
    /// the entry that made it. `None` while there is no current key or this device has no
    /// copy of it yet.
    pub fn current_key(&self, device: &DeviceKey) -> Option<(Hash, VaultKey)> {
        let (hash, info) = self.membership().current_key()?;
        info.open_for(&self.id(), device).map(|key| (hash, key))
    }

    /// The current key sealed to each member, recipients left out: what a member leaves
    /// under the previous keys for members who missed the rotation. `None` before the
    /// vault has a key.
    pub fn key_notice(&self) -> Option<crate::bundle::KeyNotice> {
        let (_, info) = self.membership().current_key()?;
        Some(crate::bundle::KeyNotice {
            copies: info
                .sealed
                .values()
                .flatten()
                .map(|(_, c)| c.blind())
                .collect(),
        })
    }

    /// Every vault key this device holds a copy of, newest generation first: what it
    /// reads mailbox bundles with.
    pub fn held_keys(&self, device: &DeviceKey) -> Vec<(Hash, VaultKey)> {
        let mut keys: Vec<(Hash, VaultKey)> = self
            .membership()
            .keys()
            .iter()
            .filter_map(|(hash, info)| info.open_for(&self.id(), device).map(|key| (*hash, key)))
            .collect();
        keys.sort_by_key(|(_, key)| std::cmp::Reverse(key.generation()));
        keys
    }

    fn record_entry(&self, entry: &SignedEntry) -> Batch {
        let mut batch = Batch::new();
        entry_record(&self.id(), entry, &mut batch);
        batch
    }

    /// An admin approves a device by its id.
    pub fn add_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        role: Role,
        now_ms: u64,
    ) -> Result<Batch, VaultError> {
        let entry = self.log.add_device(admin, device, role, now_ms)?;
        let mut batch = self.record_entry(&entry);
        // A device admitted again: what its revocation voided may stand again.
        let (rewrites, _, _) = self.enforce_revocations();
        batch.extend(rewrites);
        Ok(batch)
    }

    /// An admin creates a one-time invite for `secret`. Returns the invite's entry hash
    /// (which, with the secret and the vault id, makes the invite code) and the batch.
    pub fn create_invite(
        &mut self,
        admin: &DeviceKey,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(Hash, Batch), VaultError> {
        let entry = self
            .log
            .create_invite(admin, secret, role, expires_at_ms, now_ms)?;
        Ok((entry.hash(), self.record_entry(&entry)))
    }

    /// An admin cancels the invite made by entry `invite`.
    pub fn cancel_invite(
        &mut self,
        admin: &DeviceKey,
        invite: Hash,
        now_ms: u64,
    ) -> Result<Batch, VaultError> {
        let entry = self.log.cancel_invite(admin, invite, now_ms)?;
        Ok(self.record_entry(&entry))
    }

    /// This (new) device redeems an invite. Returns the entry to hand to a member.
    pub fn redeem_invite(
        &mut self,
        newcomer: &DeviceKey,
        invite: Hash,
        secret: &[u8; 32],
        now_ms: u64,
    ) -> Result<(SignedEntry, Batch), VaultError> {
        let entry = self.log.redeem_invite(newcomer, invite, secret, now_ms)?;
        let batch = self.record_entry(&entry);
        Ok((entry, batch))
    }

    /// An admin revokes a device. The entry records how much of the device's work each
    /// document here holds ([`crate::WorkSeen`]); the device's later changes, wherever
    /// they turn up, are refused.
    pub fn revoke_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<Batch, VaultError> {
        let seen: WorkSeen = self
            .docs
            .values()
            .map(|d| (d.id(), d.work_seen(&device)))
            .filter(|(_, actors)| !actors.is_empty())
            .collect();
        let entry = self.log.revoke_device(admin, device, seen, now_ms)?;
        let mut batch = self.record_entry(&entry);
        let (rewrites, _, _) = self.enforce_revocations();
        batch.extend(rewrites);
        Ok(batch)
    }

    /// Brings the documents in line with the membership: drops (holds aside) what
    /// revocations void, and applies again what was held aside and stands now. Returns
    /// the batch, and per document the changes dropped and the changes applied again.
    fn enforce_revocations(&mut self) -> (Batch, ChangesOf, ChangesOf) {
        let mut batch = Batch::new();
        let mut dropped = BTreeMap::new();
        let mut revived = BTreeMap::new();
        let membership = self.log.membership().clone();
        for doc in self.docs.values_mut() {
            if let Some((rewrite, hashes)) = doc.enforce_revocations(&membership) {
                batch.extend(rewrite);
                dropped.insert(doc.id(), hashes);
            }
            let again = doc.revive_voided(&membership);
            if !again.accepted.is_empty() {
                batch.extend(again.batch);
                revived.insert(doc.id(), again.accepted);
            }
        }
        (batch, dropped, revived)
    }

    /// Takes membership entries from a peer (any order). Applies revocations they carry to
    /// the documents.
    pub fn ingest_entries(
        &mut self,
        entries: impl IntoIterator<Item = SignedEntry>,
        received: Received,
    ) -> Ingested {
        let entries: Vec<SignedEntry> = entries.into_iter().collect();
        let (accepted, refused) = self.log.insert_many(entries.iter().cloned(), received);
        let mut ingested = Ingested {
            accepted,
            refused,
            ..Ingested::default()
        };
        let accepted: std::collections::HashSet<&Hash> = ingested.accepted.iter().collect();
        for entry in &entries {
            if accepted.contains(&entry.hash()) {
                entry_record(&self.id(), entry, &mut ingested.batch);
            }
        }
        if !ingested.accepted.is_empty() {
            let (rewrites, dropped, revived) = self.enforce_revocations();
            ingested.batch.extend(rewrites);
            ingested.dropped = dropped;
            ingested.revived = revived;
        }
        ingested
    }

    fn require_member(&self, device: DeviceId) -> Result<(), VaultError> {
        if self.membership().is_member(&device) {
            Ok(())
        } else {
            Err(VaultError::NotMember {
                device,
                vault: self.id(),
            })
        }
    }

    /// Creates an empty document with a caller-chosen id (random, see [`DocId::random`]).
    pub fn create_document(
        &mut self,
        key: &DeviceKey,
        id: DocId,
        now_ms: u64,
    ) -> Result<Batch, VaultError> {
        self.require_member(key.device_id())?;
        if self.unsaved.remove(&id)
            && let Some(doc) = self.docs.get(&id)
        {
            // Heard of from a peer but not stored yet: creating it stores it.
            return Ok(doc.meta_record(now_ms));
        }
        if self.docs.contains_key(&id) {
            return Err(VaultError::DocumentExists {
                vault: self.id(),
                doc: id,
            });
        }
        let doc = Document::new(self.id(), id, self.actor.clone());
        let batch = doc.meta_record(now_ms);
        self.docs.insert(id, doc);
        Ok(batch)
    }

    /// Edits a document as `key`'s device: one signed change and the batch storing it.
    pub fn change<F>(
        &mut self,
        key: &DeviceKey,
        doc: DocId,
        edit: F,
    ) -> Result<Option<LocalChange>, VaultError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        self.change_with(key, doc, &ChangeOptions::default(), edit)
    }

    /// [`Vault::change`] on given heads and with a message ([`ChangeOptions`]).
    pub fn change_with<F>(
        &mut self,
        key: &DeviceKey,
        doc: DocId,
        options: &ChangeOptions,
        edit: F,
    ) -> Result<Option<LocalChange>, VaultError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        self.require_member(key.device_id())?;
        let vault = self.id();
        let document = self
            .docs
            .get_mut(&doc)
            .ok_or(VaultError::UnknownDocument { vault, doc })?;
        let mut local = document
            .change_with(key, options, edit)
            .map_err(|source| VaultError::Change { doc, source })?;
        if let Some(local) = local.as_mut()
            && self.unsaved.remove(&doc)
        {
            // The first change stores the document a peer told us about.
            let mut batch = document.meta_record(0);
            batch.extend(std::mem::take(&mut local.batch));
            local.batch = batch;
        }
        Ok(local)
    }

    /// Checks and applies changes received for a document, creating it if it is new here.
    pub fn apply_changes(
        &mut self,
        doc: DocId,
        changes: Vec<SignedChange>,
        now_ms: u64,
    ) -> Applied {
        self.apply_changes_with(doc, changes, now_ms, false)
    }

    /// Like [`Vault::apply_changes`], but when any change is malformed, forged or by a
    /// stranger, nothing of the batch is applied (see [`Applied::aborted`]): what a session
    /// does with a hostile peer's message.
    pub fn apply_changes_from_peer(
        &mut self,
        doc: DocId,
        changes: Vec<SignedChange>,
        now_ms: u64,
    ) -> Applied {
        self.apply_changes_with(doc, changes, now_ms, true)
    }

    /// Takes a peer's snapshot of a document (see [`Document::apply_snapshot`]).
    pub fn apply_snapshot_from_peer(
        &mut self,
        doc: DocId,
        snapshot: &[u8],
        now_ms: u64,
    ) -> Applied {
        self.apply_with(doc, now_ms, |document, membership| {
            document.apply_snapshot(snapshot, membership)
        })
    }

    /// Takes a peer's snapshot that was parsed and verified ahead (see
    /// [`crate::document::StagedSnapshot`]).
    pub fn apply_staged_snapshot_from_peer(
        &mut self,
        staged: crate::document::StagedSnapshot,
        now_ms: u64,
    ) -> Applied {
        let doc = staged.doc();
        self.apply_with(doc, now_ms, |document, membership| {
            document.apply_staged_snapshot(staged, membership)
        })
    }

    fn apply_changes_with(
        &mut self,
        doc: DocId,
        changes: Vec<SignedChange>,
        now_ms: u64,
        all_or_nothing: bool,
    ) -> Applied {
        self.apply_with(doc, now_ms, |document, membership| {
            document.apply_with(changes, membership, all_or_nothing)
        })
    }

    fn apply_with(
        &mut self,
        doc: DocId,
        now_ms: u64,
        apply: impl FnOnce(&mut Document, &Membership) -> Applied,
    ) -> Applied {
        let vault = self.id();
        let actor = self.actor.clone();
        let document = self.docs.entry(doc).or_insert_with(|| {
            // Not stored until it holds an accepted change.
            self.unsaved.insert(doc);
            Document::new(vault, doc, actor)
        });
        let mut applied = apply(document, self.log.membership());
        if self.unsaved.contains(&doc) {
            if !applied.accepted.is_empty() {
                self.unsaved.remove(&doc);
                let mut batch = document.meta_record(now_ms);
                batch.extend(std::mem::take(&mut applied.batch));
                applied.batch = batch;
            } else {
                self.docs.remove(&doc);
                self.unsaved.remove(&doc);
            }
        }
        applied
    }

    /// Compacts one document. See [`Document::compact`].
    pub fn compact(&mut self, doc: DocId) -> Result<Batch, VaultError> {
        self.compact_with_unstored(doc, &[])
    }

    /// Compacts one document some of whose applied changes were never stored. See
    /// [`Document::compact_with_unstored`].
    pub fn compact_with_unstored(
        &mut self,
        doc: DocId,
        unstored: &[ChangeHash],
    ) -> Result<Batch, VaultError> {
        let vault = self.id();
        self.docs
            .get_mut(&doc)
            .map(|d| d.compact_with_unstored(unstored))
            .ok_or(VaultError::UnknownDocument { vault, doc })
    }
}
