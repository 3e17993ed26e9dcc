//! The Nexus engine: what runs around the sans-IO [`nexus_core`] on each target.
//!
//! This crate holds the storage backends, the transports and the engine. The engine's
//! core (`engine`) is written once for both targets: it holds the node and its peering
//! supervisor ([`nexus_core::peering`], which decides sessions and dials), the session
//! streams (bounded, so a fast peer is held back), carries out what the core asks in
//! order, reads connection and rendezvous events, and reports one [`EngineEvent`] type.
//! Each target adds only what its platform has: `native` (SQLite, the key file, a libp2p
//! swarm on tokio with TCP, QUIC, WebSocket and WebRTC-direct, mDNS, the control socket,
//! the relay mailbox, and `NativeEngine`, the runtime behind `nexus serve`) and `web` on
//! wasm32 (`IdbStore` on IndexedDB, the websys swarm, tab leadership, online/offline,
//! sliced loading, and `WebEngine`, the browser runtime). Both sleep until the node's or
//! the supervisor's next deadline. Shared by both too: [`frames`] (how
//! sync messages are framed on a stream), [`p2p`] (identity and address helpers),
//! [`rt`] (spawning and sleeping), [`views`] (what a person is shown about vaults,
//! devices and documents) and [`control`] (the messages of the daemon's control socket).
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

mod as_text;
pub mod control;
mod engine;
pub mod frames;
#[cfg(not(target_arch = "wasm32"))]
mod native;
pub mod p2p;
pub mod rt;
pub mod views;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(not(target_arch = "wasm32"))]
pub use native::fixtures;
#[cfg(target_arch = "wasm32")]
pub use web::idb::{IDB_SCHEMA_VERSION, IdbError, IdbStore};
#[cfg(target_arch = "wasm32")]
pub use web::runtime::{
    WEB_CONNECT_TIMEOUT, WEB_JOIN_TIMEOUT, WEB_SNAPSHOT_MAX_CHANGES, WEB_VERIFY_SLICE, WebEngine,
    WebError, WebHandle, WebPeerStatus, WebStatus,
};
#[cfg(target_arch = "wasm32")]
pub use web::swarm::{WebBehaviour, build_web_swarm};

pub use engine::EngineEvent;
/// Re-exported so that users of the engine name the same libp2p types.
pub use libp2p;
#[cfg(not(target_arch = "wasm32"))]
pub use native::control_socket::{CONTROL_SOCKET, ControlError, control_request, daemon_running};
#[cfg(not(target_arch = "wasm32"))]
pub use native::daemon::{
    JOIN_TIMEOUT, NativeConfig, NativeEngine, NativeError, NativeHandle, POLL_INTERVAL,
    shutdown_signal,
};
#[cfg(not(target_arch = "wasm32"))]
pub use native::key_file::{KeyFileError, load_or_create_key};
#[cfg(not(target_arch = "wasm32"))]
pub use native::mailbox_client::{MAILBOX, MailboxError, mailbox_request};
#[cfg(not(target_arch = "wasm32"))]
pub use native::sqlite::{SCHEMA_VERSION, SqliteError, SqliteStore};
#[cfg(not(target_arch = "wasm32"))]
pub use native::swarm::{
    CertificateError, PeerBehaviour, SwarmError, build_swarm, build_swarm_with_certificate,
    install_crypto_provider, load_or_create_certificate, webrtc_transport,
};
pub use p2p::{SYNC_PROTOCOL, device_of, keypair, peer_of};
