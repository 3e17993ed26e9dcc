//! The sync protocol end to end in the simulator: stories first, then traffic figures,
//! hostile peers, and many random seeds.

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT};
use nexus_core::bundle::{Bundle, MAX_BUNDLE_PLAINTEXT};
use nexus_core::node::Event;
use nexus_core::node::{Node, NodeConfig, NodeLoader, SessionId};
use nexus_core::protocol::{Message, RefuseCode};
use nexus_core::sim::{Faults, Network, Scenario, run_seed};
use nexus_core::{ActorId, DeviceKey, DocId, JoinRequest, Role, Storage, Touched, Vault, VaultId};
use proptest::prelude::*;

const CONFIG: NodeConfig = NodeConfig {
    reconcile_interval_ms: 1_000,
    retry_ms: 500,
    snapshot_min_changes: 32,
    verify_slice: 0,
    snapshot_max_changes: 0,
};

fn doc(n: u8) -> DocId {
    DocId([n; 16])
}

/// Device 0 creates a vault; the others are approved by id. Nobody is connected yet.
fn vault_of(n: usize, seed: u64) -> (Network, VaultId) {
    vault_with(n, seed, CONFIG)
}

fn vault_with(n: usize, seed: u64, config: NodeConfig) -> (Network, VaultId) {
    let mut net = Network::new(n, seed, config);
    let now = net.now_ms;
    let (vault, out) = net.devices[0]
        .node
        .create_vault("family", [0; 16], now)
        .unwrap();
    net.apply_output(0, out);
    for i in 1..n {
        let id = net.id(i);
        let out = net.devices[0]
            .node
            .add_device(vault, id, Role::Member, now)
            .unwrap();
        net.apply_output(0, out);
    }
    (net, vault)
}

/// Device `maker` creates a vault named `name` and approves device `approved` by id.
fn vault_approving(
    net: &mut Network,
    maker: usize,
    (name, nonce): (&str, u8),
    approved: usize,
    role: Role,
) -> VaultId {
    let now = net.now_ms;
    let (vault, out) = net.devices[maker]
        .node
        .create_vault(name, [nonce; 16], now)
        .unwrap();
    net.apply_output(maker, out);
    let id = net.id(approved);
    let out = net.devices[maker]
        .node
        .add_device(vault, id, role, now)
        .unwrap();
    net.apply_output(maker, out);
    vault
}

fn put(net: &mut Network, i: usize, vault: VaultId, d: DocId, key: &str, value: i64) {
    let now = net.now_ms;
    if net.devices[i]
        .node
        .vault(&vault)
        .unwrap()
        .document(&d)
        .is_none()
    {
        let out = net.devices[i].node.create_document(vault, d, now).unwrap();
        net.apply_output(i, out);
    }
    let out = net.devices[i]
        .node
        .change(vault, d, |tx| tx.put(ROOT, key, value).map(|_| ()))
        .unwrap();
    net.apply_output(i, out);
}

fn document_on(net: &Network, i: usize, vault: VaultId, d: DocId) -> &nexus_core::Document {
    net.devices[i]
        .node
        .vault(&vault)
        .unwrap()
        .document(&d)
        .unwrap()
}

fn get(net: &Network, i: usize, vault: VaultId, d: DocId) -> serde_json::Value {
    net.devices[i]
        .node
        .vault(&vault)
        .and_then(|v| v.document(&d))
        .map(|d| d.to_json())
        .unwrap_or(serde_json::Value::Null)
}

/// Device 0 invites a member for an hour; what the joiner presents.
fn member_invite(net: &mut Network, vault: VaultId) -> JoinRequest {
    let now = net.now_ms;
    let secret = [9u8; 32];
    let (invite, out) = net.devices[0]
        .node
        .create_invite(vault, &secret, Role::Member, now + 3_600_000, now)
        .unwrap();
    net.apply_output(0, out);
    JoinRequest { invite, secret }
}

fn settle(net: &mut Network) {
    for _ in 0..5 {
        net.run_until_quiescent(500);
        net.step(CONFIG.reconcile_interval_ms);
    }
    net.run_until_quiescent(500);
}

#[test]
fn a_creates_b_joins_by_invite_c_is_approved_and_all_converge() {
    let mut net = Network::new(3, 1, CONFIG);
    let now = net.now_ms;
    let (vault, out) = net.devices[0]
        .node
        .create_vault("home", [0; 16], now)
        .unwrap();
    net.apply_output(0, out);
    // B gets an invite code; C is approved by its device id.
    let request = member_invite(&mut net, vault);
    net.join(1, 0, vault, request);
    let c = net.id(2);
    let out = net.devices[0]
        .node
        .add_device(vault, c, Role::Admin, now)
        .unwrap();
    net.apply_output(0, out);
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        net.connect(a, b);
    }
    settle(&mut net);
    for i in 0..3 {
        assert!(
            net.devices[i].node.vault(&vault).is_some(),
            "device {i} holds the vault"
        );
    }
    // Concurrent edits to the same and different documents.
    put(&mut net, 0, vault, doc(1), "a", 1);
    put(&mut net, 1, vault, doc(1), "b", 2);
    put(&mut net, 2, vault, doc(2), "c", 3);
    settle(&mut net);
    let expected = serde_json::json!({"a": 1, "b": 2});
    for i in 0..3 {
        assert_eq!(get(&net, i, vault, doc(1)), expected, "device {i}");
        assert_eq!(get(&net, i, vault, doc(2)), serde_json::json!({"c": 3}));
    }
}

#[test]
fn a_device_between_two_groups_bridges_them() {
    let (mut net, vault) = vault_of(3, 2);
    // A and C never meet; B sees both.
    net.connect(0, 1);
    net.connect(1, 2);
    settle(&mut net);
    put(&mut net, 0, vault, doc(1), "from_a", 1);
    settle(&mut net);
    assert_eq!(
        get(&net, 2, vault, doc(1)),
        serde_json::json!({"from_a": 1})
    );
    put(&mut net, 2, vault, doc(1), "from_c", 2);
    settle(&mut net);
    assert_eq!(
        get(&net, 0, vault, doc(1)),
        serde_json::json!({"from_a": 1, "from_c": 2})
    );
}

#[test]
fn a_stranger_is_refused_and_learns_nothing_about_documents() {
    let (mut net, vault) = vault_of(2, 3);
    net.connect(0, 1);
    settle(&mut net);
    put(&mut net, 0, vault, doc(1), "secret", 42);
    settle(&mut net);
    // Device 2 of another network is a stranger with its own key: model it as a third
    // device that was never approved, dialing device 0 about the vault.
    let mut strangers = Network::new(3, 99, CONFIG);
    let stranger = strangers.devices.remove(2);
    net.devices.push(stranger);
    let stranger_id = net.id(2);
    let a_id = net.id(0);
    let a_session = net.devices[0].node.accept_session(stranger_id);
    let now = net.now_ms;
    let (s_session, hello) = net.devices[2]
        .node
        .open_session(a_id, vault, true, None, now);
    // Carry messages by hand to see everything the stranger receives.
    let mut to_a: Vec<Vec<u8>> = hello.transmits.into_iter().map(|(_, b)| b).collect();
    let mut received = Vec::new();
    let mut closed_reason = None;
    for _ in 0..10 {
        let mut to_s = Vec::new();
        for bytes in to_a.drain(..) {
            let out = net.devices[0].node.handle_message(a_session, &bytes, now);
            net.devices[0].store.commit(out.batch).unwrap();
            to_s.extend(out.transmits.into_iter().map(|(_, b)| b));
        }
        for bytes in to_s {
            received.push(Message::decode(&bytes).unwrap());
            let out = net.devices[2].node.handle_message(s_session, &bytes, now);
            for (_, reason) in &out.closed {
                closed_reason = Some(reason.clone());
            }
            to_a.extend(out.transmits.into_iter().map(|(_, b)| b));
        }
    }
    let reason = closed_reason.expect("the stranger was refused");
    assert_eq!(reason.code, RefuseCode::NotMember);
    assert!(!reason.by_us);
    assert!(reason.reason.contains("not a member"), "{}", reason.reason);
    for message in &received {
        let harmless = match message {
            Message::Hello {
                membership_heads, ..
            } => membership_heads.is_empty(),
            Message::Refuse { .. } => true,
            Message::Entries { entries, withheld } => entries.is_empty() && *withheld,
            _ => false,
        };
        assert!(harmless, "the stranger received {}", message.kind());
    }
    assert!(net.devices[2].node.vault(&vault).is_none());
}

#[test]
fn a_revoked_device_is_cut_off_and_its_later_edits_are_rejected_everywhere() {
    let (mut net, vault) = vault_of(3, 4);
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        net.connect(a, b);
    }
    settle(&mut net);
    put(&mut net, 2, vault, doc(1), "before", 1);
    settle(&mut net);
    // A revokes C. C writes on, unaware.
    let c = net.id(2);
    let now = net.now_ms;
    let out = net.devices[0].node.revoke_device(vault, c, now).unwrap();
    net.apply_output(0, out);
    put(&mut net, 2, vault, doc(1), "after", 2);
    settle(&mut net);
    for i in 0..2 {
        let v = net.devices[i].node.vault(&vault).unwrap();
        assert!(v.membership().revocation(&c).is_some(), "device {i} knows");
        assert_eq!(
            get(&net, i, vault, doc(1)),
            serde_json::json!({"before": 1}),
            "device {i}"
        );
    }
    // C was told with the signed revocation (so its user can be), has no session with
    // anyone, and judges its own later edit by the same rules as everyone: it is gone
    // there too, so no store holds a change the rules reject.
    let told = net.devices[2].node.vault(&vault).unwrap().membership();
    assert!(told.revocation(&c).is_some(), "C knows it was revoked");
    assert_eq!(told.role(&c), None);
    assert_eq!(
        get(&net, 2, vault, doc(1)),
        serde_json::json!({"before": 1})
    );
    assert!(
        net.devices[2]
            .node
            .sessions()
            .all(|(_, _, _, ready)| !ready)
    );
    assert!(
        net.devices[0]
            .node
            .sessions()
            .all(|(_, peer, _, _)| peer != c)
    );
}

/// Seals what device `i` has that is newer than `since` under its current vault key, as
/// its engine would leave it at a relay: (bundle id, bytes).
fn left_at_relay(
    net: &Network,
    i: usize,
    vault: VaultId,
    since: &std::collections::BTreeMap<DocId, Vec<automerge::ChangeHash>>,
) -> ([u8; 16], Vec<u8>) {
    let node = &net.devices[i].node;
    let prepared = node
        .bundle_since(&vault, since, MAX_BUNDLE_PLAINTEXT)
        .unwrap();
    let (_, key) = node.vault(&vault).unwrap().current_key(node.key()).unwrap();
    let id = [i as u8 + 1; 16];
    (id, prepared.bundle.seal(&key, &vault, &id).unwrap())
}

/// What device `i` makes of a bundle with the keys it holds: `true` if one opened it.
fn pick_up(net: &mut Network, i: usize, vault: VaultId, (id, bytes): &([u8; 16], Vec<u8>)) -> bool {
    let node = &net.devices[i].node;
    let keys = node.vault(&vault).unwrap().held_keys(node.key());
    let Some(bundle) = keys
        .iter()
        .find_map(|(_, key)| Bundle::open(bytes, key, &vault, id).ok())
    else {
        return false;
    };
    let now = net.now_ms;
    let out = net.devices[i].node.receive_bundle(vault, bundle, now);
    net.apply_output(i, out);
    true
}

#[test]
fn bundles_carry_changes_to_offline_members_and_not_past_a_revocation() {
    let (mut net, vault) = vault_of(3, 6);
    net.connect(0, 1);
    net.connect(0, 2);
    settle(&mut net);
    net.disconnect(0, 1);
    net.disconnect(0, 2);
    // B and C are offline; A writes and leaves a bundle.
    let before = std::collections::BTreeMap::new();
    put(&mut net, 0, vault, doc(7), "left", 1);
    let first = left_at_relay(&net, 0, vault, &before);
    assert!(pick_up(&mut net, 1, vault, &first));
    assert_eq!(get(&net, 1, vault, doc(7)), serde_json::json!({"left": 1}));
    // A revokes C (offline) and writes again: the bundle is under a new key.
    let now = net.now_ms;
    let c = net.id(2);
    let out = net.devices[0].node.revoke_device(vault, c, now).unwrap();
    net.apply_output(0, out);
    let since = net.devices[0]
        .node
        .bundle_since(&vault, &before, MAX_BUNDLE_PLAINTEXT)
        .unwrap()
        .heads;
    put(&mut net, 0, vault, doc(7), "secret", 2);
    let second = left_at_relay(&net, 0, vault, &since);
    assert!(!pick_up(&mut net, 2, vault, &second), "C cannot open it");
    assert!(
        !pick_up(&mut net, 1, vault, &second),
        "B does not have the new key yet"
    );
    // Entries alone under the old key bring B the new key (and C only the news of its
    // revocation, with a key sealed to others).
    let node = &net.devices[0].node;
    let entries = Bundle {
        entries: node
            .vault(&vault)
            .unwrap()
            .log()
            .entries()
            .into_iter()
            .cloned()
            .collect(),
        docs: Vec::new(),
    };
    let old = node.vault(&vault).unwrap().held_keys(node.key())[1]
        .1
        .clone();
    let notice = ([9; 16], entries.seal(&old, &vault, &[9; 16]).unwrap());
    assert!(pick_up(&mut net, 1, vault, &notice));
    assert!(pick_up(&mut net, 1, vault, &second));
    assert_eq!(
        get(&net, 1, vault, doc(7)),
        serde_json::json!({"left": 1, "secret": 2})
    );
    assert!(pick_up(&mut net, 2, vault, &notice));
    assert!(!pick_up(&mut net, 2, vault, &second), "still not C");
    assert_eq!(get(&net, 2, vault, doc(7)), serde_json::Value::Null);
}

#[test]
fn a_bundle_with_a_strangers_change_adds_only_the_valid_ones() {
    let (mut net, vault) = vault_of(2, 7);
    net.connect(0, 1);
    settle(&mut net);
    net.disconnect(0, 1);
    put(&mut net, 0, vault, doc(8), "good", 1);
    let node = &net.devices[0].node;
    let mut prepared = node
        .bundle_since(&vault, &Default::default(), MAX_BUNDLE_PLAINTEXT)
        .unwrap();
    // A stranger's change, signed by its own key, slipped in by someone holding the key.
    let stranger = DeviceKey::from_secret_bytes(&[77; 32]);
    let (mut other, _) = Vault::create(&stranger, "x", [1; 16], 0, ActorId::random()).unwrap();
    let _ = other.create_document(&stranger, doc(8), 0).unwrap();
    let forged = other
        .change(&stranger, doc(8), |tx| tx.put(ROOT, "evil", 1).map(|_| ()))
        .unwrap()
        .unwrap();
    prepared.bundle.docs[0].1.push(forged.change);
    let (_, key) = node.vault(&vault).unwrap().current_key(node.key()).unwrap();
    let sealed = (
        [3; 16],
        prepared.bundle.seal(&key, &vault, &[3; 16]).unwrap(),
    );
    assert!(pick_up(&mut net, 1, vault, &sealed));
    assert_eq!(get(&net, 1, vault, doc(8)), serde_json::json!({"good": 1}));
}

#[test]
fn offline_edits_on_both_sides_merge_after_reconnect() {
    let (mut net, vault) = vault_of(2, 5);
    net.connect(0, 1);
    settle(&mut net);
    put(&mut net, 0, vault, doc(1), "shared", 0);
    settle(&mut net);
    net.disconnect(0, 1);
    for k in 0..20 {
        put(&mut net, 0, vault, doc(1), &format!("a{k}"), k);
        put(&mut net, 1, vault, doc(1), &format!("b{k}"), k);
    }
    net.connect(0, 1);
    settle(&mut net);
    assert_eq!(get(&net, 0, vault, doc(1)), get(&net, 1, vault, doc(1)));
    assert_eq!(get(&net, 0, vault, doc(1)).as_object().unwrap().len(), 41);
}

/// Two in-sync devices holding `docs` documents (one change each).
fn in_sync_pair(docs: usize) -> (Network, VaultId) {
    let (mut net, vault) = vault_of(2, 6);
    let now = net.now_ms;
    let mut out = nexus_core::Output::default();
    for k in 0..docs {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(k as u64).to_be_bytes());
        let d = DocId(id);
        out.extend(net.devices[0].node.create_document(vault, d, now).unwrap());
        out.extend(
            net.devices[0]
                .node
                .change(vault, d, |tx| tx.put(ROOT, "n", k as i64).map(|_| ()))
                .unwrap(),
        );
    }
    net.apply_output(0, out);
    // Device 1 starts from a copy of device 0's store: already in sync.
    net.devices[1].store = net.devices[0].store.clone();
    net.restart(1);
    (net, vault)
}

#[test]
fn reconnecting_with_ten_thousand_unchanged_documents_costs_two_round_trips_and_little() {
    let (mut net, _) = in_sync_pair(10_000);
    net.traffic = Default::default();
    net.connect(0, 1);
    let rounds = net.run_until_quiescent(100);
    let traffic = net.traffic;
    assert!(rounds <= 4, "{rounds} rounds (2 per round trip)");
    assert!(traffic.bytes <= 16 * 1024, "{traffic:?}");
    println!("in-sync reconnect, 10,000 documents: {rounds} rounds, {traffic:?}");
}

/// Bytes to sync one edit of `value_len` bytes among `docs` unchanged documents.
fn one_change_cost(docs: usize, value_len: usize) -> (u64, usize) {
    let (mut net, vault) = in_sync_pair(docs);
    let target = {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&((docs / 2) as u64).to_be_bytes());
        DocId(id)
    };
    let value = "x".repeat(value_len);
    let out = net.devices[0]
        .node
        .change(vault, target, |tx| {
            let text = tx.put_object(ROOT, "note", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, &value)
        })
        .unwrap();
    net.apply_output(0, out);
    net.traffic = Default::default();
    net.connect(0, 1);
    let rounds = net.run_until_quiescent(100);
    assert_eq!(
        get(&net, 1, vault, target)["note"],
        serde_json::json!(value)
    );
    (net.traffic.bytes, rounds)
}

#[test]
fn one_changed_document_costs_bytes_in_proportion_to_the_change_not_the_vault() {
    let (small_vault, rounds_small) = one_change_cost(1_000, 10);
    let (large_vault, rounds_large) = one_change_cost(10_000, 10);
    let (large_change, _) = one_change_cost(10_000, 20_000);
    println!(
        "one changed doc: 1,000 docs {small_vault} B in {rounds_small} rounds; 10,000 docs {large_vault} B in {rounds_large} rounds; 20 KB edit {large_change} B"
    );
    // Ten times the documents adds at most one split level (16 fingerprints).
    assert!(
        large_vault < small_vault + 1_500,
        "{small_vault} -> {large_vault}"
    );
    assert!(large_vault < 8 * 1024, "{large_vault}");
    // A 20 KB edit costs about 20 KB more, whatever the vault.
    let extra = large_change - large_vault;
    assert!((18_000..24_000).contains(&extra), "{extra}");
}

#[test]
fn garbage_and_forged_messages_close_the_session_and_touch_nothing() {
    let (mut net, vault) = vault_of(2, 7);
    net.connect(0, 1);
    settle(&mut net);
    put(&mut net, 0, vault, doc(1), "x", 1);
    settle(&mut net);
    let (session, _, _, ready) = net.devices[0].node.sessions().next().unwrap();
    assert!(ready);
    let before = net.devices[0].store.records().clone();
    let now = net.now_ms;
    // A forged change: device 1's key is not the signer.
    let mut forged = net.devices[0]
        .node
        .vault(&vault)
        .unwrap()
        .document(&doc(1))
        .unwrap()
        .changes_since(&[]);
    forged[0].author = net.id(1);
    let message = Message::DocChanges {
        doc: doc(2),
        heads: vec![],
        changes: forged,
    };
    let out = net.devices[0]
        .node
        .handle_message(session, &message.encode(), now);
    assert!(out.batch.is_empty());
    assert_eq!(out.closed.len(), 1);
    assert_eq!(out.closed[0].1.code, RefuseCode::ProtocolViolation);
    assert!(
        net.devices[0]
            .node
            .vault(&vault)
            .unwrap()
            .document(&doc(2))
            .is_none()
    );
    // Garbage and oversized input on new sessions.
    for bytes in [
        vec![0xff; 64],
        vec![1, 200],
        vec![1; nexus_core::protocol::MAX_MESSAGE_BYTES + 1],
        vec![],
    ] {
        let peer = net.id(1);
        let id = net.devices[0].node.accept_session(peer);
        let out = net.devices[0].node.handle_message(id, &bytes, now);
        assert!(out.batch.is_empty());
        assert_eq!(out.closed[0].1.code, RefuseCode::ProtocolViolation);
    }
    assert_eq!(net.devices[0].store.records(), &before);
    // Other sessions keep working.
    net.disconnect(0, 1);
    net.connect(0, 1);
    put(&mut net, 1, vault, doc(1), "y", 2);
    settle(&mut net);
    assert_eq!(
        get(&net, 0, vault, doc(1)),
        serde_json::json!({"x": 1, "y": 2})
    );
}

#[test]
fn a_fresh_device_gets_a_large_document_as_one_snapshot_and_a_tampered_one_is_refused() {
    let (mut net, vault) = vault_of(2, 9);
    for k in 0..100 {
        put(&mut net, 0, vault, doc(1), &format!("k{}", k % 7), k);
    }
    net.connect(0, 1);
    // Watch what device 0 sends: the document goes as one snapshot.
    net.traffic = Default::default();
    settle(&mut net);
    assert_eq!(get(&net, 1, vault, doc(1)), get(&net, 0, vault, doc(1)));
    let stored =
        nexus_core::Vault::load(&net.devices[1].store, vault, nexus_core::ActorId::random())
            .unwrap();
    let copy = stored.document(&doc(1)).unwrap();
    assert_eq!(copy.change_count(), 100);
    assert!(
        copy.verify().is_empty(),
        "every signature came along and verifies"
    );
    assert_eq!(net.devices[1].store.count(nexus_core::Table::Snapshots), 1);
    assert!(net.traffic.bytes < 100 * 110, "{:?}", net.traffic);

    // A snapshot with one signature altered is refused whole, and the sender cut off.
    let mut snapshot = net.devices[0]
        .node
        .vault(&vault)
        .unwrap()
        .document(&doc(1))
        .unwrap()
        .snapshot_bytes();
    let last = snapshot.len() - 1;
    snapshot[last] ^= 1;
    let (other_vault, out) = net.devices[1]
        .node
        .create_vault("other", [5; 16], 0)
        .unwrap();
    net.apply_output(1, out);
    let _ = other_vault;
    let session = session_by_hand(&mut net, 1, 0, vault);
    let before = net.devices[1].store.records().clone();
    let message = Message::DocSnapshot {
        doc: doc(2),
        heads: vec![],
        snapshot,
    };
    let out = net.devices[1]
        .node
        .handle_message(session, &message.encode(), net.now_ms);
    assert!(out.batch.is_empty());
    assert_eq!(
        out.closed.first().map(|(_, r)| r.code),
        Some(RefuseCode::ProtocolViolation)
    );
    assert_eq!(net.devices[1].store.records(), &before);
    assert!(
        net.devices[1]
            .node
            .vault(&vault)
            .unwrap()
            .document(&doc(2))
            .is_none()
    );
}

/// Device 0 writes 100 changes to a document; device 1, which has none, connects and
/// gets it. Returns the network once both hold the same document.
fn first_sync_of_a_hundred_changes(seed: u64, config: NodeConfig) -> Network {
    let (mut net, vault) = vault_with(2, seed, config);
    for k in 0..100 {
        put(&mut net, 0, vault, doc(1), &format!("k{}", k % 7), k);
    }
    net.connect(0, 1);
    settle(&mut net);
    assert_eq!(get(&net, 1, vault, doc(1)), get(&net, 0, vault, doc(1)));
    net
}

/// Three devices: device 2 (a member) synced once, then went away; device 1 has
/// accepted a session from it, by hand, up to its `Hello`. Returns the session on
/// device 1, for a test to hand it device 2's messages one at a time.
fn session_from_an_absent_writer(seed: u64, config: NodeConfig) -> (Network, VaultId, SessionId) {
    let (mut net, vault) = vault_with(3, seed, config);
    net.connect(0, 1);
    net.connect(0, 2);
    settle(&mut net);
    net.disconnect(0, 2);
    let session = session_by_hand(&mut net, 1, 2, vault);
    (net, vault, session)
}

/// A session on device `on` accepted from device `from`, whose `Hello` (about `vault`)
/// is handed over by hand; the test then plays `from`'s part.
fn session_by_hand(net: &mut Network, on: usize, from: usize, vault: VaultId) -> SessionId {
    let peer = net.id(from);
    let session = net.devices[on].node.accept_session(peer);
    let hello = Message::Hello {
        vault,
        membership_heads: net.devices[on].node.vault(&vault).unwrap().log().heads(),
        join: None,
        snapshot_max_changes: 0,
    };
    let out = net.devices[on]
        .node
        .handle_message(session, &hello.encode(), net.now_ms);
    assert!(out.closed.is_empty());
    session
}

#[test]
fn a_snapshot_checked_a_slice_at_a_time_arrives_whole_and_later_messages_wait_their_turn() {
    let sliced = NodeConfig {
        verify_slice: 10,
        ..CONFIG
    };
    let net = first_sync_of_a_hundred_changes(12, sliced);
    assert_eq!(net.devices[1].store.count(nexus_core::Table::Snapshots), 1);
    assert!(!net.devices[1].node.has_work());

    // By hand: device 2 (a member never connected) wrote two documents; their snapshots
    // reach device 1 on one session. The first is checked over several calls, the
    // second waits behind it, and both land, in order.
    let (mut net, vault, session) = session_from_an_absent_writer(13, sliced);
    for k in 0..50 {
        put(&mut net, 2, vault, doc(3), "a", k);
    }
    for k in 0..20 {
        put(&mut net, 2, vault, doc(4), "b", k);
    }
    let snapshot_of = |net: &Network, d: DocId| {
        let document = document_on(net, 2, vault, d);
        Message::DocSnapshot {
            doc: d,
            heads: document.heads(),
            snapshot: document.snapshot_bytes(),
        }
        .encode()
    };
    let now = net.now_ms;
    let (snapshot_3, snapshot_4) = (snapshot_of(&net, doc(3)), snapshot_of(&net, doc(4)));
    let first = net.devices[1]
        .node
        .handle_message(session, &snapshot_3, now);
    assert!(
        first.batch.is_empty(),
        "nothing stored before every signature is checked"
    );
    assert!(net.devices[1].node.has_work());
    let queued = net.devices[1]
        .node
        .handle_message(session, &snapshot_4, now);
    assert!(queued.batch.is_empty() && queued.transmits.is_empty());
    let mut calls = 0;
    let mut stored = Vec::new();
    while net.devices[1].node.has_work() {
        calls += 1;
        assert!(calls < 100, "work ends");
        let out = net.devices[1].node.work(now);
        assert!(out.closed.is_empty(), "{:?}", out.closed);
        for op in out.batch.ops() {
            if let nexus_core::Op::Put {
                table: nexus_core::Table::Snapshots,
                key,
                ..
            } = op
            {
                stored.push(key[32..48].to_vec());
            }
        }
    }
    assert!(
        calls >= 5,
        "50 signatures in slices of 10 take several calls, took {calls}"
    );
    assert_eq!(stored, vec![doc(3).0.to_vec(), doc(4).0.to_vec()]);
    assert_eq!(get(&net, 1, vault, doc(3)), get(&net, 2, vault, doc(3)));
    assert_eq!(get(&net, 1, vault, doc(4)), get(&net, 2, vault, doc(4)));

    // A snapshot whose last signature was altered is refused whole when its last slice
    // is checked, and nothing of it is stored.
    for k in 0..30 {
        put(&mut net, 2, vault, doc(5), "c", k);
    }
    let mut tampered = net.devices[2]
        .node
        .vault(&vault)
        .unwrap()
        .document(&doc(5))
        .unwrap()
        .snapshot_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let message = Message::DocSnapshot {
        doc: doc(5),
        heads: vec![],
        snapshot: tampered,
    };
    let out = net.devices[1]
        .node
        .handle_message(session, &message.encode(), now);
    assert!(out.closed.is_empty() && net.devices[1].node.has_work());
    let mut closed = Vec::new();
    while net.devices[1].node.has_work() {
        let out = net.devices[1].node.work(now);
        assert!(out.batch.is_empty());
        closed.extend(out.closed);
    }
    assert_eq!(
        closed.first().map(|(_, r)| r.code),
        Some(RefuseCode::ProtocolViolation)
    );
    assert!(
        net.devices[1]
            .node
            .vault(&vault)
            .unwrap()
            .document(&doc(5))
            .is_none()
    );
}

#[test]
fn a_big_document_reaches_a_device_with_a_snapshot_limit_as_a_first_snapshot_and_sliced_changes() {
    let limited = NodeConfig {
        verify_slice: 10,
        snapshot_max_changes: 40,
        ..CONFIG
    };
    let net = first_sync_of_a_hundred_changes(15, limited);
    // The first 40 came as a snapshot, the other 60 as changes; those were checked and
    // applied 10 at a time, then stored with the rest as one snapshot, not one by one.
    assert_eq!(net.devices[1].store.count(nexus_core::Table::Snapshots), 1);
    assert_eq!(net.devices[1].store.count(nexus_core::Table::Changes), 0);

    // By hand: one message of 35 changes to a device that checks 10 at a time is
    // checked and applied over 4 calls and stored at the last as one snapshot; a message
    // that comes meanwhile waits its turn.
    let (mut net, vault, session) = session_from_an_absent_writer(16, limited);
    for k in 0..35 {
        put(&mut net, 2, vault, doc(3), "a", k);
    }
    put(&mut net, 2, vault, doc(4), "b", 1);
    for k in 0..25 {
        put(&mut net, 2, vault, doc(5), "c", k);
    }
    let changes_of = |net: &Network, d: DocId| {
        let document = document_on(net, 2, vault, d);
        Message::DocChanges {
            doc: d,
            heads: document.heads(),
            changes: document.changes_since(&[]),
        }
        .encode()
    };
    let now = net.now_ms;
    let (changes_3, changes_4) = (changes_of(&net, doc(3)), changes_of(&net, doc(4)));
    let first = net.devices[1].node.handle_message(session, &changes_3, now);
    assert!(first.batch.is_empty(), "nothing is applied on arrival");
    let queued = net.devices[1].node.handle_message(session, &changes_4, now);
    assert!(queued.batch.is_empty() && queued.transmits.is_empty());
    let count = |net: &Network, d: DocId| {
        let document = net.devices[1].node.vault(&vault).unwrap().document(&d);
        document.map_or(0, nexus_core::Document::change_count)
    };
    let mut per_call = Vec::new();
    for _ in 0..100 {
        if !net.devices[1].node.has_work() {
            break;
        }
        let out = net.devices[1].node.work(now);
        assert!(out.closed.is_empty(), "{:?}", out.closed);
        per_call.push((count(&net, doc(3)), stored_records(&out.batch)));
        net.apply_output(1, out);
    }
    assert!(!net.devices[1].node.has_work());
    assert_eq!(
        per_call,
        vec![
            (10, (0, 0)),
            (20, (0, 0)),
            (30, (0, 0)),
            (35, (0, 1)),
            (35, (1, 0))
        ]
    );
    assert_eq!(get(&net, 1, vault, doc(3)), get(&net, 2, vault, doc(3)));
    assert_eq!(get(&net, 1, vault, doc(4)), get(&net, 2, vault, doc(4)));

    // The session closes after one slice of a message: what that slice applied is
    // stored all the same, at the next call, and is there after a restart.
    let changes_5 = changes_of(&net, doc(5));
    let out = net.devices[1].node.handle_message(session, &changes_5, now);
    assert!(out.batch.is_empty());
    let out = net.devices[1].node.work(now);
    assert_eq!(stored_records(&out.batch), (0, 0));
    net.apply_output(1, out);
    net.devices[1].node.session_closed(session);
    assert!(net.devices[1].node.has_work());
    let out = net.devices[1].node.work(now);
    assert_eq!(stored_records(&out.batch), (0, 1));
    net.apply_output(1, out);
    assert!(!net.devices[1].node.has_work());
    net.restart(1);
    assert_eq!(count(&net, doc(5)), 10);
}

/// How many change records and snapshot records a batch writes.
fn stored_records(batch: &nexus_core::Batch) -> (usize, usize) {
    let written = |table| {
        batch
            .ops()
            .iter()
            .filter(|op| matches!(op, nexus_core::Op::Put { table: t, .. } if *t == table))
            .count()
    };
    (
        written(nexus_core::Table::Changes),
        written(nexus_core::Table::Snapshots),
    )
}

#[test]
fn replayed_and_duplicated_messages_are_harmless() {
    let (mut net, vault) = vault_of(2, 8);
    net.faults = Faults {
        drop: 0.0,
        duplicate: 1.0,
        max_delay_ms: 0,
    };
    net.connect(0, 1);
    put(&mut net, 0, vault, doc(1), "x", 1);
    for _ in 0..10 {
        net.step(100);
    }
    net.faults = Faults::NONE;
    settle(&mut net);
    assert_eq!(get(&net, 1, vault, doc(1)), serde_json::json!({"x": 1}));
}

#[test]
fn writes_by_another_process_on_the_same_store_are_pushed_to_peers_at_once() {
    let (mut net, vault) = vault_of(2, 7);
    net.connect(0, 1);
    put(&mut net, 0, vault, doc(1), "x", 1);
    settle(&mut net);
    // A second process (a `nexus doc put` next to the daemon) opens device 0's store,
    // edits, approves a new device, and commits.
    let key = net.devices[0].node.key().clone();
    let mut other = Node::load(
        &net.devices[0].store,
        key,
        ActorId::from(&[77u8; 16][..]),
        CONFIG,
    )
    .unwrap();
    let out = other
        .change(vault, doc(1), |tx| tx.put(ROOT, "y", 2).map(|_| ()))
        .unwrap();
    net.devices[0].store.commit(out.batch).unwrap();
    let newcomer = DeviceKey::generate().unwrap().device_id();
    let out = other
        .add_device(vault, newcomer, Role::Member, net.now_ms)
        .unwrap();
    net.devices[0].store.commit(out.batch).unwrap();
    // The running node takes the vault in again and offers what is new right away: no
    // reconcile interval passes before device 1 has it.
    let fresh = Vault::load(&net.devices[0].store, vault, ActorId::from(&[1u8; 16][..])).unwrap();
    let out = net.devices[0].node.refresh_vault(fresh, net.now_ms);
    assert!(!out.transmits.is_empty());
    net.apply_output(0, out);
    net.run_until_quiescent(500);
    assert_eq!(
        get(&net, 1, vault, doc(1)),
        serde_json::json!({"x": 1, "y": 2})
    );
    assert!(
        net.devices[1]
            .node
            .vault(&vault)
            .unwrap()
            .membership()
            .is_member(&newcomer)
    );
    // Nothing new: nothing sent.
    let same = Vault::load(&net.devices[0].store, vault, ActorId::from(&[1u8; 16][..])).unwrap();
    let out = net.devices[0].node.refresh_vault(same, net.now_ms);
    assert!(out.transmits.is_empty() && out.events.is_empty());
}

/// Device 0 takes in what another tab of its profile committed.
fn take_in(net: &mut Network, touched: &Touched) -> nexus_core::node::Output {
    let now = net.now_ms;
    let device = &mut net.devices[0];
    device
        .node
        .take_in_stored(&device.store, touched, now)
        .unwrap()
}

#[test]
fn another_tabs_writes_are_read_back_from_what_its_batch_touched() {
    let (mut net, vault) = vault_of(2, 8);
    net.connect(0, 1);
    put(&mut net, 0, vault, doc(1), "x", 1);
    settle(&mut net);
    // A second tab of device 0's browser profile: same store, its own actor.
    let key = net.devices[0].node.key().clone();
    let mut tab = Node::load(
        &net.devices[0].store,
        key,
        ActorId::from(&[78u8; 16][..]),
        CONFIG,
    )
    .unwrap();

    // A change to a known document: only its change record is named.
    let out = tab
        .change(vault, doc(1), |tx| tx.put(ROOT, "y", 2).map(|_| ()))
        .unwrap();
    let touched = Touched::of(&out.batch);
    net.devices[0].store.commit(out.batch).unwrap();
    assert_eq!(touched.len(), 1);
    assert!(!touched[0].membership && touched[0].whole.is_empty());
    assert_eq!(touched[0].changes[&doc(1)].len(), 1);
    let out = take_in(&mut net, &touched[0]);
    assert!(matches!(
        out.events.as_slice(),
        [Event::DocChanged { doc: d, .. }] if *d == doc(1)
    ));
    assert!(!out.transmits.is_empty(), "offered to the peer at once");
    net.apply_output(0, out);
    net.run_until_quiescent(500);
    assert_eq!(
        get(&net, 0, vault, doc(1)),
        serde_json::json!({"x": 1, "y": 2})
    );
    assert_eq!(
        get(&net, 1, vault, doc(1)),
        serde_json::json!({"x": 1, "y": 2})
    );

    // A new document is read whole, then its first change as a record.
    let created = tab.create_document(vault, doc(2), net.now_ms).unwrap();
    let created_touched = Touched::of(&created.batch);
    assert!(created_touched[0].whole.contains(&doc(2)));
    net.devices[0].store.commit(created.batch).unwrap();
    let changed = tab
        .change(vault, doc(2), |tx| tx.put(ROOT, "z", 3).map(|_| ()))
        .unwrap();
    let changed_touched = Touched::of(&changed.batch);
    net.devices[0].store.commit(changed.batch).unwrap();
    for touched in [&created_touched[0], &changed_touched[0]] {
        let out = take_in(&mut net, touched);
        net.apply_output(0, out);
    }
    net.run_until_quiescent(500);
    assert_eq!(get(&net, 1, vault, doc(2)), serde_json::json!({"z": 3}));

    // A membership entry: the vault is read whole and the peer learns it.
    let newcomer = DeviceKey::generate().unwrap().device_id();
    let out = tab
        .add_device(vault, newcomer, Role::Member, net.now_ms)
        .unwrap();
    let touched = Touched::of(&out.batch);
    net.devices[0].store.commit(out.batch).unwrap();
    assert!(touched[0].membership);
    let out = take_in(&mut net, &touched[0]);
    net.apply_output(0, out);
    net.run_until_quiescent(500);
    let member = |i: usize| {
        net.devices[i]
            .node
            .vault(&vault)
            .unwrap()
            .membership()
            .is_member(&newcomer)
    };
    assert!(member(0) && member(1));

    // A message this tab missed: the next change waits for its parent until the
    // document is read again whole, which `what_to_read` asks for.
    let missed = tab
        .change(vault, doc(1), |tx| tx.put(ROOT, "missed", 5).map(|_| ()))
        .unwrap();
    net.devices[0].store.commit(missed.batch).unwrap();
    let next = tab
        .change(vault, doc(1), |tx| tx.put(ROOT, "next", 6).map(|_| ()))
        .unwrap();
    let touched = Touched::of(&next.batch);
    net.devices[0].store.commit(next.batch).unwrap();
    let read = net.devices[0].node.what_to_read(&touched[0]);
    assert_eq!(read, touched[0], "nothing to widen before");
    let out = take_in(&mut net, &read);
    assert!(out.events.is_empty(), "the change waits for its parent");
    let again = net.devices[0].node.what_to_read(&touched[0]);
    assert!(again.whole.contains(&doc(1)) && again.changes.is_empty());
    let out = take_in(&mut net, &again);
    assert_eq!(out.events.len(), 1);
    assert_eq!(get(&net, 0, vault, doc(1))["next"], serde_json::json!(6));
    assert_eq!(get(&net, 0, vault, doc(1))["missed"], serde_json::json!(5));
    // A vault this node does not hold is read whole.
    let stranger = Touched {
        vault: VaultId(nexus_core::Hash([9; 32])),
        ..touched[0].clone()
    };
    assert!(net.devices[0].node.what_to_read(&stranger).membership);

    // Taking the same records in again changes nothing and sends nothing.
    let out = tab
        .change(vault, doc(1), |tx| tx.put(ROOT, "w", 4).map(|_| ()))
        .unwrap();
    let touched = Touched::of(&out.batch);
    net.devices[0].store.commit(out.batch).unwrap();
    let first = take_in(&mut net, &touched[0]);
    let again = take_in(&mut net, &touched[0]);
    assert_eq!(first.events.len(), 1);
    assert!(again.events.is_empty() && again.transmits.is_empty());
}

#[test]
fn five_hundred_random_seeds_converge() {
    let mut failures = Vec::new();
    for seed in 0..500 {
        if let Err(e) = run_seed(seed, Scenario::new()) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    // Seeds the long soak once failed on (a revoked device's recorded cut naming a change
    // that another revocation later dropped; two sides answering each other's repeated
    // hellos forever; asking for held changes in a loop), kept so they stay fixed.
    for seed in [
        10087, 54033, 55028, 63996, 65340, 66006, 68800, 68913, 90073,
    ] {
        if let Err(e) = run_seed(seed, Scenario::new()) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    for (devices, seeds) in [(2usize, 0..60u64), (8, 0..60)] {
        let scenario = Scenario {
            devices,
            ..Scenario::new()
        };
        for seed in seeds {
            if let Err(e) = run_seed(seed, scenario) {
                failures.push(format!("{devices} devices, seed {seed}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn mutated_real_messages_never_panic_a_node(
        which in 0usize..6,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let heads = vec![automerge::ChangeHash([3; 32])];
        let messages = [
            Message::Hello { vault: VaultId(nexus_core::Hash([1; 32])), membership_heads: vec![nexus_core::Hash([2; 32])], join: None, snapshot_max_changes: 4096 },
            Message::Reconcile { ranges: vec![] },
            Message::DocHeads { doc: doc(1), heads: heads.clone(), reply: false },
            Message::DocHave { doc: doc(1), heads: heads.clone(), bloom: vec![0; 16] },
            Message::DocNeed { doc: doc(1), hashes: heads.clone() },
            Message::Refuse { code: RefuseCode::NotMember, reason: "no".into() },
        ];
        let mut bytes = messages[which].encode();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = Message::decode(&bytes);
        let mut net = Network::new(2, 1, CONFIG);
        let peer = net.id(1);
        let id = net.devices[0].node.accept_session(peer);
        let out = net.devices[0].node.handle_message(id, &bytes, 0);
        prop_assert!(out.batch.is_empty());
    }
}

#[test]
fn a_node_loaded_a_few_documents_at_a_time_equals_one_loaded_at_once() {
    let (mut net, vault) = vault_of(2, 9);
    net.connect(0, 1);
    for n in 1..=5u8 {
        put(&mut net, 0, vault, doc(n), "x", i64::from(n));
    }
    settle(&mut net);
    let store = &net.devices[0].store;
    let key = net.devices[0].node.key().clone();
    let actor = ActorId::from(&[79u8; 16][..]);
    let whole = Node::load(store, key.clone(), actor.clone(), CONFIG).unwrap();

    let mut loader = NodeLoader::new(store, key, actor, CONFIG).unwrap();
    assert_eq!(loader.progress(), (0, 5));
    assert!(!loader.step(store, 2).unwrap());
    assert_eq!(loader.progress(), (2, 5));
    assert!(!loader.step(store, 2).unwrap());
    assert!(loader.step(store, 2).unwrap());
    assert_eq!(loader.progress(), (5, 5));
    let stepped = loader.finish(store).unwrap();

    assert_eq!(stepped.fingerprint(&vault), whole.fingerprint(&vault));
    let (a, b) = (stepped.vault(&vault).unwrap(), whole.vault(&vault).unwrap());
    assert_eq!(a.membership().members().len(), 2);
    assert_eq!(a.log().heads(), b.log().heads());
    for n in 1..=5u8 {
        let (x, y) = (a.document(&doc(n)).unwrap(), b.document(&doc(n)).unwrap());
        assert_eq!(x.heads(), y.heads());
        assert_eq!(x.to_json(), serde_json::json!({ "x": n }));
    }
    // A loader stopped early still gives the whole node.
    let key = net.devices[0].node.key().clone();
    let mut loader = NodeLoader::new(store, key, ActorId::random(), CONFIG).unwrap();
    loader.step(store, 1).unwrap();
    let finished = loader.finish(store).unwrap();
    assert_eq!(finished.fingerprint(&vault), whole.fingerprint(&vault));
}

/// Finding 11: a stranger on the LAN makes a vault, approves our device by id and offers
/// it. Nothing of it is stored or synced until the person answers; declined, it is
/// refused from then on; accepted (a real approval), it syncs at once.
#[test]
fn an_approval_this_device_never_asked_for_waits_for_the_person_and_a_declined_one_is_refused() {
    // Device 0: a member's vault that approves device 1; device 2: a stranger that does
    // the same with a vault of its own.
    let mut net = Network::new(3, 41, CONFIG);
    let family = vault_approving(&mut net, 0, ("family", 0), 1, Role::Member);
    let spam = vault_approving(&mut net, 2, ("free prizes", 9), 1, Role::Admin);
    put(&mut net, 0, family, doc(1), "milk", 1);
    net.devices[1].accepts_offers = false;
    let stored_before = net.devices[1].store.records().clone();

    net.connect(1, 2);
    net.connect(0, 1);
    settle(&mut net);
    let offers = net.devices[1].node.offers();
    let names: Vec<&str> = offers.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["free prizes", "family"]);
    assert_eq!(offers[0].offered_by, net.id(2));
    assert_eq!(net.devices[1].node.vaults().count(), 0, "nothing held");
    assert_eq!(
        net.devices[1].store.records(),
        &stored_before,
        "nothing stored"
    );

    // The person declines the stranger's vault and accepts the family's.
    net.devices[1].node.decline_offer(spam);
    let now = net.now_ms;
    let out = net.devices[1].node.accept_offer(family, now).unwrap();
    net.apply_output(1, out);
    settle(&mut net);
    assert_eq!(get(&net, 1, family, doc(1)), serde_json::json!({"milk": 1}));
    assert!(net.devices[1].node.vault(&spam).is_none());
    assert!(net.devices[1].node.offers().is_empty());
    // The stranger tries again: refused, never held.
    net.disconnect(1, 2);
    net.step(60_000);
    net.connect(1, 2);
    settle(&mut net);
    assert!(net.devices[1].node.vault(&spam).is_none());
    assert!(net.devices[1].node.offers().is_empty());
    assert!(
        net.devices[1].node.accept_offer(spam, net.now_ms).is_err(),
        "a declined vault cannot be accepted by mistake"
    );
}

/// Finding 6: offers are bounded: a flood of strangers' vaults keeps at most
/// `MAX_OFFERS` waiting, and the newest real one among them.
#[test]
fn a_flood_of_offered_vaults_keeps_a_bounded_number_waiting() {
    let n = nexus_core::node::MAX_OFFERS + 3;
    let mut net = Network::new(n + 1, 42, CONFIG);
    net.devices[0].accepts_offers = false;
    for i in 1..=n {
        let name = format!("spam {i}");
        vault_approving(&mut net, i, (&name, i as u8), 0, Role::Member);
        net.connect(0, i);
        settle(&mut net);
    }
    let offers = net.devices[0].node.offers();
    assert_eq!(offers.len(), nexus_core::node::MAX_OFFERS);
    assert_eq!(
        offers.last().map(|o| o.name.clone()),
        Some(format!("spam {n}"))
    );
}

/// An approval the person expects (they named the approving device) is taken in at once;
/// the same offer from another device still waits.
#[test]
fn an_expected_approval_is_taken_in_without_asking() {
    let (mut net, vault) = vault_of(3, 43);
    for i in [1, 2] {
        net.devices[i].accepts_offers = false;
    }
    let alice = net.id(0);
    net.devices[1].node.expect_offers_from(alice);
    net.connect(0, 1);
    net.connect(0, 2);
    settle(&mut net);
    assert!(net.devices[1].node.vault(&vault).is_some());
    assert!(net.devices[1].node.offers().is_empty());
    assert!(net.devices[2].node.vault(&vault).is_none());
    assert_eq!(net.devices[2].node.offers().len(), 1);
}

/// A hostile member among the devices: it replays, back-dates revocations and approvals
/// on its own admission, forges changes and sends garbage, as its keys allow. The honest
/// members still converge, store nothing forged or foreign, and keep nothing of a revoked
/// device past its cut.
#[test]
fn five_hundred_seeds_with_a_hostile_member_converge() {
    let mut failures = Vec::new();
    let mut acts = nexus_core::sim::HostileActs::default();
    let (mut kept, mut edits) = (0, 0);
    for (hostile, devices, seeds) in [(1usize, 4usize, 0..400u64), (2, 6, 400..500)] {
        let scenario = Scenario {
            devices,
            hostile,
            ..Scenario::new()
        };
        for seed in seeds {
            match run_seed(seed, scenario) {
                Ok(report) => {
                    acts.replays += report.hostile.replays;
                    acts.back_dated += report.hostile.back_dated;
                    acts.forgeries += report.hostile.forgeries;
                    acts.garbage += report.hostile.garbage;
                    kept += report.edits_kept;
                    edits += report.edits;
                }
                Err(e) => failures.push(format!("{hostile} hostile, seed {seed}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The attacks were mounted, not skipped (a forgery needs a document with an honest
    // change in it, so it is the rarest).
    eprintln!(
        "hostile acts over 500 seeds: {acts:?}; honest edits kept as checked: {kept} of {edits}"
    );
    // Most honest work is checked to survive (the rest was voided by the rules).
    assert!(kept * 2 > edits, "only {kept} of {edits} edits checked");
    for (what, count) in [
        ("replays", acts.replays),
        ("back-dated entries", acts.back_dated),
        ("forgeries", acts.forgeries),
        ("garbage", acts.garbage),
    ] {
        assert!(count > 50, "only {count} {what}");
    }
}

/// While an offer waits, what the members send later is kept with it (a revocation the
/// first offerer left out reaches the person's copy), and an offer of a vault taken in
/// meanwhile another way is dropped rather than accepted over the live vault.
#[test]
fn a_waiting_offer_keeps_later_entries_and_goes_once_the_vault_is_joined_another_way() {
    let (mut net, vault) = vault_of(4, 45);
    for i in 1..4 {
        net.devices[i].accepts_offers = false;
    }
    net.connect(0, 1);
    settle(&mut net);
    assert_eq!(net.devices[1].node.offers().len(), 1);
    // Alice revokes Carol while Bob's offer waits.
    let carol = net.id(2);
    let now = net.now_ms;
    let out = net.devices[0]
        .node
        .revoke_device(vault, carol, now)
        .unwrap();
    net.apply_output(0, out);
    settle(&mut net);
    let now = net.now_ms;
    let _ = net.devices[1].node.accept_offer(vault, now).unwrap();
    let held = net.devices[1].node.vault(&vault).unwrap().membership();
    assert!(
        held.revocation(&carol).is_some(),
        "the revocation sent while the offer waited is in it"
    );

    // Dave's offer is overtaken: he names Alice (as a daemon told to dial her does), and
    // her next offer is taken in at once. The waiting one goes, and accepting it later
    // changes nothing.
    net.connect(0, 3);
    settle(&mut net);
    assert_eq!(net.devices[3].node.offers().len(), 1);
    let alice = net.id(0);
    net.devices[3].node.expect_offers_from(alice);
    net.disconnect(0, 3);
    net.step(120_000);
    net.connect(0, 3);
    settle(&mut net);
    assert!(net.devices[3].node.vault(&vault).is_some(), "taken in");
    assert!(net.devices[3].node.offers().is_empty(), "the offer went");
    let now = net.now_ms;
    assert!(net.devices[3].node.accept_offer(vault, now).is_err());
}

/// A big log with an old revocation race (each batch of it judged entry by entry, over
/// the work one batch may take) still reaches a device that joins by invite: the
/// inviter's log is taken in whole, batch after batch.
#[test]
fn a_device_joining_a_big_log_with_a_revocation_race_gets_all_of_it() {
    use nexus_core::membership::{Action, Entry, MembershipError, WorkSeen};
    use nexus_core::{Hash, Received, SignedEntry};
    let mut net = Network::new(2, 46, CONFIG);
    let alice = net.devices[0].node.key().clone();
    let dave = DeviceKey::from_secret_bytes(&[3; 32]);
    let sign = |key: &DeviceKey, vault, parents: Vec<Hash>, at: u64, action| -> SignedEntry {
        Entry {
            vault,
            parents,
            author: key.device_id(),
            timestamp_ms: at,
            action,
        }
        .sign(key)
    };
    let genesis = sign(
        &alice,
        None,
        Vec::new(),
        1,
        Action::Genesis {
            name: "big".into(),
            nonce: [4; 16],
        },
    );
    let vault = VaultId(genesis.hash());
    let v = Some(vault);
    let add_dave = sign(
        &alice,
        v,
        vec![genesis.hash()],
        2,
        Action::AddDevice {
            device: dave.device_id(),
            role: Role::Admin,
        },
    );
    let revoke = sign(
        &alice,
        v,
        vec![add_dave.hash()],
        3,
        Action::RevokeDevice {
            device: dave.device_id(),
            seen: WorkSeen::new(),
        },
    );
    let racing = sign(
        &dave,
        v,
        vec![add_dave.hash()],
        3,
        Action::AddDevice {
            device: DeviceKey::from_secret_bytes(&[5; 32]).device_id(),
            role: Role::Member,
        },
    );
    let mut parents = vec![revoke.hash(), racing.hash()];
    parents.sort();
    let mut entries = vec![genesis, add_dave, revoke, racing];
    for n in 0..1_400u32 {
        let mut secret = [8u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        let entry = sign(
            &alice,
            v,
            parents,
            10 + u64::from(n),
            Action::AddDevice {
                device: DeviceKey::from_secret_bytes(&secret).device_id(),
                role: Role::Member,
            },
        );
        parents = vec![entry.hash()];
        entries.push(entry);
    }
    let total = entries.len();
    // Alice's node gets the vault (as another process of hers would have stored it).
    let (mut held, ingested) =
        Vault::from_entries(vault, entries.clone(), Received::STORED, ActorId::random()).unwrap();
    assert!(
        ingested
            .refused
            .iter()
            .any(|e| matches!(e, MembershipError::Postponed { .. })),
        "one batch does not take it all"
    );
    for _ in 0..20 {
        let _ = held.ingest_entries(entries.clone(), Received::STORED);
    }
    assert_eq!(held.log().len(), total);
    let now = net.now_ms;
    let out = net.devices[0].node.refresh_vault(held, now);
    net.apply_output(0, out);
    let request = member_invite(&mut net, vault);
    net.connect(0, 1);
    let _ = net.join(1, 0, vault, request);
    settle(&mut net);
    let joined = net.devices[1]
        .node
        .vault(&vault)
        .unwrap_or_else(|| panic!("not joined: {:?}", net.refusals));
    let inviters = net.devices[0].node.vault(&vault).unwrap();
    assert!(
        joined.log().len() > total,
        "the whole log and what came after"
    );
    assert_eq!(joined.log().heads(), inviters.log().heads());
    assert!(joined.membership().is_member(&net.id(1)));
}

/// Finding 6: a stranger keeps a session open (its entries "withheld") and sends well
/// signed entries of its own again and again, each a signature to check. A session reads
/// a bounded number of entries from a peer that is not a member, then refuses it as a
/// protocol violation; empty `Entries` (the retries of an honest handshake) cost nothing.
#[test]
fn a_stranger_sending_entries_again_and_again_is_cut_off_after_a_bounded_number() {
    use nexus_core::{Action, Entry, Hash};
    let (mut net, vault) = vault_of(1, 45);
    let stranger = DeviceKey::from_secret_bytes(&[77; 32]);
    let a_id = net.id(0);
    let session = net.devices[0].node.accept_session(stranger.device_id());
    let now = net.now_ms;
    let mut node = Node::new(stranger.clone(), ActorId::random(), CONFIG);
    let (_, hello) = node.open_session(a_id, vault, true, None, now);
    for (_, bytes) in hello.transmits {
        let _ = net.devices[0].node.handle_message(session, &bytes, now);
    }
    let entries: Vec<_> = (0..1_000u32)
        .map(|i| {
            let mut parent = [0u8; 32];
            parent[..4].copy_from_slice(&i.to_le_bytes());
            Entry {
                vault: Some(vault),
                parents: vec![Hash(parent)],
                author: stranger.device_id(),
                timestamp_ms: now,
                action: Action::CancelInvite {
                    invite: Hash([1; 32]),
                },
            }
            .sign(&stranger)
        })
        .collect();
    let spam = Message::Entries {
        entries,
        withheld: true,
    }
    .encode();
    let empty = Message::Entries {
        entries: Vec::new(),
        withheld: true,
    }
    .encode();
    let mut read = 0;
    let mut refused = None;
    for _ in 0..100 {
        // An honest handshake's retries in between are never counted.
        for _ in 0..10 {
            let out = net.devices[0].node.handle_message(session, &empty, now);
            assert!(out.closed.is_empty(), "empty entries are not counted");
        }
        let out = net.devices[0].node.handle_message(session, &spam, now);
        if let Some((_, reason)) = out.closed.into_iter().next() {
            refused = Some(reason);
            break;
        }
        read += 1;
    }
    let reason = refused.expect("the stranger was cut off");
    assert_eq!(reason.code, RefuseCode::ProtocolViolation);
    assert!(
        reason.reason.contains("while not a member"),
        "{}",
        reason.reason
    );
    assert_eq!(read, 40, "40 messages of 1,000 entries were read, no more");
    assert!(
        net.devices[0]
            .node
            .vault(&vault)
            .unwrap()
            .membership()
            .members()
            .len()
            == 1
    );
}
