//! The Nexus engine: what runs around the sans-IO [`nexus_core`] on each target.
//!
//! This crate holds the storage backends and (in later steps) the transports and the node
//! runtime. Platform differences live in one module per side: `native` (SQLite, the key
//! file) and, later, `wasm` (IndexedDB).
//!
//! Native storage, end to end:
//!
//! ```
//! use nexus::SqliteStore;
//! use nexus_core::{ActorId, DeviceKey, Storage, Vault};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut store = SqliteStore::open(&dir.path().join("nexus.db")).unwrap();
//! let key = DeviceKey::from_secret_bytes(&[1; 32]);
//! let (vault, batch) = Vault::create(&key, "Home", [0; 16], 0, ActorId::random()).unwrap();
//! store.commit(batch).unwrap(); // returns once SQLite has committed
//! let again = Vault::load(&store, vault.id(), ActorId::random()).unwrap();
//! assert_eq!(again.membership().name(), "Home");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(target_arch = "wasm32"))]
mod native;

#[cfg(not(target_arch = "wasm32"))]
pub use native::key_file::{KeyFileError, load_or_create_key};
#[cfg(not(target_arch = "wasm32"))]
pub use native::sqlite::{SCHEMA_VERSION, SqliteError, SqliteStore};
