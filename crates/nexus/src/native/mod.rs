//! The native side of the engine: SQLite storage, the device key file, the libp2p swarm
//! and the native engine that drives a node with it.

pub(crate) mod control_socket;
pub(crate) mod daemon;
pub mod fixtures;
pub(crate) mod key_file;
pub(crate) mod mailbox_client;
pub(crate) mod sqlite;
pub(crate) mod swarm;
pub(crate) mod webrtc_watch;
