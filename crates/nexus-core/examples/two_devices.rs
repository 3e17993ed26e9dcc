//! Two devices, one vault, by hand: Alice creates a vault and an invite, Bob redeems it
//! while Alice is offline, both edit the same document, and they exchange signed changes.
//! A forged change is refused on the way.
//!
//! Run with `cargo run -p nexus-core --example two_devices`.

use automerge::ROOT;
use automerge::transaction::Transactable;
use nexus_core::{
    ActorId, DeviceKey, DocId, MemoryStore, Received, Role, Storage, Vault, random_bytes,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let alice = DeviceKey::generate()?;
    let bob = DeviceKey::generate()?;
    println!("Alice is {}", alice.device_id());
    println!("Bob   is {}", bob.device_id());

    // Alice creates the vault and a one-hour invite; each write is a batch to commit.
    let mut alice_store = MemoryStore::new();
    let (mut a, batch) = Vault::create(&alice, "Groceries", [1; 16], now_ms(), ActorId::random())?;
    alice_store.commit(batch)?;
    let secret: [u8; 32] = random_bytes()?;
    let (invite, batch) = a.create_invite(
        &alice,
        &secret,
        Role::Member,
        now_ms() + 3_600_000,
        now_ms(),
    )?;
    alice_store.commit(batch)?;
    println!("Vault {} created; invite {}", a.id(), invite.short());

    // Bob gets the log (the sync protocol would carry it) and redeems the invite himself.
    let entries = a.log().entries().into_iter().cloned().collect();
    let (mut b, ingested) =
        Vault::from_entries(a.id(), entries, Received::STORED, ActorId::random())?;
    let mut bob_store = MemoryStore::new();
    bob_store.commit(ingested.batch)?;
    let (redemption, batch) = b.redeem_invite(&bob, invite, &secret, now_ms())?;
    bob_store.commit(batch)?;
    // Alice accepts it when Bob presents it.
    let from_bob = Received::from_peer(bob.device_id(), now_ms());
    let ingested = a.ingest_entries([redemption], from_bob);
    alice_store.commit(ingested.batch)?;
    println!("Members seen by Alice: {}", a.membership().members().len());

    // Both edit one document concurrently.
    let doc = DocId::random()?;
    alice_store.commit(a.create_document(&alice, doc, now_ms())?)?;
    bob_store.commit(b.create_document(&bob, doc, now_ms())?)?;
    let from_alice = a
        .change(&alice, doc, |tx| tx.put(ROOT, "milk", 2_i64).map(|_| ()))?
        .ok_or("no change")?;
    alice_store.commit(from_alice.batch)?;
    let from_bob = b
        .change(&bob, doc, |tx| tx.put(ROOT, "eggs", 12_i64).map(|_| ()))?
        .ok_or("no change")?;
    bob_store.commit(from_bob.batch)?;

    // A tampered copy of Alice's change is refused; the genuine one is applied.
    let mut forged = from_alice.change.clone();
    forged.signature.0[0] ^= 1;
    let applied = b.apply_changes(doc, vec![forged], now_ms());
    println!("Forged change: {}", applied.rejected[0]);
    let applied = b.apply_changes(doc, vec![from_alice.change], now_ms());
    bob_store.commit(applied.batch)?;
    let applied = a.apply_changes(doc, vec![from_bob.change], now_ms());
    alice_store.commit(applied.batch)?;

    let alice_doc = a.document(&doc).ok_or("missing document")?;
    let bob_doc = b.document(&doc).ok_or("missing document")?;
    println!("Alice sees {}", alice_doc.to_json());
    println!("Bob   sees {}", bob_doc.to_json());
    if alice_doc.heads() != bob_doc.heads() {
        return Err("the devices did not converge".into());
    }
    println!(
        "Converged: {} heads, {} changes each",
        alice_doc.heads().len(),
        alice_doc.change_count()
    );
    Ok(())
}
