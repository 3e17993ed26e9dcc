//! Signed changes between two in-memory devices, by hand: what is accepted, what is
//! rejected, and that storage only ever holds what was accepted.

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT, ReadDoc};
use nexus_core::{
    ApplyError, DeviceId, DeviceKey, DocId, MemoryStore, Problem, Received, Role, SignedChange,
    Storage, Table, Vault,
};

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret_bytes(&[n + 1; 32])
}

fn actor(n: u8) -> ActorId {
    ActorId::from(&[n; 16][..])
}

const DOC: DocId = DocId([7; 16]);

/// A device with its own vault replica and store.
struct Device {
    key: DeviceKey,
    vault: Vault,
    store: MemoryStore,
}

impl Device {
    fn id(&self) -> DeviceId {
        self.key.device_id()
    }

    fn commit(&mut self, batch: nexus_core::Batch) {
        self.store.commit(batch).expect("commit");
    }

    fn put(&mut self, field: &str, value: i64) -> SignedChange {
        let local = self
            .vault
            .change(&self.key, DOC, |tx| tx.put(ROOT, field, value).map(|_| ()))
            .expect("change")
            .expect("not empty");
        self.commit(local.batch);
        local.change
    }

    fn receive(&mut self, changes: Vec<SignedChange>) -> Vec<ApplyError> {
        let applied = self.vault.apply_changes(DOC, changes, 0);
        self.commit(applied.batch);
        applied.rejected
    }

    fn get(&self, field: &str) -> Option<i64> {
        let doc = self.vault.document(&DOC)?;
        match doc.automerge().get(ROOT, field).ok()?? {
            (automerge::Value::Scalar(s), _) => s.as_i64(),
            _ => None,
        }
    }

    fn value(&self) -> automerge::hydrate::Value {
        self.vault.document(&DOC).expect("document").hydrate()
    }

    fn reload(&self) -> Vault {
        Vault::load(&self.store, self.vault.id(), actor(99)).expect("reload")
    }
}

/// Alice creates a vault and a document; Bob (and Carol, if asked) are approved and get
/// the membership log from her.
fn alice_and_bob(with_carol: bool) -> (Device, Device) {
    let mut store = MemoryStore::new();
    let alice = key(0);
    let (mut vault, batch) = Vault::create(&alice, "Home", [0; 16], 1_000, actor(1)).unwrap();
    store.commit(batch).unwrap();
    store
        .commit(
            vault
                .add_device(&alice, key(1).device_id(), Role::Member, 1_001)
                .unwrap(),
        )
        .unwrap();
    if with_carol {
        store
            .commit(
                vault
                    .add_device(&alice, key(2).device_id(), Role::Admin, 1_002)
                    .unwrap(),
            )
            .unwrap();
    }
    store
        .commit(vault.create_document(&alice, DOC, 1_003).unwrap())
        .unwrap();
    let entries = vault.log().entries().into_iter().cloned().collect();
    let received = Received::from_peer(alice.device_id(), 1_004);
    let (bob_vault, ingested) =
        Vault::from_entries(vault.id(), entries, received, actor(2)).unwrap();
    let mut bob_vault = bob_vault;
    let mut bob_store = MemoryStore::new();
    bob_store.commit(ingested.batch).unwrap();
    // Bob knows the document exists (in the protocol, from Alice's digest).
    bob_store
        .commit(bob_vault.create_document(&key(1), DOC, 1_005).unwrap())
        .unwrap();
    (
        Device {
            key: alice,
            vault,
            store,
        },
        Device {
            key: key(1),
            vault: bob_vault,
            store: bob_store,
        },
    )
}

fn all_changes(device: &Device) -> Vec<SignedChange> {
    device.vault.document(&DOC).unwrap().changes_since(&[])
}

#[test]
fn two_devices_exchange_signed_changes_and_converge() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let a1 = alice.put("milk", 1);
    let a2 = alice.put("eggs", 12);
    assert!(bob.receive(vec![a1, a2]).is_empty());
    // Concurrent edits on both sides.
    let b1 = bob.put("milk", 2);
    let a3 = alice.put("bread", 1);
    assert!(alice.receive(vec![b1]).is_empty());
    assert!(bob.receive(vec![a3]).is_empty());
    assert_eq!(alice.value(), bob.value());
    assert_eq!(
        alice.vault.document(&DOC).unwrap().heads(),
        bob.vault.document(&DOC).unwrap().heads()
    );
    assert_eq!(bob.get("eggs"), Some(12));
    // Each writer used its own actor; the device signature names the author.
    let doc = bob.vault.document(&DOC).unwrap();
    let authors: std::collections::BTreeSet<DeviceId> =
        all_changes(&bob).iter().map(|c| c.author).collect();
    assert_eq!(authors, [alice.id(), bob.id()].into_iter().collect());
    assert!(doc.verify().is_empty());
    // What was stored reloads to the same document.
    for device in [&alice, &bob] {
        let reloaded = device.reload();
        assert_eq!(reloaded.document(&DOC).unwrap().hydrate(), device.value());
    }
}

#[test]
fn a_tampered_change_or_signature_is_rejected_and_nothing_is_stored() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let good = alice.put("milk", 1);
    let before = bob.store.records().clone();

    // Every single-byte tampering of the change is caught, one way or another.
    for i in 0..good.bytes.len() {
        let mut bad = good.clone();
        bad.bytes[i] ^= 0x20;
        let rejected = bob.receive(vec![bad]);
        assert_eq!(rejected.len(), 1, "byte {i} slipped through");
        assert!(matches!(
            rejected[0],
            ApplyError::BadSignature { .. } | ApplyError::Malformed { .. }
        ));
    }
    let mut bad = good.clone();
    bad.signature.0[10] ^= 1;
    assert!(matches!(
        bob.receive(vec![bad])[..],
        [ApplyError::BadSignature { .. }]
    ));
    // Claiming another author does not work either.
    let mut bad = good.clone();
    bad.author = bob.id();
    assert!(matches!(
        bob.receive(vec![bad])[..],
        [ApplyError::BadSignature { .. }]
    ));
    assert_eq!(bob.store.records(), &before, "store untouched");
    assert_eq!(bob.vault.document(&DOC).map(|d| d.change_count()), Some(0));
    // The genuine change still applies afterwards.
    assert!(bob.receive(vec![good]).is_empty());
    assert_eq!(bob.get("milk"), Some(1));
}

#[test]
fn a_change_signed_for_one_document_does_not_apply_to_another() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let change = alice.put("milk", 1);
    let other = DocId([8; 16]);
    let before = bob.store.records().clone();
    let applied = bob.vault.apply_changes(other, vec![change], 0);
    assert!(matches!(
        applied.rejected[..],
        [ApplyError::BadSignature { .. }]
    ));
    bob.commit(applied.batch);
    assert_eq!(bob.store.records(), &before, "store untouched");
    assert!(bob.vault.document(&other).is_none());
}

#[test]
fn changes_by_strangers_are_rejected_even_when_well_signed() {
    let (alice, mut bob) = alice_and_bob(false);
    let mallory = key(5);
    // Mallory edits her own copy of the vault's document.
    let mut vault = alice.vault.clone();
    let mut doc = vault.document(&DOC).unwrap().clone();
    let local = doc
        .change(&mallory, |tx| tx.put(ROOT, "owned", true).map(|_| ()))
        .unwrap()
        .unwrap();
    let rejected = bob.receive(vec![local.change]);
    assert!(matches!(
        rejected[..],
        [ApplyError::NotMember { author, .. }] if author == mallory.device_id()
    ));
    // And the vault itself refuses to let a non-member write.
    let err = vault
        .change(&mallory, DOC, |tx| tx.put(ROOT, "x", 1).map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
}

#[test]
fn one_forgery_in_a_large_batch_is_singled_out() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let mut changes: Vec<SignedChange> = (0..200).map(|i| alice.put("n", i)).collect();
    changes[117].signature.0[0] ^= 0xff;
    let forged_hash = automerge::Change::from_bytes(changes[117].bytes.clone())
        .unwrap()
        .hash();
    let rejected = bob.receive(changes);
    assert_eq!(
        rejected,
        vec![ApplyError::BadSignature {
            change: forged_hash,
            author: alice.id()
        }]
    );
    // Changes after the forgery depend on it, so they wait (stored, not applied).
    assert_eq!(bob.get("n"), Some(116));
    assert_eq!(bob.vault.document(&DOC).unwrap().change_count(), 117);
    // The genuine change arrives later and everything applies.
    let genuine = all_changes(&alice)[117].clone();
    assert!(bob.receive(vec![genuine]).is_empty());
    assert_eq!(bob.get("n"), Some(199));
    assert_eq!(bob.value(), alice.value());
}

#[test]
fn changes_arriving_out_of_order_wait_for_their_parents_and_survive_a_restart() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let c: Vec<SignedChange> = (0..3).map(|i| alice.put("n", i)).collect();
    assert!(bob.receive(vec![c[2].clone(), c[1].clone()]).is_empty());
    assert_eq!(bob.get("n"), None);
    // Restart: the waiting changes were stored and wait again.
    bob.vault = bob.reload();
    assert_eq!(bob.get("n"), None);
    assert!(bob.receive(vec![c[0].clone()]).is_empty());
    assert_eq!(bob.get("n"), Some(2));
}

/// Alice, Bob and Carol (an admin, with the log): Bob's early change reaches Alice and
/// Carol, then Alice revokes Bob, having seen it. Carol has not heard of the revocation.
fn bob_revoked_after_his_early_work() -> (Device, Device, Device) {
    let (mut alice, mut bob) = alice_and_bob(true);
    let mut carol = Device {
        key: key(2),
        vault: bob.vault.clone(),
        store: bob.store.clone(),
    };
    let early = bob.put("bob", 1);
    assert!(alice.receive(vec![early.clone()]).is_empty());
    assert!(carol.receive(vec![early]).is_empty());
    let batch = alice
        .vault
        .revoke_device(&alice.key, bob.id(), 2_000)
        .unwrap();
    alice.commit(batch);
    (alice, bob, carol)
}

#[test]
fn a_revoked_devices_work_before_the_cut_stays_and_later_work_is_rejected_everywhere() {
    let (mut alice, mut bob, mut carol) = bob_revoked_after_his_early_work();
    // Bob, not knowing yet, keeps writing; Carol receives it before the revocation.
    let late = bob.put("bob", 2);
    assert!(carol.receive(vec![late.clone()]).is_empty());
    assert_eq!(carol.get("bob"), Some(2));
    // Alice refuses the late change outright.
    assert!(matches!(
        alice.receive(vec![late.clone()])[..],
        [ApplyError::Revoked { .. }]
    ));
    assert_eq!(alice.get("bob"), Some(1));
    // Carol learns of the revocation: the late change is dropped, from memory and store.
    let entries = alice
        .vault
        .log()
        .entries()
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    let ingested = carol
        .vault
        .ingest_entries(entries, Received::from_peer(alice.id(), 2_001));
    assert_eq!(ingested.dropped.get(&DOC).map(Vec::len), Some(1));
    carol.commit(ingested.batch);
    assert_eq!(carol.get("bob"), Some(1));
    assert_eq!(
        carol.reload().document(&DOC).unwrap().hydrate(),
        alice.value()
    );
    // Offered again, the late change is refused by Carol too.
    assert!(matches!(
        carol.receive(vec![late])[..],
        [ApplyError::Revoked { .. }]
    ));
    // Bob's own copy still has it: a revoked device's later work lives nowhere else.
    assert_eq!(bob.get("bob"), Some(2));
}

#[test]
fn a_revoked_devices_early_changes_are_judged_one_at_a_time() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let b: Vec<SignedChange> = (0..3).map(|i| bob.put("b", i)).collect();
    assert!(alice.receive(b[..2].to_vec()).is_empty());
    let batch = alice
        .vault
        .revoke_device(&alice.key, bob.id(), 2_000)
        .unwrap();
    alice.commit(batch);
    // A newcomer with the revocation gets Bob's changes one at a time, oldest first: each
    // seen by Alice is accepted on its own, without waiting for the rest of the graph.
    let entries = alice.vault.log().entries().into_iter().cloned().collect();
    let (vault, ingested) =
        Vault::from_entries(alice.vault.id(), entries, Received::STORED, actor(3)).unwrap();
    let mut newcomer = Device {
        key: key(3),
        vault,
        store: MemoryStore::new(),
    };
    newcomer.commit(ingested.batch);
    for change in &b[..2] {
        let applied = newcomer.vault.apply_changes(DOC, vec![change.clone()], 0);
        assert!(applied.rejected.is_empty());
        assert_eq!(applied.accepted.len(), 1);
        newcomer.commit(applied.batch);
    }
    // The third came after the revocation: refused.
    assert!(matches!(
        newcomer.receive(vec![b[2].clone()])[..],
        [ApplyError::Revoked { .. }]
    ));
    assert_eq!(newcomer.get("b"), Some(1));
    assert_eq!(
        newcomer.reload().document(&DOC).unwrap().hydrate(),
        alice.value()
    );
}

#[test]
fn compaction_keeps_every_signature_verifiable() {
    let (mut alice, mut bob) = alice_and_bob(false);
    for i in 0..20 {
        let change = alice.put("n", i);
        assert!(bob.receive(vec![change]).is_empty());
        let change = bob.put("m", i);
        assert!(alice.receive(vec![change]).is_empty());
    }
    assert_eq!(alice.store.count(Table::Changes), 40);
    let batch = alice.vault.compact(DOC).unwrap();
    alice.commit(batch);
    assert_eq!(alice.store.count(Table::Changes), 0);
    assert_eq!(alice.store.count(Table::Snapshots), 1);
    let reloaded = alice.reload();
    let doc = reloaded.document(&DOC).unwrap();
    assert_eq!(doc.hydrate(), bob.value());
    assert!(doc.verify().is_empty());
    // Every change can still be sent on, signature and author included.
    let resent = doc.changes_since(&[]);
    assert_eq!(resent.len(), 40);
    let (_, mut fresh) = alice_and_bob(false);
    assert!(fresh.receive(resent).is_empty());
    assert_eq!(fresh.value(), bob.value());
    // Work after compaction is stored as changes again and reloads with the snapshot.
    alice.vault = reloaded;
    alice.put("after", 1);
    let reloaded = alice.reload();
    assert_eq!(reloaded.document(&DOC).unwrap().hydrate(), alice.value());
    // A snapshot whose signature table was altered is reported by verify.
    let key = alice.store.scan(Table::Snapshots, &[]).unwrap()[0]
        .0
        .clone();
    let mut snapshot = alice.store.get(Table::Snapshots, &key).unwrap().unwrap();
    let last = snapshot.len() - 1;
    snapshot[last] ^= 1;
    let mut batch = nexus_core::Batch::new();
    batch.put(Table::Snapshots, key, snapshot);
    alice.commit(batch);
    let problems = alice.reload().document(&DOC).unwrap().verify();
    assert!(
        matches!(problems[..], [Problem::BadSignature(_)]),
        "{problems:?}"
    );
}

#[test]
fn a_full_store_refuses_the_batch_and_keeps_what_was_acknowledged() {
    let (mut alice, _) = alice_and_bob(false);
    alice.put("kept", 1);
    let mut full = MemoryStore::with_capacity(alice.store.used_bytes() + 10);
    for (table, prefix) in [
        (Table::Membership, vec![]),
        (Table::Docs, vec![]),
        (Table::Changes, vec![]),
    ] {
        let mut batch = nexus_core::Batch::new();
        for (k, v) in alice.store.scan(table, &prefix).unwrap() {
            batch.put(table, k, v);
        }
        full.commit(batch).unwrap();
    }
    let before = full.records().clone();
    let local = alice
        .vault
        .change(&alice.key, DOC, |tx| tx.put(ROOT, "lost", 2).map(|_| ()))
        .unwrap()
        .unwrap();
    let err = full.commit(local.batch).unwrap_err();
    assert!(err.to_string().contains("storage full"), "{err}");
    assert_eq!(full.records(), &before);
    // Reopening gives exactly the acknowledged state.
    let reopened = Vault::load(&full, alice.vault.id(), actor(9)).unwrap();
    let doc = reopened.document(&DOC).unwrap();
    assert!(doc.get_root("kept").is_some());
    assert!(doc.get_root("lost").is_none());
}

#[test]
fn corrupt_records_are_reported_not_panicked_on() {
    let (mut alice, _) = alice_and_bob(false);
    alice.put("x", 1);
    let (key, mut value) = alice.store.scan(Table::Changes, &[]).unwrap().remove(0);
    value.truncate(value.len() / 2);
    let mut batch = nexus_core::Batch::new();
    batch.put(Table::Changes, key, value);
    alice.commit(batch);
    let err = Vault::load(&alice.store, alice.vault.id(), actor(9)).unwrap_err();
    assert!(err.to_string().contains("corrupt change record"), "{err}");
}

#[test]
fn a_staged_snapshot_is_loaded_then_read_then_checked_and_each_step_refuses_damage() {
    use nexus_core::document::StagedSnapshot;
    let (mut alice, _bob) = alice_and_bob(false);
    for k in 0..20 {
        alice.put("n", k);
    }
    let vault = alice.vault.id();
    let snapshot = alice.vault.document(&DOC).unwrap().snapshot_bytes();

    // Whole: the document is loaded first; its signatures are read in a step of their own.
    let mut staged = StagedSnapshot::load(vault, DOC, &snapshot).unwrap();
    assert!(!staged.signatures_read() && !staged.is_checked());
    assert_eq!(staged.changes(), 0);
    assert!(
        !staged.verify_some(usize::MAX),
        "nothing is checked before the read"
    );
    staged.read_signatures().unwrap();
    assert_eq!(staged.changes(), 20);
    assert!(staged.verify_some(usize::MAX));

    // The signature section cut short: the document loads, the read refuses it.
    let cut = &snapshot[..snapshot.len() - 10];
    let mut staged = StagedSnapshot::load(vault, DOC, cut).unwrap();
    let refused = staged.read_signatures().unwrap_err();
    assert!(refused.aborted);
    assert!(matches!(
        refused.rejected.as_slice(),
        [ApplyError::MalformedSnapshot { reason }] if reason.contains("snapshot")
    ));
    assert!(StagedSnapshot::parse(vault, DOC, cut).is_err());

    // The document itself damaged: the load refuses it.
    let mut broken = snapshot.clone();
    let middle = 1 + 32 * alice.vault.document(&DOC).unwrap().heads().len() + 40;
    broken[middle] ^= 0xff;
    assert!(StagedSnapshot::load(vault, DOC, &broken).is_err());
}

#[test]
fn a_snapshot_of_the_first_changes_then_the_rest_as_changes_rebuild_the_document() {
    use nexus_core::document::StagedSnapshot;
    let (mut alice, mut bob) = alice_and_bob(false);
    for k in 0..100 {
        alice.put(&format!("k{}", k % 7), k);
    }
    let vault = alice.vault.id();
    let document = alice.vault.document(&DOC).unwrap();

    // Within the limit: the one whole snapshot, nothing after it.
    let (whole, none) = document.snapshot_and_rest(100);
    assert_eq!(whole, document.snapshot_bytes());
    assert!(none.is_empty());

    // Over it: a snapshot of the first 40 changes, then the 60 after them.
    let (first, rest) = document.snapshot_and_rest(40);
    assert_eq!(
        StagedSnapshot::parse(vault, DOC, &first).unwrap().changes(),
        40
    );
    assert_eq!(rest.len(), 60);
    let applied = bob.vault.apply_snapshot_from_peer(DOC, &first, 0);
    assert!(applied.rejected.is_empty(), "{:?}", applied.rejected);
    assert_eq!(applied.accepted.len(), 40);
    bob.commit(applied.batch);
    assert_eq!(bob.vault.document(&DOC).unwrap().change_count(), 40);
    assert!(bob.receive(rest).is_empty());
    assert_eq!(bob.value(), alice.value());
    assert_eq!(
        bob.vault.document(&DOC).unwrap().heads(),
        alice.vault.document(&DOC).unwrap().heads()
    );
    // And it is all stored: Bob's reload has the same document.
    assert_eq!(
        bob.reload().document(&DOC).unwrap().hydrate(),
        alice.value()
    );
}

/// A member's hostile change, made outside Nexus (so no local check stops it), signed
/// with its own key.
fn signed_raw(device: &Device, change: &automerge::Change) -> SignedChange {
    let message =
        nexus_core::document::change_signing_message(&device.vault.id(), &DOC, &change.hash());
    SignedChange {
        bytes: change.raw_bytes().to_vec(),
        author: device.id(),
        signature: device.key.sign(&message),
    }
}

#[test]
fn a_members_change_nesting_maps_too_deep_is_refused_at_apply() {
    use automerge::ObjType;
    use nexus_core::document::MAX_DEPTH;
    let (mut alice, bob) = alice_and_bob(false);
    alice.put("start", 1);
    // Bob nests maps in steps of 30 levels, one change per step, far past the limit.
    let mut raw =
        automerge::AutoCommit::new().with_actor(nexus_core::actor::actor_of(&bob.id(), &actor(50)));
    let mut obj = ROOT;
    let mut changes = Vec::new();
    for _ in 0..10 {
        for _ in 0..30 {
            obj = raw.put_object(&obj, "n", ObjType::Map).unwrap();
        }
        raw.commit();
        let change = raw.get_last_local_change().unwrap().clone();
        changes.push(signed_raw(&bob, &change));
    }
    let rejected = alice.receive(changes);
    let depths: Vec<usize> = rejected
        .iter()
        .map(|e| match e {
            ApplyError::TooDeep { depth, .. } => *depth,
            other => panic!("expected too deep, got {other}"),
        })
        .collect();
    assert_eq!(
        depths.len(),
        2,
        "the changes reaching 270 and 300: {depths:?}"
    );
    assert!(depths[0] > MAX_DEPTH);
    // What stayed is readable, at every depth the limit allows, and survives a reload.
    let json = alice.vault.document(&DOC).unwrap().to_json();
    let mut level = &json["n"];
    let mut depth = 0;
    while level.is_object() {
        depth += 1;
        level = &level["n"];
    }
    assert_eq!(depth, 240);
    let reloaded = alice.reload();
    assert_eq!(reloaded.document(&DOC).unwrap().to_json(), json);
    // One change 300 deep at once is refused whole.
    let mut raw =
        automerge::AutoCommit::new().with_actor(nexus_core::actor::actor_of(&bob.id(), &actor(51)));
    let mut obj = ROOT;
    for _ in 0..300 {
        obj = raw.put_object(&obj, "deep", ObjType::Map).unwrap();
    }
    raw.commit();
    let change = raw.get_last_local_change().unwrap().clone();
    let rejected = alice.receive(vec![signed_raw(&bob, &change)]);
    assert!(matches!(rejected.as_slice(), [ApplyError::TooDeep { .. }]));
    assert!(alice.vault.document(&DOC).unwrap().to_json()["deep"].is_null());
}

#[test]
fn a_local_edit_nesting_too_deep_is_undone_with_a_clear_error() {
    use automerge::ObjType;
    let (mut alice, _bob) = alice_and_bob(false);
    alice.put("start", 1);
    let before = alice.vault.document(&DOC).unwrap().heads();
    let err = alice
        .vault
        .change(&alice.key, DOC, |tx| {
            let mut obj = ROOT;
            for _ in 0..300 {
                obj = tx.put_object(&obj, "n", ObjType::Map)?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(alice.vault.document(&DOC).unwrap().heads(), before);
    // The document still takes edits.
    alice.put("after", 2);
    assert_eq!(alice.get("after"), Some(2));
}

/// Finding 8: a member writes under another device's Automerge actor, taking the next
/// sequence number Alice would use (a twin in waiting). Every replica refuses it from the
/// change alone, so Alice's real change still applies everywhere.
#[test]
fn a_member_writing_under_another_devices_actor_is_refused_and_the_owner_goes_on() {
    let (mut alice, mut bob) = alice_and_bob(false);
    let first = alice.put("milk", 1);
    assert!(bob.receive(vec![first.clone()]).is_empty());
    let alices_actor = automerge::Change::from_bytes(first.bytes.clone())
        .unwrap()
        .actor_id()
        .clone();
    assert!(nexus_core::actor::actor_belongs_to(
        &alices_actor,
        &alice.id()
    ));
    // Bob copies Alice's actor and writes its next change himself, signed by Bob.
    let mut raw = bob.vault.document(&DOC).unwrap().automerge().clone();
    raw.set_actor(alices_actor.clone());
    let mut tx = raw.transaction();
    tx.put(ROOT, "milk", 100_i64).unwrap();
    let (Some(hash), _) = tx.commit() else {
        panic!("a change")
    };
    let squatted = raw.get_change_by_hash(&hash).unwrap().clone();
    let mut carol_like = alice_and_bob(false).0;
    for target in [&mut alice, &mut carol_like] {
        let rejected = target.receive(vec![signed_raw(&bob, &squatted)]);
        assert!(
            matches!(rejected.as_slice(), [ApplyError::ForeignActor { author, .. }] if *author == bob.id()),
            "{rejected:?}"
        );
    }
    // Alice writes on under her actor: Bob takes it in.
    let second = alice.put("milk", 2);
    assert!(bob.receive(vec![second]).is_empty());
    assert_eq!(bob.get("milk"), Some(2));
}

/// The document's `list` as strings.
fn list_of(device: &Device) -> Vec<String> {
    let doc = device.vault.document(&DOC).expect("document").automerge();
    let Ok(Some((_, list))) = doc.get(ROOT, "list") else {
        return Vec::new();
    };
    (0..doc.length(&list))
        .filter_map(|i| match doc.get(&list, i).ok()?? {
            (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[test]
fn a_change_made_on_older_heads_edits_what_was_there_and_merges_with_what_came_since() {
    use nexus_core::ChangeOptions;
    let (mut alice, mut bob) = alice_and_bob(false);
    let made = alice
        .vault
        .change(&alice.key, DOC, |tx| {
            let list = tx.put_object(ROOT, "list", automerge::ObjType::List)?;
            for (i, item) in ["a", "b", "c"].into_iter().enumerate() {
                tx.insert(&list, i, item)?;
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
    alice.commit(made.batch);
    assert!(bob.receive(vec![made.change.clone()]).is_empty());
    let seen = alice.vault.document(&DOC).unwrap().heads();
    // Bob puts "x" first; it reaches Alice before her next edit is written.
    let list =
        |d: &automerge::transaction::Transaction<'_>| d.get(ROOT, "list").unwrap().unwrap().1;
    let first = bob
        .vault
        .change(&bob.key, DOC, |tx| {
            let l = list(tx);
            tx.insert(&l, 0, "x").map(|_| ())
        })
        .unwrap()
        .unwrap();
    assert!(alice.receive(vec![first.change]).is_empty());
    // Alice deletes index 1 of the copy she saw ("b"): made on those heads, it deletes
    // "b", not the "a" that index 1 holds now.
    let options = ChangeOptions {
        at: Some(seen.clone()),
        message: Some("remove b".into()),
    };
    let local = alice
        .vault
        .change_with(&alice.key, DOC, &options, |tx| {
            let l = list(tx);
            tx.delete(&l, 1)
        })
        .unwrap()
        .unwrap();
    alice.commit(local.batch);
    assert_eq!(list_of(&alice), ["x", "a", "c"]);
    let change = alice
        .vault
        .document(&DOC)
        .unwrap()
        .automerge()
        .get_change_by_hash(&local.hash)
        .unwrap()
        .clone();
    assert_eq!(
        change.deps(),
        seen.as_slice(),
        "it depends on the heads it was made on"
    );
    assert_eq!(change.message(), Some("remove b"));
    assert!(bob.receive(vec![local.change]).is_empty());
    assert_eq!(list_of(&bob), ["x", "a", "c"]);
    // Heads this device does not hold are refused, and nothing is written.
    let unknown = ChangeOptions {
        at: Some(vec![automerge::ChangeHash([9; 32])]),
        message: None,
    };
    let refused = alice.vault.change_with(&alice.key, DOC, &unknown, |tx| {
        tx.put(ROOT, "n", 1).map(|_| ())
    });
    assert!(
        matches!(
            refused,
            Err(nexus_core::VaultError::Change {
                source: nexus_core::ChangeError::UnknownHeads { .. },
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(alice.get("n"), None);
}

/// A member's change built on a revoked device's late work goes with it, but is held
/// aside, not forgotten: when the device is admitted again, the work stands again and
/// comes back, also after a restart in between (the held changes are stored).
#[test]
fn work_voided_by_a_revocation_comes_back_when_the_device_is_admitted_again() {
    let (mut alice, mut bob, mut carol) = bob_revoked_after_his_early_work();
    // Carol takes Bob's late change and builds on it before she hears of the revocation.
    let late = bob.put("bob", 2);
    assert!(carol.receive(vec![late.clone()]).is_empty());
    let built = carol.put("carol", 7);
    let entries = |d: &Device| {
        d.vault
            .log()
            .entries()
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let ingested = carol
        .vault
        .ingest_entries(entries(&alice), Received::from_peer(alice.id(), 2_001));
    assert_eq!(
        ingested.dropped.get(&DOC).map(Vec::len),
        Some(2),
        "late and built on it"
    );
    carol.commit(ingested.batch);
    assert_eq!((carol.get("bob"), carol.get("carol")), (Some(1), None));
    let voided: Vec<_> = carol
        .vault
        .document(&DOC)
        .unwrap()
        .voided()
        .copied()
        .collect();
    assert_eq!(voided.len(), 2);
    // Offered again while voided, the late change is refused.
    assert!(matches!(
        carol.receive(vec![late.clone()])[..],
        [ApplyError::Revoked { .. }]
    ));
    // A restart: the held changes come back from the store, still voided.
    carol.vault = carol.reload();
    assert_eq!(carol.get("carol"), None);
    assert_eq!(
        carol.vault.document(&DOC).unwrap().voided().count(),
        2,
        "held across the restart"
    );
    // Alice admits Bob again; Carol takes the entry in: both changes stand and apply.
    let batch = alice
        .vault
        .add_device(&alice.key, bob.id(), Role::Member, 3_000)
        .unwrap();
    alice.commit(batch);
    let ingested = carol
        .vault
        .ingest_entries(entries(&alice), Received::from_peer(alice.id(), 3_001));
    carol.commit(ingested.batch);
    assert_eq!(ingested.revived.get(&DOC).map(Vec::len), Some(2));
    assert_eq!((carol.get("bob"), carol.get("carol")), (Some(2), Some(7)));
    assert_eq!(carol.vault.document(&DOC).unwrap().voided().count(), 0);
    // Stored as ordinary changes again: a restart keeps them.
    let reloaded = carol.reload();
    assert_eq!(reloaded.document(&DOC).unwrap().hydrate(), carol.value());
    // And Alice, who admitted Bob herself, takes Carol's change (and Bob's) now.
    assert!(alice.receive(vec![late, built]).is_empty());
    assert_eq!((alice.get("bob"), alice.get("carol")), (Some(2), Some(7)));
}

/// A change stored before its document's metadata record (made here while a peer's
/// snapshot of the document was still being checked, then a restart) is not lost: the
/// document is loaded from any record of it.
#[test]
fn a_document_whose_metadata_never_reached_the_store_loads_from_its_change_records() {
    let (_alice, mut bob) = alice_and_bob(false);
    bob.put("kept", 5);
    let mut batch = nexus_core::Batch::new();
    batch.delete(
        Table::Docs,
        nexus_core::storage::keys::doc(&bob.vault.id(), &DOC),
    );
    bob.commit(batch);
    assert!(
        bob.store
            .get(
                Table::Docs,
                &nexus_core::storage::keys::doc(&bob.vault.id(), &DOC)
            )
            .unwrap()
            .is_none()
    );
    let reloaded = bob.reload();
    let doc = reloaded
        .document(&DOC)
        .expect("loaded from its change record");
    assert_eq!(doc.to_json()["kept"], 5);
}
