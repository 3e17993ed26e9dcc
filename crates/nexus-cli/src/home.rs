//! The home directory a command works on: where it is, and what it holds once opened
//! (the device key, the SQLite store, the node loaded from it).

use std::path::{Path, PathBuf};

use nexus::{SqliteStore, load_or_create_key};
use nexus_core::node::{Node, NodeConfig, Output};
use nexus_core::{ActorId, DeviceKey, Storage, Vault, VaultId};

use crate::error::CliError;

/// The platform data directory for Nexus.
pub(crate) fn default_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("nexus");
    }
    match std::env::var_os("HOME") {
        Some(home) if cfg!(target_os = "macos") => {
            PathBuf::from(home).join("Library/Application Support/nexus")
        }
        Some(home) => PathBuf::from(home).join(".local/share/nexus"),
        None => PathBuf::from(".nexus"),
    }
}

/// An opened home: key, store, node.
pub(crate) struct Home {
    pub(crate) key: DeviceKey,
    pub(crate) store: SqliteStore,
    pub(crate) node: Node,
}

impl Home {
    /// Opens the home in `dir`; with `create`, makes the directory and the device key
    /// when missing. Also says whether the key was created now.
    pub(crate) fn open(dir: &Path, create: bool) -> Result<(Self, bool), CliError> {
        let key_path = dir.join("device.key");
        if !create && !key_path.exists() {
            return Err(CliError::NotInitialised(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| CliError::Home {
            path: dir.to_owned(),
            source,
        })?;
        let (key, created) = load_or_create_key(&key_path)?;
        let store = SqliteStore::open(&dir.join("nexus.db"))?;
        let node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new())
            .map_err(|e| CliError::Load(e.to_string()))?;
        Ok((Self { key, store, node }, created))
    }

    /// Stores what an operation of the node wrote.
    pub(crate) fn commit(&mut self, out: Output) -> Result<(), CliError> {
        self.store.commit(out.batch)?;
        Ok(())
    }

    /// The vault `name_or_id` names: its id, or else the one vault of that name.
    pub(crate) fn vault_id(&self, name_or_id: &str) -> Result<VaultId, CliError> {
        if let Ok(id) = name_or_id.parse::<VaultId>()
            && self.node.vault(&id).is_some()
        {
            return Ok(id);
        }
        let matches: Vec<VaultId> = self
            .node
            .vaults()
            .filter(|v| v.membership().name() == name_or_id)
            .map(Vault::id)
            .collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(CliError::UnknownVault(name_or_id.to_owned())),
            _ => Err(CliError::AmbiguousVault(name_or_id.to_owned())),
        }
    }

    /// The vault `name_or_id` names.
    pub(crate) fn find_vault(&self, name_or_id: &str) -> Result<&Vault, CliError> {
        let id = self.vault_id(name_or_id)?;
        self.vault(&id)
    }

    /// The vault `id`.
    pub(crate) fn vault(&self, id: &VaultId) -> Result<&Vault, CliError> {
        self.node
            .vault(id)
            .ok_or_else(|| CliError::UnknownVault(id.to_string()))
    }
}
