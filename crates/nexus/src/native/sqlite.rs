//! [`SqliteStore`]: the core's [`Storage`] on SQLite.
//!
//! One SQLite table per logical table (`key BLOB PRIMARY KEY, value BLOB`, without rowid,
//! so prefix scans are range scans on the key). The database runs in WAL mode with
//! `synchronous = FULL`: [`Storage::commit`] returns only after the transaction is durable,
//! so a change is acknowledged only once it would survive a crash or power loss. Each batch
//! is one `IMMEDIATE` transaction: all of it lands or none of it does. The schema version
//! is kept in `PRAGMA user_version` and upgraded by an ordered list of migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nexus_core::storage::Records;
use nexus_core::{Batch, Op, Storage, Table};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Migrations, in order: entry `i` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE identity   (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE membership (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE docs       (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE changes    (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE snapshots  (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE peers      (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"];

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the SQLite store failed. A failed commit wrote nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file could not be opened or created.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a Nexus database, or it is damaged.
    #[error(
        "the store at {path} is not a Nexus database or is damaged ({source}); move it aside to start fresh, or restore a backup"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer Nexus.
    #[error(
        "the store at {path} has schema version {found}, newer than this build understands ({SCHEMA_VERSION}); upgrade Nexus"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The disk is full.
    #[error(
        "the disk holding {path} is full: nothing of the write was stored; free some space and retry"
    )]
    Full {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another process held the database for too long.
    #[error("the store at {path} stayed locked by another process for {}s: {source}", BUSY_TIMEOUT.as_secs())]
    Busy {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("storage error in {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// The core's storage on a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| SqliteError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::setup(conn, path.to_owned())
    }

    /// A database in memory (for tests and tools).
    pub fn open_in_memory() -> Result<Self, SqliteError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| SqliteError::Open {
            path: path.clone(),
            source,
        })?;
        Self::setup(conn, path)
    }

    fn setup(conn: Connection, path: PathBuf) -> Result<Self, SqliteError> {
        let mut store = Self { conn, path };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.error(e))?;
        // Reading the version first tells a non-database file apart early.
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| store.error(e))?;
        store
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| store.error(e))?;
        store
            .conn
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| store.error(e))?;
        if version > SCHEMA_VERSION {
            return Err(SqliteError::TooNew {
                path: store.path.clone(),
                found: version,
            });
        }
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<(), SqliteError> {
        for version in from..SCHEMA_VERSION {
            let path = self.path.clone();
            let classify = |e| classify(&path, e);
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .map_err(classify)?;
            let sql = MIGRATIONS.get(version as usize).copied().unwrap_or("");
            tx.execute_batch(sql).map_err(classify)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
                .map_err(classify)?;
            tx.commit().map_err(classify)?;
        }
        Ok(())
    }

    /// Caps the database at `pages` pages (of 4 KiB by default), so that tests can see
    /// what a full disk does: the write that does not fit fails with [`SqliteError::Full`]
    /// and changes nothing.
    pub fn limit_pages(&self, pages: u32) -> Result<(), SqliteError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(|e| self.error(e))
    }

    /// Pages the database uses now.
    pub fn page_count(&self) -> Result<u32, SqliteError> {
        self.conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    /// A number that changes whenever another connection (another process, such as a
    /// `nexus` command next to a running daemon) commits to the database. Cheap to poll.
    pub fn data_version(&self) -> Result<i64, SqliteError> {
        self.conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, SqliteError> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    fn error(&self, source: rusqlite::Error) -> SqliteError {
        classify(&self.path, source)
    }
}

fn classify(path: &Path, source: rusqlite::Error) -> SqliteError {
    let path = path.to_owned();
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            SqliteError::Corrupt { path, source }
        }
        Some(ErrorCode::DiskFull) => SqliteError::Full { path, source },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            SqliteError::Busy { path, source }
        }
        _ => SqliteError::Sqlite { path, source },
    }
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Storage for SqliteStore {
    type Error = SqliteError;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        let sql = format!("SELECT value FROM {} WHERE key = ?1", table.name());
        let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
        statement
            .query_row(params![key], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Records, Self::Error> {
        let rows = match prefix_end(prefix) {
            Some(end) => {
                let sql = format!(
                    "SELECT key, value FROM {} WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    table.name()
                );
                let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
                statement
                    .query_map(params![prefix, end], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(Iterator::collect)
            }
            None => {
                let sql = format!(
                    "SELECT key, value FROM {} WHERE key >= ?1 ORDER BY key",
                    table.name()
                );
                let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
                statement
                    .query_map(params![prefix], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(Iterator::collect)
            }
        };
        rows.map_err(|e| self.error(e))
    }

    fn commit(&mut self, batch: Batch) -> Result<(), Self::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let classify = |e| classify(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        for op in batch.ops() {
            match op {
                Op::Put { table, key, value } => {
                    let sql = format!(
                        "INSERT OR REPLACE INTO {} (key, value) VALUES (?1, ?2)",
                        table.name()
                    );
                    tx.prepare_cached(&sql)
                        .and_then(|mut s| s.execute(params![key, value]))
                        .map_err(classify)?;
                }
                Op::Delete { table, key } => {
                    let sql = format!("DELETE FROM {} WHERE key = ?1", table.name());
                    tx.prepare_cached(&sql)
                        .and_then(|mut s| s.execute(params![key]))
                        .map_err(classify)?;
                }
            }
        }
        // Dropping an uncommitted transaction rolls it back, so an error above leaves
        // the database as it was.
        tx.commit().map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_roll_over_correctly() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
