//! A hostile member in a random scenario: a device that misbehaves within what its keys
//! allow. Its own node runs as any other; on its turns it also sends its sessions what an
//! attacker would: old messages replayed, membership entries signed on old parents with
//! early timestamps (a revocation of an honest admin, an approval of a stranger), changes
//! with forged signatures or written under an honest device's actor, and garbage.

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};

use super::Network;
use crate::document::{SignedChange, change_signing_message};
use crate::identity::DeviceKey;
use crate::ids::VaultId;
use crate::membership::{Action, Entry, Role, SignedEntry, WorkSeen};
use crate::protocol::Message;

/// What the hostile device did, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostileActs {
    /// Everything it had, sent again.
    pub replays: usize,
    /// Entries signed on its own admission with an early timestamp.
    pub back_dated: usize,
    /// Changes with another device's signature or actor.
    pub forgeries: usize,
    /// Frames that are not messages.
    pub garbage: usize,
}

/// One hostile turn of device `i`: one of the attacks, picked at random.
pub(super) fn act(net: &mut Network, i: usize, vault: VaultId, acts: &mut HostileActs) {
    match net.rng.below(4) {
        0 => replay(net, i, vault, acts),
        1 => back_date(net, i, vault, acts),
        2 => forge(net, i, vault, acts),
        _ => {
            let len = 1 + net.rng.below(64) as usize;
            let garbage: Vec<u8> = (0..len).map(|_| net.rng.below(256) as u8).collect();
            net.inject(i, &garbage);
            acts.garbage += 1;
        }
    }
}

/// Sends every entry and change it holds again.
fn replay(net: &mut Network, i: usize, vault: VaultId, acts: &mut HostileActs) {
    let Some(v) = net.devices[i].node.vault(&vault) else {
        return;
    };
    let entries: Vec<SignedEntry> = v.log().entries().into_iter().cloned().collect();
    let mut messages = vec![Message::Entries {
        entries,
        withheld: false,
    }];
    for doc in v.documents() {
        messages.push(Message::DocChanges {
            doc: doc.id(),
            heads: doc.heads(),
            changes: doc.changes_since(&[]),
        });
    }
    for message in messages {
        net.inject(i, &message.encode());
    }
    acts.replays += 1;
}

/// Signs, on the entry that admitted it and just after it, a revocation of an honest
/// device (not the creator) or an approval of a stranger: valid in that causal past if
/// it was admitted as an admin, so the rules must settle it against what came since.
fn back_date(net: &mut Network, i: usize, vault: VaultId, acts: &mut HostileActs) {
    let me = net.id(i);
    let Some(v) = net.devices[i].node.vault(&vault) else {
        return;
    };
    let Some(member) = v.membership().members().get(&me) else {
        return;
    };
    let Some(admission) = v.log().get(&member.admitted_by) else {
        return;
    };
    let parents = vec![admission.hash()];
    let timestamp_ms = admission.entry().timestamp_ms + 1;
    let n = net.devices.len() as u64;
    let action = if net.rng.chance(0.5) {
        let target = 1 + net.rng.below(n - 1) as usize;
        if target == i {
            return;
        }
        Action::RevokeDevice {
            device: net.id(target),
            seen: WorkSeen::new(),
        }
    } else {
        let stranger = DeviceKey::from_secret_bytes(&net.rng.bytes());
        Action::AddDevice {
            device: stranger.device_id(),
            role: Role::Admin,
        }
    };
    let entry = Entry {
        vault: Some(vault),
        parents,
        author: me,
        timestamp_ms,
        action,
    }
    .sign(&net.devices[i].key);
    let message = Message::Entries {
        entries: vec![entry],
        withheld: false,
    };
    net.inject(i, &message.encode());
    acts.back_dated += 1;
}

/// A change of its own signed as someone else, or signed by itself but written under an
/// honest device's actor.
fn forge(net: &mut Network, i: usize, vault: VaultId, acts: &mut HostileActs) {
    let me = net.id(i);
    let key = net.devices[i].key.clone();
    let Some(v) = net.devices[i].node.vault(&vault) else {
        return;
    };
    let Some(doc) = v.documents().next() else {
        return;
    };
    let id = doc.id();
    let honest: Vec<SignedChange> = doc
        .changes_since(&[])
        .into_iter()
        .filter(|c| c.author != me)
        .collect();
    let Some(victim) = honest.first().cloned() else {
        return;
    };
    let mut raw = doc.automerge().clone();
    if let Ok(change) = automerge::Change::from_bytes(victim.bytes.clone()) {
        // Under the victim's actor: refused as a foreign actor however it is signed.
        raw.set_actor(change.actor_id().clone());
    }
    let mut tx = raw.transaction();
    if tx.put(ROOT, "hostile", net.rng.below(1000) as i64).is_err() {
        return;
    }
    let (Some(hash), _) = tx.commit() else {
        return;
    };
    let Some(change) = raw.get_change_by_hash(&hash) else {
        return;
    };
    let bytes = change.raw_bytes().to_vec();
    let signed = if net.rng.chance(0.5) {
        SignedChange {
            bytes,
            author: me,
            signature: key.sign(&change_signing_message(&vault, &id, &hash)),
        }
    } else {
        // The victim named as author, with the hostile device's signature.
        SignedChange {
            bytes,
            author: victim.author,
            signature: key.sign(&change_signing_message(&vault, &id, &hash)),
        }
    };
    let message = Message::DocChanges {
        doc: id,
        heads: vec![hash],
        changes: vec![signed],
    };
    net.inject(i, &message.encode());
    acts.forgeries += 1;
}
