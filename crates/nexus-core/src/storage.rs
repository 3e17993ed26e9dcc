//! Storage as data: tables of ordered byte keys, atomic batches, and an in-memory store.
//!
//! The core never performs I/O. It describes what to persist as a [`Batch`] of puts and
//! deletes over the logical tables of DESIGN.md ([`Table`]), and it reads back through
//! the narrow [`Storage`] trait (a point read and a prefix scan). A backend only has to
//! apply a batch atomically: SQLite in one transaction, IndexedDB in one
//! `readwrite` transaction over the object stores named by [`Table::name`]. Async
//! backends implement the same operations with futures in the engine crate; the
//! records and keys are the same.
//!
//! [`MemoryStore`] is the backend the tests use. It can be given a capacity to exercise
//! the "storage full" path: a batch that does not fit is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::ids::{DocId, VaultId};

/// The logical tables. Keys are byte strings ordered lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// The device key. Key: `b"device"`.
    Identity,
    /// Signed membership entries. Key: vault id ‖ entry hash.
    Membership,
    /// Document metadata. Key: vault id ‖ doc id.
    Docs,
    /// Signed changes not yet folded into a snapshot. Key: vault id ‖ doc id ‖ change hash.
    Changes,
    /// Compacted documents with the signatures of every change they cover.
    /// Key: vault id ‖ doc id.
    Snapshots,
    /// Known peers: addresses, last seen, last synced heads. Key: device public key.
    Peers,
}

impl Table {
    /// Every table, for backends that create them up front.
    pub const ALL: [Table; 6] = [
        Table::Identity,
        Table::Membership,
        Table::Docs,
        Table::Changes,
        Table::Snapshots,
        Table::Peers,
    ];

    /// The table's name (SQLite table / IndexedDB object store).
    pub fn name(self) -> &'static str {
        match self {
            Table::Identity => "identity",
            Table::Membership => "membership",
            Table::Docs => "docs",
            Table::Changes => "changes",
            Table::Snapshots => "snapshots",
            Table::Peers => "peers",
        }
    }
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace a record.
    Put {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove a record if it exists.
    Delete {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
    },
}

/// Writes that must land together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a batch does nothing until a storage backend commits it"]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { table, key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(Op::Delete { table, key });
    }

    /// Appends another batch's writes after this one's.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// The writes, in order (a later write to the same key wins).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Consumes the batch.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// What a committed batch changed in one vault, so that another reader of the same
/// store (another tab of a browser profile) can read back just that instead of the
/// whole vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The vault.
    pub vault: VaultId,
    /// A membership entry was written: the vault is read again whole.
    pub membership: bool,
    /// Documents read again whole: new ones, and those whose metadata or snapshot
    /// changed or whose change records were deleted (compaction).
    pub whole: BTreeSet<DocId>,
    /// Change records added, per document, up to [`Touched::MAX_LISTED_CHANGES`] each
    /// (documents in `whole` are not listed).
    pub changes: BTreeMap<DocId, BTreeSet<automerge::ChangeHash>>,
}

impl Touched {
    /// Above this many new change records, a document is listed as whole instead.
    pub const MAX_LISTED_CHANGES: usize = 64;

    /// What `batch` changes, per vault, in vault order. Records of other tables (the
    /// identity, peers) are not part of a vault and are left out.
    pub fn of(batch: &Batch) -> Vec<Touched> {
        let mut vaults: BTreeMap<VaultId, Touched> = BTreeMap::new();
        for op in batch.ops() {
            let (Op::Put { table, key, .. } | Op::Delete { table, key }) = op;
            let Some(vault) = key
                .get(..32)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(|b| VaultId(crate::hash::Hash(b)))
            else {
                continue;
            };
            let doc = key
                .get(32..48)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(DocId);
            let touched = || Touched {
                vault,
                membership: false,
                whole: BTreeSet::new(),
                changes: BTreeMap::new(),
            };
            match (table, doc) {
                (Table::Membership, _) => {
                    vaults.entry(vault).or_insert_with(touched).membership = true
                }
                (Table::Docs | Table::Snapshots, Some(doc)) => {
                    vaults
                        .entry(vault)
                        .or_insert_with(touched)
                        .whole
                        .insert(doc);
                }
                (Table::Changes, Some(doc)) => {
                    let entry = vaults.entry(vault).or_insert_with(touched);
                    match (op, keys::change_hash(key)) {
                        (Op::Put { .. }, Some(hash)) => {
                            entry.changes.entry(doc).or_default().insert(hash);
                        }
                        _ => {
                            entry.whole.insert(doc);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out: Vec<Touched> = vaults.into_values().collect();
        for touched in &mut out {
            // Many records of one document are read faster as its whole key range than
            // one by one, and keep the message small.
            let many: Vec<DocId> = touched
                .changes
                .iter()
                .filter(|(_, hashes)| hashes.len() > Self::MAX_LISTED_CHANGES)
                .map(|(doc, _)| *doc)
                .collect();
            touched.whole.extend(many);
            let whole = touched.whole.clone();
            touched.changes.retain(|doc, _| !whole.contains(doc));
        }
        out
    }
}

/// Records read by a scan: (key, value) pairs in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A synchronous storage backend (the in-memory store and SQLite).
pub trait Storage {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads one record.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Reads every record whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Records, Self::Error>;

    /// Applies every write in `batch`, atomically and durably, or none of them.
    fn commit(&mut self, batch: Batch) -> Result<(), Self::Error>;
}

/// Record keys, built the same way for every backend.
pub mod keys {
    use super::*;
    use crate::hash::Hash;

    /// The identity record's key.
    pub const DEVICE: &[u8] = b"device";

    /// A membership entry.
    pub fn membership(vault: &VaultId, entry: &Hash) -> Vec<u8> {
        [vault.as_bytes().as_slice(), entry.as_bytes()].concat()
    }

    /// The prefix of a vault's records in the membership, docs, changes and snapshots tables.
    pub fn vault_prefix(vault: &VaultId) -> Vec<u8> {
        vault.as_bytes().to_vec()
    }

    /// A document's record in the docs and snapshots tables; also the prefix of its changes.
    pub fn doc(vault: &VaultId, doc: &DocId) -> Vec<u8> {
        [vault.as_bytes().as_slice(), doc.as_bytes()].concat()
    }

    /// A change record.
    pub fn change(vault: &VaultId, doc: &DocId, change: &automerge::ChangeHash) -> Vec<u8> {
        [vault.as_bytes().as_slice(), doc.as_bytes(), &change.0].concat()
    }

    /// The change hash in a change record's key (`None` for a key of another shape).
    pub fn change_hash(key: &[u8]) -> Option<automerge::ChangeHash> {
        key.get(48..80)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(automerge::ChangeHash)
    }
}

/// Why the in-memory store refused a write.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// The batch would take the store past its capacity; nothing was written.
    #[error(
        "storage full: the batch needs {needed} bytes, {available} of {capacity} are free; nothing was written"
    )]
    Full {
        /// Bytes the store would hold after the batch.
        needed: usize,
        /// Bytes free before the batch.
        available: usize,
        /// The store's capacity.
        capacity: usize,
    },
}

/// An in-memory [`Storage`], for tests and the simulator.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    used: usize,
    capacity: Option<usize>,
    commits: u64,
}

impl MemoryStore {
    /// An empty store without a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that refuses batches past `bytes` of keys and values.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            capacity: Some(bytes),
            ..Self::default()
        }
    }

    /// Bytes of keys and values held.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Number of records in `table`.
    pub fn count(&self, table: Table) -> usize {
        self.records.keys().filter(|(t, _)| *t == table).count()
    }

    /// Number of batches committed.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Every record, for comparing stores in tests.
    pub fn records(&self) -> &BTreeMap<(Table, Vec<u8>), Vec<u8>> {
        &self.records
    }
}

impl Storage for MemoryStore {
    type Error = MemoryStoreError;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.records.get(&(table, key.to_vec())).cloned())
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Records, Self::Error> {
        Ok(self
            .records
            .range((table, prefix.to_vec())..)
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&mut self, batch: Batch) -> Result<(), Self::Error> {
        // First compute the size the store would have, touching nothing, so that a
        // refused batch leaves the store untouched; then apply.
        let mut sizes: BTreeMap<(Table, &[u8]), Option<usize>> = BTreeMap::new();
        let mut used = self.used;
        for op in batch.ops() {
            let (table, key, new) = match op {
                Op::Put { table, key, value } => {
                    (*table, key.as_slice(), Some(key.len() + value.len()))
                }
                Op::Delete { table, key } => (*table, key.as_slice(), None),
            };
            let old = match sizes.get(&(table, key)) {
                Some(size) => *size,
                None => self
                    .records
                    .get(&(table, key.to_vec()))
                    .map(|v| key.len() + v.len()),
            };
            used = used - old.unwrap_or(0) + new.unwrap_or(0);
            sizes.insert((table, key), new);
        }
        if let Some(capacity) = self.capacity
            && used > capacity
        {
            return Err(MemoryStoreError::Full {
                needed: used,
                available: capacity.saturating_sub(self.used),
                capacity,
            });
        }
        for op in batch.into_ops() {
            match op {
                Op::Put { table, key, value } => {
                    self.records.insert((table, key), value);
                }
                Op::Delete { table, key } => {
                    self.records.remove(&(table, key));
                }
            }
        }
        self.used = used;
        self.commits += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_names_records_per_vault_and_lists_big_batches_as_whole_documents() {
        let vault = VaultId(crate::hash::Hash([7; 32]));
        let (small, big, new) = (DocId([1; 16]), DocId([2; 16]), DocId([3; 16]));
        let mut batch = Batch::new();
        let hash = |i: usize| automerge::ChangeHash([i as u8; 32]);
        batch.put(
            Table::Changes,
            keys::change(&vault, &small, &hash(0)),
            vec![],
        );
        for i in 0..=Touched::MAX_LISTED_CHANGES {
            batch.put(Table::Changes, keys::change(&vault, &big, &hash(i)), vec![]);
        }
        batch.put(Table::Docs, keys::doc(&vault, &new), vec![]);
        batch.put(Table::Changes, keys::change(&vault, &new, &hash(1)), vec![]);
        batch.put(Table::Peers, vec![9; 32], vec![]);
        batch.put(Table::Identity, keys::DEVICE.to_vec(), vec![]);
        let touched = Touched::of(&batch);
        assert_eq!(
            touched.len(),
            1,
            "peer and identity records are not a vault's"
        );
        let touched = &touched[0];
        assert_eq!(touched.vault, vault);
        assert!(!touched.membership);
        assert_eq!(touched.whole, BTreeSet::from([big, new]));
        assert_eq!(touched.changes.len(), 1);
        assert_eq!(touched.changes[&small], BTreeSet::from([hash(0)]));
        // A deleted change record (compaction) makes the document whole; an entry, the
        // membership.
        let mut batch = Batch::new();
        batch.delete(Table::Changes, keys::change(&vault, &small, &hash(0)));
        batch.put(
            Table::Membership,
            keys::membership(&vault, &crate::hash::Hash([5; 32])),
            vec![],
        );
        let touched = Touched::of(&batch);
        assert!(touched[0].membership);
        assert_eq!(touched[0].whole, BTreeSet::from([small]));
    }

    #[test]
    fn a_batch_that_does_not_fit_changes_nothing() {
        let mut store = MemoryStore::with_capacity(100);
        let mut batch = Batch::new();
        batch.put(Table::Docs, b"a".to_vec(), vec![0; 40]);
        store.commit(batch).unwrap();
        let before = store.records().clone();
        let mut batch = Batch::new();
        batch.delete(Table::Docs, b"a".to_vec());
        batch.put(Table::Docs, b"b".to_vec(), vec![0; 200]);
        assert!(matches!(
            store.commit(batch),
            Err(MemoryStoreError::Full { .. })
        ));
        assert_eq!(store.records(), &before);
    }

    #[test]
    fn scan_returns_only_the_prefix_in_order() {
        let mut store = MemoryStore::new();
        let mut batch = Batch::new();
        for key in [&b"ab2"[..], b"ab1", b"b", b"a"] {
            batch.put(Table::Changes, key.to_vec(), key.to_vec());
        }
        batch.put(Table::Docs, b"ab3".to_vec(), vec![]);
        store.commit(batch).unwrap();
        let keys: Vec<_> = store
            .scan(Table::Changes, b"ab")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"ab1".to_vec(), b"ab2".to_vec()]);
    }
}
