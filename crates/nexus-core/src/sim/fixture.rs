//! A fixed membership story whose digest every platform must agree on.

use super::actor;
use crate::identity::DeviceKey;
use crate::membership::Role;

/// A fixed membership story played with deterministic keys and clocks: approvals by id, an
/// invite redeemed twice concurrently, an admin revoked while it approves someone, two
/// admins revoking each other, and key creation, sharing and rotation. Returns the digest
/// of the membership it evaluates to. Signatures and sealing are deterministic, so every
/// platform must give the same digest; tests on native and in the browser compare it with
/// the same recorded value.
pub fn membership_fixture_digest() -> crate::hash::Hash {
    use crate::membership::{MembershipLog, Received};
    use crate::vault::Vault;

    let key = |n: u8| DeviceKey::from_secret_bytes(&[n; 32]);
    let Ok((mut vault, _)) = Vault::create(&key(1), "fixture", [7; 16], 1_000, actor(1, 0)) else {
        return crate::hash::Hash([0; 32]);
    };
    let mut steps = Vec::new();
    steps.push(vault.maintain_keys(&key(1), 1_001).is_ok());
    for (n, role) in [(2, Role::Admin), (3, Role::Admin), (4, Role::Member)] {
        steps.push(
            vault
                .add_device(&key(1), key(n).device_id(), role, 2_000 + u64::from(n))
                .is_ok(),
        );
    }
    steps.push(vault.maintain_keys(&key(1), 2_100).is_ok());
    let secret = [9u8; 32];
    let invite = vault.create_invite(&key(2), &secret, Role::Member, 10_000, 3_000);
    let log = |v: &Vault| -> Vec<crate::membership::SignedEntry> {
        v.log().entries().into_iter().cloned().collect()
    };
    if let Ok((invite, _)) = invite {
        // Two devices redeem the same invite concurrently.
        for (n, at) in [(5u8, 3_500u64), (6, 3_400)] {
            let Some(genesis) = log(&vault).first().cloned() else {
                continue;
            };
            if let Ok(mut replica) = MembershipLog::from_genesis(genesis) {
                let _ = replica.insert_many(log(&vault), Received::STORED);
                if let Ok(entry) = replica.redeem_invite(&key(n), invite, &secret, at) {
                    let _ = vault.ingest_entries([entry], Received::STORED);
                }
            }
        }
    }
    // Admin 3 approves device 7 and revokes admin 2 while admins 2 and 1 revoke admin 3:
    // 3's revocation of 2 stands against 2's (rule 7) but not against 1's, so 2 stays.
    let mut branch = vault.clone();
    steps.push(
        branch
            .add_device(&key(3), key(7).device_id(), Role::Member, 4_000)
            .is_ok(),
    );
    steps.push(
        branch
            .revoke_device(&key(3), key(2).device_id(), 4_001)
            .is_ok(),
    );
    steps.push(
        vault
            .revoke_device(&key(2), key(3).device_id(), 4_002)
            .is_ok(),
    );
    steps.push(
        vault
            .revoke_device(&key(1), key(3).device_id(), 4_003)
            .is_ok(),
    );
    let _ = vault.ingest_entries(log(&branch), Received::STORED);
    steps.push(vault.maintain_keys(&key(1), 5_000).is_ok());
    steps.push(
        vault
            .revoke_device(&key(1), key(4).device_id(), 6_000)
            .is_ok(),
    );
    steps.push(vault.maintain_keys(&key(2), 6_100).is_ok());
    let summary = format!(
        "{steps:?} {:?} {:?}",
        vault.log().heads(),
        vault.membership()
    );
    crate::hash::Hash::of(&[summary.as_bytes()])
}

/// A long honest log: a genesis by `admin`, then `approvals` approvals by it, each on the
/// one before (a chain, the worst case for a replay per entry). Returns the genesis and
/// the approvals, in the order they were made. For work budgets and benchmarks.
pub fn approval_chain(
    admin: &DeviceKey,
    approvals: u32,
) -> (
    crate::membership::SignedEntry,
    Vec<crate::membership::SignedEntry>,
) {
    use crate::ids::VaultId;
    use crate::membership::{Action, Entry};

    let genesis = Entry {
        vault: None,
        parents: Vec::new(),
        author: admin.device_id(),
        timestamp_ms: 1_000,
        action: Action::Genesis {
            name: "chain".into(),
            nonce: [3; 16],
        },
    }
    .sign(admin);
    let vault = VaultId(genesis.hash());
    let mut parent = genesis.hash();
    let mut chain = Vec::with_capacity(approvals as usize);
    for n in 0..approvals {
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        secret[31] = 1;
        let approval = Entry {
            vault: Some(vault),
            parents: vec![parent],
            author: admin.device_id(),
            timestamp_ms: 2_000 + u64::from(n),
            action: Action::AddDevice {
                device: DeviceKey::from_secret_bytes(&secret).device_id(),
                role: Role::Member,
            },
        }
        .sign(admin);
        parent = approval.hash();
        chain.push(approval);
    }
    (genesis, chain)
}
