//! The native side of the engine: SQLite storage and the device key file.

pub(crate) mod key_file;
pub(crate) mod sqlite;
