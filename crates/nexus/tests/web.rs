//! The engine in a browser (wasm32, headless Chromium through wasm-bindgen-test):
//! IndexedDB storage, signed-change checks and the membership rules.
//!
//! Run with `scripts/test-web` (it sets up chromedriver and the wasm-bindgen runner).

#![cfg(target_arch = "wasm32")]

use automerge::ROOT;
use automerge::transaction::Transactable;
use nexus::{IdbError, IdbStore};
use nexus_core::automerge;
use nexus_core::node::{Node, NodeConfig};
use nexus_core::{ActorId, Batch, DeviceKey, DocId, Role, Storage, Table, Vault};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Must equal `MEMBERSHIP_FIXTURE_DIGEST` in `crates/nexus-core/tests/membership.rs`,
/// which checks the same story natively.
const MEMBERSHIP_FIXTURE_DIGEST: &str =
    "b09e3d0cac7d0c51706869af8d9014a752685f7db76f4f2ff5355fe9d319cd56";

fn fresh_name(what: &str) -> String {
    let suffix: [u8; 8] = nexus_core::random_bytes().unwrap();
    format!("nexus-test-{what}-{}", hex(&suffix))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Idle, a browser device sleeps until its next deadline instead of ticking: over 10 s
/// with nothing scheduled its loop does not wake at all (a 100 ms tick would be 100).
#[wasm_bindgen_test]
async fn an_idle_browser_device_wakes_only_for_its_timers() {
    let handle = nexus::WebEngine::start(&fresh_name("idle"), NodeConfig::new())
        .await
        .unwrap();
    let _vault = handle
        .update(|node, now| Ok(node.create_vault("Idle", [5; 16], now)?))
        .await
        .unwrap();
    let before = handle.status().await.unwrap().wakeups;
    nexus::rt::sleep(std::time::Duration::from_secs(10)).await;
    let woken = handle.status().await.unwrap().wakeups - before;
    assert!(
        woken <= 1,
        "an idle browser device woke {woken} times in 10 s"
    );
    handle.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_vault_written_to_indexeddb_is_there_after_reopening() {
    let name = fresh_name("reopen");
    let mut store = IdbStore::open(&name).await.unwrap();
    let key = store.load_or_create_device_key().await.unwrap();
    let mut node = Node::new(key.clone(), ActorId::random(), NodeConfig::new());
    let (vault, out) = node.create_vault("Browser", [3; 16], 1_000).unwrap();
    store.commit(out.batch).await.unwrap();
    let doc = DocId([4; 16]);
    store
        .commit(node.create_document(vault, doc, 1_001).unwrap().batch)
        .await
        .unwrap();
    let out = node
        .change(vault, doc, |tx| tx.put(ROOT, "title", "kept").map(|_| ()))
        .unwrap();
    store.commit(out.batch).await.unwrap();
    store.close();

    let mut again = IdbStore::open(&name).await.unwrap();
    let same_key = again.load_or_create_device_key().await.unwrap();
    assert_eq!(
        same_key.device_id(),
        key.device_id(),
        "the device key persists"
    );
    let reloaded = Node::load(
        again.cache(),
        same_key,
        ActorId::random(),
        NodeConfig::new(),
    )
    .unwrap();
    let v = reloaded.vault(&vault).expect("the vault persists");
    assert_eq!(v.membership().name(), "Browser");
    assert_eq!(
        v.document(&doc).unwrap().to_json(),
        serde_json::json!({ "title": "kept" })
    );
    assert!(
        v.current_key(&key).is_some(),
        "the vault key sealed to this device persists"
    );
    again.close();
    IdbStore::delete(&name).await.unwrap();
    let empty = IdbStore::open(&name).await.unwrap();
    assert_eq!(empty.cache().records().len(), 0, "deleted means gone");
    empty.close();
    IdbStore::delete(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_batch_lands_whole_with_its_deletes_and_binary_keys_keep_their_order() {
    let name = fresh_name("batch");
    let mut store = IdbStore::open(&name).await.unwrap();
    let mut batch = Batch::new();
    for key in [&[0u8, 255][..], &[0, 1], &[1], &[0, 1, 0]] {
        batch.put(Table::Changes, key.to_vec(), vec![key.len() as u8; 3]);
    }
    batch.put(Table::Docs, b"doc".to_vec(), b"meta".to_vec());
    store.commit(batch).await.unwrap();
    let mut batch = Batch::new();
    batch.delete(Table::Changes, vec![1]);
    batch.put(Table::Peers, b"peer".to_vec(), b"record".to_vec());
    store.commit(batch).await.unwrap();
    store.close();

    let again = IdbStore::open(&name).await.unwrap();
    let keys: Vec<Vec<u8>> = again
        .cache()
        .scan(Table::Changes, &[0])
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![vec![0, 1], vec![0, 1, 0], vec![0, 255]]);
    assert_eq!(again.cache().get(Table::Changes, &[1]).unwrap(), None);
    assert_eq!(
        again.cache().get(Table::Peers, b"peer").unwrap(),
        Some(b"record".to_vec())
    );
    again.close();
    IdbStore::delete(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_corrupt_device_key_is_reported_not_used() {
    let name = fresh_name("corrupt");
    let mut store = IdbStore::open(&name).await.unwrap();
    let mut batch = Batch::new();
    batch.put(Table::Identity, b"device".to_vec(), vec![1, 2, 3]);
    store.commit(batch).await.unwrap();
    assert!(matches!(
        store.load_or_create_device_key().await,
        Err(IdbError::Corrupt { .. })
    ));
    store.close();
    IdbStore::delete(&name).await.unwrap();
}

#[wasm_bindgen_test]
fn signed_changes_verify_and_forgeries_are_rejected_in_wasm() {
    let (alice, bob, mallory) = (
        DeviceKey::from_secret_bytes(&[1; 32]),
        DeviceKey::from_secret_bytes(&[2; 32]),
        DeviceKey::from_secret_bytes(&[3; 32]),
    );
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault
        .add_device(&alice, bob.device_id(), Role::Member, 1)
        .unwrap();
    let doc = DocId([5; 16]);
    let _ = vault.create_document(&alice, doc, 2).unwrap();
    let change = vault
        .change(&alice, doc, |tx| tx.put(ROOT, "by", "alice").map(|_| ()))
        .unwrap()
        .unwrap()
        .change;
    let entries = vault.log().entries().into_iter().cloned().collect();
    let (mut bobs, _) = Vault::from_entries(
        vault.id(),
        entries,
        nexus_core::Received::STORED,
        ActorId::random(),
    )
    .unwrap();
    // A signature by someone else over the same change, and a stranger's own change.
    let mut forged = change.clone();
    forged.signature = mallory.sign(b"not the change");
    let applied = bobs.apply_changes(doc, vec![forged], 3);
    assert!(applied.accepted.is_empty());
    assert_eq!(applied.rejected.len(), 1);
    let (mut strangers, _) = Vault::create(&mallory, "x", [1; 16], 0, ActorId::random()).unwrap();
    let _ = strangers.create_document(&mallory, doc, 0).unwrap();
    let theirs = strangers
        .change(&mallory, doc, |tx| {
            tx.put(ROOT, "by", "mallory").map(|_| ())
        })
        .unwrap()
        .unwrap()
        .change;
    assert!(bobs.apply_changes(doc, vec![theirs], 3).accepted.is_empty());
    // The real one is accepted.
    let applied = bobs.apply_changes(doc, vec![change], 3);
    assert_eq!(applied.accepted.len(), 1);
    assert_eq!(
        bobs.document(&doc).unwrap().to_json(),
        serde_json::json!({ "by": "alice" })
    );
}

#[wasm_bindgen_test]
fn the_membership_rules_give_the_same_answer_as_native() {
    let digest = nexus_core::sim::membership_fixture_digest().to_string();
    assert_eq!(digest, MEMBERSHIP_FIXTURE_DIGEST);
}

#[wasm_bindgen_test]
fn an_aborted_write_that_would_not_fit_the_quota_is_a_quota_error() {
    const MIB: u64 = 1024 * 1024;
    // 990 MiB used of 1,000, and the batch needed 20 MiB: the quota refused it.
    let error = IdbError::for_aborted_write(Some((990 * MIB, 1000 * MIB)), 20 * MIB);
    assert!(matches!(error, IdbError::QuotaExceeded(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("990.0 MiB used of 1000.0 MiB") && text.contains("needed 20.0 MiB"),
        "{text}"
    );
    // Room left in the quota: the disk itself is the likely cause, and the figures say so.
    let error = IdbError::for_aborted_write(Some((28 * MIB, 1052 * MIB)), MIB);
    assert!(matches!(error, IdbError::Aborted(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("uses 28.0 MiB of its 1052.0 MiB quota, so the disk itself may be full"),
        "{error}"
    );
    // No figures from the browser: aborted, nothing more to say.
    let error = IdbError::for_aborted_write(None, MIB);
    assert_eq!(
        error.to_string(),
        "the browser aborted the IndexedDB transaction; nothing of it was stored"
    );
}
