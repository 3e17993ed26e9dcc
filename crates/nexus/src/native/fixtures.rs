//! Ready-made homes for benchmarks, examples and tests: a vault whose owner approved a
//! second device, holding one document of many signed changes; and editing or reading a
//! home's document from another connection, as a second process (`nexus doc put`) would.

use std::path::Path;

use nexus_core::automerge::ROOT;
use nexus_core::automerge::transaction::Transactable;
use nexus_core::node::{Node, NodeConfig};
use nexus_core::{ActorId, Batch, ChangeHash, DeviceId, DeviceKey, DocId, Role, Storage, VaultId};

use super::sqlite::SqliteStore;

/// Why a fixture could not be made.
pub type FixtureError = Box<dyn std::error::Error + Send + Sync>;

/// Creates, in `home`, a vault "Bench" owned by `owner` in which `member` is approved, with
/// document `doc` holding `changes` signed changes (each sets one of 100 keys), committed
/// in batches of 10,000. Returns the vault and the document's heads.
pub fn home_with_changes(
    home: &Path,
    owner: &DeviceKey,
    member: DeviceId,
    doc: DocId,
    changes: usize,
) -> Result<(VaultId, Vec<ChangeHash>), FixtureError> {
    std::fs::create_dir_all(home)?;
    let mut store = SqliteStore::open(&home.join("nexus.db"))?;
    let mut node = Node::new(owner.clone(), ActorId::random(), NodeConfig::new());
    let (vault, out) = node.create_vault("Bench", [2; 16], 1_000)?;
    store.commit(out.batch)?;
    store.commit(node.add_device(vault, member, Role::Member, 1_001)?.batch)?;
    store.commit(node.create_document(vault, doc, 1_002)?.batch)?;
    let mut batch = Batch::new();
    for i in 0..changes {
        let out = node.change(vault, doc, |tx| {
            tx.put(ROOT, format!("k{}", i % 100), i as i64).map(|_| ())
        })?;
        batch.extend(out.batch);
        if i % 10_000 == 9_999 {
            store.commit(std::mem::take(&mut batch))?;
        }
    }
    store.commit(batch)?;
    let heads = node
        .vault(&vault)
        .and_then(|v| v.document(&doc))
        .map(|d| d.heads())
        .unwrap_or_default();
    Ok((vault, heads))
}

/// Opens `home`'s database as another process would, sets `field` of `doc`'s root to
/// `value` in one signed change, and commits.
pub fn edit_field(
    home: &Path,
    key: &DeviceKey,
    vault: VaultId,
    doc: DocId,
    field: &str,
    value: impl Into<nexus_core::automerge::ScalarValue>,
) -> Result<(), FixtureError> {
    let mut store = SqliteStore::open(&home.join("nexus.db"))?;
    let mut node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new())?;
    let value = value.into();
    let out = node.change(vault, doc, |tx| tx.put(ROOT, field, value).map(|_| ()))?;
    store.commit(out.batch)?;
    Ok(())
}

/// `field` of `doc`'s root in `home`'s database, as JSON; `None` if anything is missing.
pub fn read_field(
    home: &Path,
    key: &DeviceKey,
    vault: VaultId,
    doc: DocId,
    field: &str,
) -> Option<serde_json::Value> {
    let store = SqliteStore::open(&home.join("nexus.db")).ok()?;
    let node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new()).ok()?;
    let value = node.vault(&vault)?.document(&doc)?.to_json();
    value.get(field).cloned()
}

/// Bytes received on the loopback interface so far (`/proc/net/dev`; 0 where absent).
pub fn loopback_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|rx| rx.parse().ok())
        .unwrap_or(0)
}
