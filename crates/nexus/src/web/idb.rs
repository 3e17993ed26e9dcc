//! IndexedDB storage for the browser, with the same logical layout as SQLite: one object
//! store per [`Table`] (named by [`Table::name`]), binary keys (IndexedDB orders them
//! byte by byte, like SQLite's BLOB keys) and binary values.
//!
//! The core reads storage synchronously, and IndexedDB is asynchronous, so an [`IdbStore`]
//! loads every record into a [`MemoryStore`] when it opens and serves reads from it
//! ([`IdbStore::cache`]). [`IdbStore::commit`] writes a [`Batch`] in one `readwrite`
//! transaction over the object stores it touches, and resolves only after the browser
//! reports the transaction complete; only then does the cache take the batch, so what the
//! engine reads is always what is durable. The device key lives in the `identity` store
//! and is created on first open. A quota error, an upgrade blocked by another tab and an
//! aborted transaction each come back as their own [`IdbError`].

use std::pin::pin;
use std::time::Duration;

use futures::future::{Either, select};
use js_sys::Uint8Array;
use nexus_core::storage::keys;
use nexus_core::{Batch, DeviceKey, MemoryStore, Op, Storage, Table, Touched};
use rexie::{ObjectStore, Rexie, TransactionMode};
use thiserror::Error;
use wasm_bindgen::{JsCast, JsValue};

/// The IndexedDB schema version: bump it, with an upgrade step, when the layout changes.
pub const IDB_SCHEMA_VERSION: u32 = 1;
/// How long opening waits for other tabs to let an upgrade through.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEVICE_KEY: &[u8] = b"device";

/// Why an IndexedDB operation failed. Nothing of a failed commit was stored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdbError {
    /// The browser offers no IndexedDB (private mode in some browsers, or not a window or
    /// worker).
    #[error("IndexedDB is not available here: {0}")]
    Unavailable(String),
    /// Another tab holds an older version of the database open and does not let go.
    #[error(
        "opening the IndexedDB database `{name}` is blocked: another tab of this app holds an older version open; close it and reload"
    )]
    Blocked {
        /// The database.
        name: String,
    },
    /// The site's storage quota is used up.
    #[error(
        "the browser's storage quota for this site is used up ({0}); free some space or ask for persistent storage"
    )]
    QuotaExceeded(String),
    /// The browser aborted the transaction; nothing of the batch was stored. The text
    /// says how much storage the site uses, when the browser tells.
    #[error("the browser aborted the IndexedDB transaction; nothing of it was stored{0}")]
    Aborted(String),
    /// Another IndexedDB failure.
    #[error("IndexedDB {operation} failed: {reason}")]
    Failed {
        /// What was being done.
        operation: &'static str,
        /// The browser's message.
        reason: String,
    },
    /// A stored record is not what this version of Nexus wrote.
    #[error("a stored record in `{table}` is corrupt: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn failed(operation: &'static str) -> impl Fn(rexie::Error) -> IdbError {
    move |e| {
        let reason = e.to_string();
        if reason.contains("QuotaExceeded") {
            IdbError::QuotaExceeded(reason)
        } else {
            IdbError::Failed { operation, reason }
        }
    }
}

/// Puts the records of `table` in `range` (all of them for `None`) into `batch`: two
/// requests (`getAllKeys` and `getAll` over the same range, in one transaction, so the
/// two lists line up) rather than a cursor step per record.
async fn read_into(
    tx: &rexie::Transaction,
    table: Table,
    range: Option<rexie::KeyRange>,
    batch: &mut Batch,
) -> Result<(), IdbError> {
    let store = tx.store(table.name()).map_err(failed("read"))?;
    let keys = store
        .get_all_keys(range.clone(), None)
        .await
        .map_err(failed("read"))?;
    let values = store.get_all(range, None).await.map_err(failed("read"))?;
    let corrupt = |reason: &str| IdbError::Corrupt {
        table: table.name(),
        reason: reason.into(),
    };
    if keys.len() != values.len() {
        return Err(corrupt("the keys and values read do not line up"));
    }
    for (key, value) in keys.iter().zip(&values) {
        let (Some(key), Some(value)) = (to_vec(key), to_vec(value)) else {
            return Err(corrupt("a key or value is not binary"));
        };
        batch.put(table, key, value);
    }
    Ok(())
}

fn cache_error(e: nexus_core::MemoryStoreError) -> IdbError {
    IdbError::Failed {
        operation: "reload",
        reason: e.to_string(),
    }
}

fn bytes(value: &[u8]) -> JsValue {
    Uint8Array::from(value).into()
}

fn to_vec(value: &JsValue) -> Option<Vec<u8>> {
    if value.is_instance_of::<Uint8Array>() || value.is_instance_of::<js_sys::ArrayBuffer>() {
        Some(Uint8Array::new(value).to_vec())
    } else {
        None
    }
}

/// Why a write transaction was aborted, as far as the page can tell
/// ([`IdbError::for_aborted_write`] with the site's figures).
async fn aborted(batch_bytes: u64) -> IdbError {
    IdbError::for_aborted_write(storage_estimate().await, batch_bytes)
}

impl IdbError {
    /// What an aborted write transaction of `batch_bytes` means, given the site's usage
    /// and quota in bytes (`navigator.storage.estimate()`, `None` where the browser does
    /// not tell). The transaction's own error is not reachable through `rexie`, so the
    /// figures decide: a batch that would not fit in what is left of the quota is
    /// [`IdbError::QuotaExceeded`]; otherwise it is [`IdbError::Aborted`] with the
    /// figures, and a full disk is the likely cause.
    pub fn for_aborted_write(estimate: Option<(u64, u64)>, batch_bytes: u64) -> Self {
        match estimate {
            Some((usage, quota)) if usage.saturating_add(batch_bytes) >= quota => {
                IdbError::QuotaExceeded(format!(
                    "{} used of {}, and the write needed {}",
                    mib(usage),
                    mib(quota),
                    mib(batch_bytes)
                ))
            }
            Some((usage, quota)) => IdbError::Aborted(format!(
                " (this site uses {} of its {} quota, so the disk itself may be full)",
                mib(usage),
                mib(quota)
            )),
            None => IdbError::Aborted(String::new()),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The site's storage usage and quota in bytes, if the browser reports them.
async fn storage_estimate() -> Option<(u64, u64)> {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let storage = js_sys::Reflect::get(&navigator, &"storage".into()).ok()?;
    let estimate = js_sys::Reflect::get(&storage, &"estimate".into())
        .ok()?
        .dyn_into::<js_sys::Function>()
        .ok()?;
    let promise = estimate
        .call0(&storage)
        .ok()?
        .dyn_into::<js_sys::Promise>()
        .ok()?;
    let result = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let number = |field: &str| {
        js_sys::Reflect::get(&result, &field.into())
            .ok()?
            .as_f64()
            .map(|n| n as u64)
    };
    Some((number("usage")?, number("quota")?))
}

/// A Nexus store in one IndexedDB database.
pub struct IdbStore {
    name: String,
    db: Rexie,
    cache: MemoryStore,
}

impl std::fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name` and loads it.
    pub async fn open(name: &str) -> Result<Self, IdbError> {
        let mut builder = Rexie::builder(name).version(IDB_SCHEMA_VERSION);
        for table in Table::ALL {
            builder = builder.add_object_store(ObjectStore::new(table.name()));
        }
        let opening = pin!(builder.build());
        let timeout = pin!(crate::rt::sleep(OPEN_TIMEOUT));
        let db = match select(opening, timeout).await {
            Either::Left((Ok(db), _)) => db,
            Either::Left((Err(e), _)) => {
                let reason = e.to_string();
                return Err(
                    if reason.contains("not available") || reason.contains("factory") {
                        IdbError::Unavailable(reason)
                    } else {
                        failed("open")(e)
                    },
                );
            }
            Either::Right(((), _)) => {
                return Err(IdbError::Blocked {
                    name: name.to_owned(),
                });
            }
        };
        let mut store = Self {
            name: name.to_owned(),
            db,
            cache: MemoryStore::new(),
        };
        store.load().await?;
        Ok(store)
    }

    async fn load(&mut self) -> Result<(), IdbError> {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        let tx = self
            .db
            .transaction(&names, TransactionMode::ReadOnly)
            .map_err(failed("read transaction"))?;
        let mut batch = Batch::new();
        for table in Table::ALL {
            read_into(&tx, table, None, &mut batch).await?;
        }
        let _ = tx.done().await;
        self.cache.commit(batch).map_err(|e| IdbError::Failed {
            operation: "load",
            reason: e.to_string(),
        })
    }

    /// Reads again what another tab of this profile committed, as [`Touched`] describes
    /// it, and replaces those records in the cache: a vault whose membership changed is
    /// read whole, a document named in `whole` is read whole, and otherwise only the named
    /// change records are read. Other records and the peer records are left alone.
    pub async fn reload_touched(&mut self, touched: &[Touched]) -> Result<(), IdbError> {
        const VAULT_TABLES: [Table; 4] = [
            Table::Membership,
            Table::Docs,
            Table::Changes,
            Table::Snapshots,
        ];
        const DOC_TABLES: [Table; 3] = [Table::Docs, Table::Changes, Table::Snapshots];
        let names: Vec<&str> = VAULT_TABLES.iter().map(|t| t.name()).collect();
        let tx = self
            .db
            .transaction(&names, TransactionMode::ReadOnly)
            .map_err(failed("read transaction"))?;
        // Each entry is put in the cache before the next is read, so that what one
        // entry deletes is seen by the next.
        for touched in touched {
            let mut batch = Batch::new();
            if touched.membership {
                let prefix = keys::vault_prefix(&touched.vault);
                self.reload_prefix(&tx, &VAULT_TABLES, &prefix, &mut batch)
                    .await?;
                self.cache.commit(batch).map_err(cache_error)?;
                continue;
            }
            for doc in &touched.whole {
                let prefix = keys::doc(&touched.vault, doc);
                self.reload_prefix(&tx, &DOC_TABLES, &prefix, &mut batch)
                    .await?;
            }
            let store = tx.store(Table::Changes.name()).map_err(failed("read"))?;
            for (doc, hashes) in &touched.changes {
                for hash in hashes {
                    let key = keys::change(&touched.vault, doc, hash);
                    // A record compacted away since is in the snapshot that the
                    // compaction's own message names.
                    if let Some(value) = store.get(bytes(&key)).await.map_err(failed("read"))? {
                        let value = to_vec(&value).ok_or_else(|| IdbError::Corrupt {
                            table: Table::Changes.name(),
                            reason: "a value is not binary".into(),
                        })?;
                        batch.put(Table::Changes, key, value);
                    }
                }
            }
            self.cache.commit(batch).map_err(cache_error)?;
        }
        let _ = tx.done().await;
        Ok(())
    }

    /// Replaces, in `batch`, the cached records under `prefix` in `tables` with what
    /// IndexedDB holds.
    async fn reload_prefix(
        &self,
        tx: &rexie::Transaction,
        tables: &[Table],
        prefix: &[u8],
        batch: &mut Batch,
    ) -> Result<(), IdbError> {
        // Every key under the prefix is longer than it and shorter than this bound.
        let upper = [prefix, &[0xff; 96]].concat();
        let range =
            rexie::KeyRange::bound(&bytes(prefix), &bytes(&upper), None, None).map_err(|e| {
                IdbError::Failed {
                    operation: "key range",
                    reason: e.to_string(),
                }
            })?;
        for table in tables {
            for (key, _) in self.cache.scan(*table, prefix).map_err(cache_error)? {
                batch.delete(*table, key);
            }
            read_into(tx, *table, Some(range.clone()), batch).await?;
        }
        Ok(())
    }

    /// Reads the peer records again (what the leader tab wrote) into the cache.
    pub async fn reload_peers(&mut self) -> Result<(), IdbError> {
        let tx = self
            .db
            .transaction(&[Table::Peers.name()], TransactionMode::ReadOnly)
            .map_err(failed("read transaction"))?;
        let mut batch = Batch::new();
        read_into(&tx, Table::Peers, None, &mut batch).await?;
        let _ = tx.done().await;
        self.cache.commit(batch).map_err(|e| IdbError::Failed {
            operation: "reload",
            reason: e.to_string(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every record, as of the last completed commit: what `Node::load` and `Vault::load`
    /// read from.
    pub fn cache(&self) -> &MemoryStore {
        &self.cache
    }

    /// Writes `batch` in one IndexedDB transaction. Resolves once the browser has
    /// completed it (the data is durable); on any error nothing of the batch is stored.
    pub async fn commit(&mut self, batch: Batch) -> Result<(), IdbError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&'static str> = batch
            .ops()
            .iter()
            .map(|op| match op {
                Op::Put { table, .. } | Op::Delete { table, .. } => table.name(),
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let tx = self
            .db
            .transaction(&names, TransactionMode::ReadWrite)
            .map_err(failed("write transaction"))?;
        // A run of puts into one table is made as one go of requests, awaited once
        // (IndexedDB carries out a transaction's requests in the order they were made).
        let same_table_puts = |a: &Op, b: &Op| matches!((a, b), (Op::Put { table: x, .. }, Op::Put { table: y, .. }) if x == y);
        for run in batch.ops().chunk_by(same_table_puts) {
            let result = match run {
                [Op::Put { table, .. }, ..] => {
                    let puts = run.iter().filter_map(|op| match op {
                        Op::Put { key, value, .. } => Some((bytes(value), Some(bytes(key)))),
                        Op::Delete { .. } => None,
                    });
                    let store = tx.store(table.name()).map_err(failed("write"))?;
                    store.put_all(puts).await
                }
                [Op::Delete { table, key }, ..] => {
                    let store = tx.store(table.name()).map_err(failed("write"))?;
                    store.delete(bytes(key)).await
                }
                [] => Ok(()),
            };
            if let Err(e) = result {
                // Dropping the transaction without completing it aborts it.
                let _ = tx.abort().await;
                return Err(failed("write")(e));
            }
        }
        match tx.done().await {
            Ok(result) if result.is_committed() => {}
            Ok(_) => {
                let bytes = batch
                    .ops()
                    .iter()
                    .map(|op| match op {
                        Op::Put { key, value, .. } => (key.len() + value.len()) as u64,
                        Op::Delete { key, .. } => key.len() as u64,
                    })
                    .sum();
                return Err(aborted(bytes).await);
            }
            Err(e) => return Err(failed("commit")(e)),
        }
        self.cache.commit(batch).map_err(|e| IdbError::Failed {
            operation: "cache",
            reason: e.to_string(),
        })
    }

    /// The device key, created and stored on first use.
    pub async fn load_or_create_device_key(&mut self) -> Result<DeviceKey, IdbError> {
        let stored = self
            .cache
            .get(Table::Identity, DEVICE_KEY)
            .map_err(|e| IdbError::Failed {
                operation: "read",
                reason: e.to_string(),
            })?;
        if let Some(secret) = stored {
            let secret: [u8; 32] = secret.try_into().map_err(|_| IdbError::Corrupt {
                table: Table::Identity.name(),
                reason: "the device key is not 32 bytes".into(),
            })?;
            return Ok(DeviceKey::from_secret_bytes(&secret));
        }
        let key = DeviceKey::generate().map_err(|e| IdbError::Failed {
            operation: "key generation",
            reason: e.to_string(),
        })?;
        let mut batch = Batch::new();
        batch.put(
            Table::Identity,
            DEVICE_KEY.to_vec(),
            key.secret_bytes().to_vec(),
        );
        self.commit(batch).await?;
        Ok(key)
    }

    /// Closes the database (other tabs may then upgrade or delete it).
    pub fn close(self) {
        self.db.close();
    }

    /// Deletes the database `name` and everything in it.
    pub async fn delete(name: &str) -> Result<(), IdbError> {
        Rexie::delete(name).await.map_err(failed("delete"))
    }
}
