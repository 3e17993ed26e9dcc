//! Loading a [`Node`] from storage, at once ([`Node::load`]) or a few documents at a
//! time ([`NodeLoader`]).

use std::collections::VecDeque;

use super::{Node, NodeConfig};
use crate::ActorId;
use crate::hash::Hash;
use crate::identity::DeviceKey;
use crate::ids::{DocId, VaultId};
use crate::storage::Storage;
use crate::vault::{Vault, VaultLoadError};

/// Why a node could not be loaded.
pub type NodeLoadError<E> = VaultLoadError<E>;

/// Loads a [`Node`] from storage a few documents at a time, so that an engine on one
/// thread (a browser tab) can let the page run between steps instead of freezing while a
/// profile with thousands of documents opens. [`NodeLoader::new`] reads every vault's
/// membership; each [`NodeLoader::step`] reads some documents; [`NodeLoader::finish`]
/// reads what is left and gives the node. The store must not change in between.
pub struct NodeLoader {
    node: Node,
    /// Documents not read yet, in the order they are read.
    pending: VecDeque<(VaultId, DocId)>,
    total: usize,
}

impl NodeLoader {
    /// Reads the membership of every vault in `store` and lists their documents.
    pub fn new<S: Storage>(
        store: &S,
        key: DeviceKey,
        actor: ActorId,
        config: NodeConfig,
    ) -> Result<Self, NodeLoadError<S::Error>> {
        let mut node = Node::new(key, actor, config);
        let ids = Vault::list(store).map_err(|source| VaultLoadError::Storage {
            vault: VaultId(Hash([0; 32])),
            source,
        })?;
        let mut pending = VecDeque::new();
        for id in ids {
            let (vault, docs) = Vault::load_membership(store, id, node.actor.clone())?;
            pending.extend(docs.into_iter().map(|doc| (id, doc)));
            node.vaults.insert(id, vault);
        }
        let total = pending.len();
        Ok(Self {
            node,
            pending,
            total,
        })
    }

    /// Reads up to `max_docs` more documents (at least one). Returns whether every
    /// document has been read.
    pub fn step<S: Storage>(
        &mut self,
        store: &S,
        max_docs: usize,
    ) -> Result<bool, NodeLoadError<S::Error>> {
        for _ in 0..max_docs.max(1) {
            let Some((vault, doc)) = self.pending.pop_front() else {
                break;
            };
            if let Some(v) = self.node.vaults.get_mut(&vault) {
                v.load_document(store, doc)?;
            }
        }
        Ok(self.pending.is_empty())
    }

    /// Documents read so far, and how many there are in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.total - self.pending.len(), self.total)
    }

    /// Reads the documents not read yet and returns the node.
    pub fn finish<S: Storage>(mut self, store: &S) -> Result<Node, NodeLoadError<S::Error>> {
        self.step(store, usize::MAX)?;
        Ok(self.node)
    }
}

impl Node {
    /// A node with every vault in `store`. [`NodeLoader`] does the same a few documents
    /// at a time.
    pub fn load<S: Storage>(
        store: &S,
        key: DeviceKey,
        actor: ActorId,
        config: NodeConfig,
    ) -> Result<Self, NodeLoadError<S::Error>> {
        NodeLoader::new(store, key, actor, config)?.finish(store)
    }
}
