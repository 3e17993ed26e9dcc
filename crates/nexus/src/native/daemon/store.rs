//! The native runtime's store: the peer table's saves and what other processes commit to
//! the same database.

use super::*;

impl NativeEngine {
    pub(super) fn commit_quietly(&mut self, batch: nexus_core::Batch) {
        if let Err(e) = self.store.commit(batch) {
            self.emit(EngineEvent::Problem(format!("saving the peer table: {e}")));
        }
    }

    /// Loads every vault from the store into the node (keeping its sessions); returns
    /// what the node wants done about what changed.
    pub(super) fn refresh_vaults(&mut self, now: u64) -> Vec<Output> {
        let vaults = match Vault::list(&self.store) {
            Ok(vaults) => vaults,
            Err(e) => {
                self.emit(EngineEvent::Problem(format!("listing vaults: {e}")));
                return Vec::new();
            }
        };
        let mut outputs = Vec::new();
        for id in vaults {
            match Vault::load(&self.store, id, self.core.node.actor().clone()) {
                Ok(vault) => outputs.push(self.core.node.refresh_vault(vault, now)),
                Err(e) => self.emit(EngineEvent::Problem(format!("reloading vault {id}: {e}"))),
            }
        }
        outputs
    }

    /// Takes in what other processes wrote to the database. (SQLite's `data_version`
    /// moves only for other connections' commits, never for ours.)
    pub(super) fn poll_store(&mut self, now: u64) {
        let version = match self.store.data_version() {
            Ok(version) => version,
            Err(e) => {
                self.emit(EngineEvent::Problem(format!("reading the database: {e}")));
                return;
            }
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        for out in self.refresh_vaults(now) {
            // A failed commit is reported and recovered from inside.
            let _ = self.take_output(out);
        }
        // Peers added by `nexus peer add`.
        if let Ok((records, _)) = PeerRecord::load_all(&self.store) {
            self.input(Input::PeerRecords(records));
        }
    }
}
