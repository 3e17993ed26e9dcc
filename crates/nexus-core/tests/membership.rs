//! The membership rules, told as stories, and the order-independence property.

use std::collections::HashMap;

use nexus_core::membership::{MAX_CLOCK_SKEW_MS, evaluate};
use nexus_core::sealing::{VaultKey, seal_key};
use nexus_core::{
    Action, ActorId, DeviceId, DeviceKey, Entry, EntryError, Hash, MembershipError, MembershipLog,
    Received, Role, RuleViolation, SignedEntry, Vault,
};
use proptest::prelude::*;

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret_bytes(&[n + 1; 32])
}

fn id(n: u8) -> DeviceId {
    key(n).device_id()
}

fn from_peer(device: DeviceId, now_ms: u64) -> Received {
    Received::from_peer(device, now_ms)
}

/// Gives `to` every entry `from` has (what a sync would do).
fn merge(to: &mut MembershipLog, from: &MembershipLog) {
    let entries: Vec<SignedEntry> = from.entries().into_iter().cloned().collect();
    let (_, refused) = to.insert_many(entries, Received::STORED);
    assert!(refused.is_empty(), "honest entries refused: {refused:?}");
}

fn all_entries(log: &MembershipLog) -> Vec<SignedEntry> {
    log.entries().into_iter().cloned().collect()
}

#[test]
fn alice_approves_bob_by_device_id_and_invites_carol() {
    let (mut log, _) = MembershipLog::create(&key(0), "Family", [1; 16], 1_000).unwrap();
    log.add_device(&key(0), id(1), Role::Member, 2_000).unwrap();
    let secret = [42u8; 32];
    let invite = log
        .create_invite(&key(0), &secret, Role::Admin, 10_000, 3_000)
        .unwrap();
    // Carol redeems while Alice is offline: she only needs the log and the secret.
    let mut carols = MembershipLog::from_genesis(log.entries()[0].clone()).unwrap();
    merge(&mut carols, &log);
    let redemption = carols
        .redeem_invite(&key(2), invite.hash(), &secret, 4_000)
        .unwrap();
    // Alice accepts the redemption when Carol presents it.
    assert!(log.insert(redemption, from_peer(id(2), 4_500)).unwrap());
    let members = log.membership();
    assert_eq!(members.role(&id(0)), Some(Role::Admin));
    assert_eq!(members.role(&id(1)), Some(Role::Member));
    assert_eq!(members.role(&id(2)), Some(Role::Admin));
    assert_eq!(members.name(), "Family");
    assert_eq!(members.invites()[&invite.hash()].redeemed_by, Some(id(2)));
}

#[test]
fn plain_members_and_strangers_cannot_administer() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Member, 1).unwrap();
    let err = log.add_device(&key(1), id(3), Role::Member, 2).unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::NotAdmin,
            ..
        }
    ));
    let err = log
        .revoke_device(&key(4), id(0), Default::default(), 3)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::NotMember,
            ..
        }
    ));
    assert!(err.to_string().contains("not a member"), "{err}");
    assert_eq!(log.len(), 2, "refused entries are not stored");
}

#[test]
fn forged_and_tampered_entries_do_not_decode() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    let entry = log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    let bytes = entry.encode();
    assert_eq!(SignedEntry::decode(&bytes).unwrap(), entry);
    // Flip every byte in turn: each copy is refused, none panics.
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        assert!(SignedEntry::decode(&tampered).is_err(), "byte {i}");
    }
    // Claim another author: the signature no longer matches.
    let mut forged = bytes.clone();
    let at = forged
        .windows(32)
        .position(|w| w == id(0).public_key())
        .unwrap();
    forged[at..at + 32].copy_from_slice(id(1).public_key());
    assert!(matches!(
        SignedEntry::decode(&forged),
        Err(EntryError::BadSignature { .. })
    ));
    for cut in 0..bytes.len() {
        assert!(SignedEntry::decode(&bytes[..cut]).is_err());
    }
}

#[test]
fn entries_of_another_vault_are_refused() {
    let (mut home, _) = MembershipLog::create(&key(0), "home", [0; 16], 0).unwrap();
    let (mut work, _) = MembershipLog::create(&key(0), "work", [1; 16], 0).unwrap();
    let entry = work.add_device(&key(0), id(1), Role::Member, 1).unwrap();
    let err = home.insert(entry, Received::STORED).unwrap_err();
    assert!(matches!(err, MembershipError::WrongVault { .. }));
    let genesis = all_entries(&work)[0].clone();
    assert!(matches!(
        home.insert(genesis, Received::STORED),
        Err(MembershipError::WrongVault { found: None, .. })
    ));
    let _ = home.add_device(&key(0), id(2), Role::Member, 5).unwrap();
    assert!(!home.membership().is_member(&id(1)));
}

#[test]
fn an_expired_invite_or_a_wrong_secret_admits_nobody() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    let invite = log
        .create_invite(&key(0), &[7; 32], Role::Member, 5_000, 1_000)
        .unwrap();
    let mut late = log.clone();
    let err = late
        .redeem_invite(&key(1), invite.hash(), &[7; 32], 6_000)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::InviteExpired { .. },
            ..
        }
    ));
    let err = late
        .redeem_invite(&key(1), invite.hash(), &[8; 32], 2_000)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::BadInviteProof,
            ..
        }
    ));
    // Back-dating a redemption: valid by its own timestamp, but the member it is
    // presented to sees the clocks disagree, and so does one reading it from a mailbox.
    let mut newcomer = log.clone();
    let backdated = newcomer
        .redeem_invite(&key(1), invite.hash(), &[7; 32], 4_000)
        .unwrap();
    let now = 4_000 + MAX_CLOCK_SKEW_MS + 1;
    assert!(matches!(
        log.clone().insert(backdated.clone(), from_peer(id(1), now)),
        Err(MembershipError::ClockSkew { .. })
    ));
    assert!(matches!(
        log.clone()
            .insert(backdated.clone(), Received::from_mailbox(now)),
        Err(MembershipError::ClockSkew { .. })
    ));
    // Passed on by a device that is not a member, it is refused whatever its clock.
    assert!(matches!(
        log.clone()
            .insert(backdated.clone(), from_peer(id(5), 4_000)),
        Err(MembershipError::Unvouched { .. })
    ));
    // Relayed by a member (who accepted it in time), it is taken as is.
    assert!(log.insert(backdated, from_peer(id(0), now)).unwrap());
    assert!(log.membership().is_member(&id(1)));
}

#[test]
fn a_member_reading_the_log_cannot_reuse_a_redemption_or_back_date_one() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(4), Role::Member, 500).unwrap();
    let invite = log
        .create_invite(&key(0), &[7; 32], Role::Admin, 1_000_000, 1_000)
        .unwrap();
    let redemption = log
        .clone()
        .redeem_invite(&key(1), invite.hash(), &[7; 32], 3_000)
        .unwrap();
    assert!(
        log.insert(redemption.clone(), from_peer(id(1), 3_000))
            .unwrap()
    );
    // No secret is in the log: the entries say only the invite's public key and a proof.
    let secret = [7u8; 32];
    for entry in log.entries() {
        let bytes = entry.encode();
        assert!(
            !bytes.windows(32).any(|w| w == secret),
            "the secret is in the log"
        );
    }
    // Member 4 (or a revoked device, or anyone sent the log) takes the proof from Bob's
    // redemption and signs a redemption of its own, back-dated to just after the
    // invite, so that it would sort first.
    let Action::RedeemInvite { proof, .. } = redemption.entry().action.clone() else {
        panic!("not a redemption");
    };
    let thief = Entry {
        vault: Some(log.vault_id()),
        parents: vec![invite.hash()],
        author: id(4),
        timestamp_ms: 1_001,
        action: Action::RedeemInvite {
            invite: invite.hash(),
            proof,
        },
    }
    .sign(&key(4));
    let err = log
        .insert(thief.clone(), from_peer(id(4), 3_100))
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::BadInviteProof,
            ..
        }
    ));
    // Even judged straight from a set of entries (no insert checks), it admits nobody
    // and Bob stays the admin the invite made.
    let mut entries: HashMap<Hash, SignedEntry> = log
        .entries()
        .into_iter()
        .map(|e| (e.hash(), e.clone()))
        .collect();
    entries.insert(thief.hash(), thief.clone());
    let heads: Vec<Hash> = log.heads().into_iter().chain([thief.hash()]).collect();
    let m = evaluate(&entries, &heads);
    assert_eq!(m.role(&id(1)), Some(Role::Admin));
    assert_eq!(m.role(&id(4)), Some(Role::Member));
    assert!(m.void_entries().contains(&thief.hash()));
}

#[test]
fn an_entry_cannot_claim_a_time_before_its_parents() {
    let (mut log, genesis) = MembershipLog::create(&key(0), "v", [0; 16], 5_000).unwrap();
    let backdated = Entry {
        vault: Some(log.vault_id()),
        parents: vec![genesis.hash()],
        author: id(0),
        timestamp_ms: 4_999,
        action: Action::AddDevice {
            device: id(1),
            role: Role::Member,
        },
    }
    .sign(&key(0));
    let err = log.insert(backdated, Received::STORED).unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::BeforeParents {
                timestamp_ms: 4_999,
                parent_ms: 5_000
            },
            ..
        }
    ));
    // A device whose clock is behind the log's still writes valid entries.
    let entry = log.add_device(&key(0), id(1), Role::Member, 10).unwrap();
    assert_eq!(entry.entry().timestamp_ms, 5_000);
}

#[test]
fn invites_last_at_most_thirty_days_and_can_be_cancelled() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    let day = 86_400_000;
    let err = log
        .create_invite(&key(0), &[1; 32], Role::Member, 1_000 + 31 * day, 1_000)
        .unwrap_err();
    assert!(err.to_string().contains("within 30 days"), "{err}");
    assert!(
        log.create_invite(&key(0), &[1; 32], Role::Member, 1_000, 1_000)
            .is_err(),
        "an invite that is already over"
    );
    let invite = log
        .create_invite(&key(0), &[1; 32], Role::Member, 1_000 + 30 * day, 1_000)
        .unwrap();
    // Bob redeems on his own copy while Alice cancels: the cancellation had not seen the
    // redemption, so it admits nobody, on both sides.
    let mut bobs = log.clone();
    bobs.redeem_invite(&key(1), invite.hash(), &[1; 32], 3_000)
        .unwrap();
    log.cancel_invite(&key(0), invite.hash(), 2_000).unwrap();
    assert!(
        log.membership().invites()[&invite.hash()]
            .cancelled_by
            .is_some()
    );
    assert_eq!(log.membership().open_invites(2_500).count(), 0);
    merge(&mut log, &bobs);
    merge(&mut bobs, &log);
    for m in [log.membership(), bobs.membership()] {
        assert!(!m.is_member(&id(1)), "a cancelled invite admits nobody");
    }
    assert_eq!(log.membership(), bobs.membership());
    // After the cancellation, a redemption is refused outright.
    let err = log
        .redeem_invite(&key(2), invite.hash(), &[1; 32], 4_000)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::InviteCancelled,
            ..
        }
    ));
}

#[test]
fn a_revoked_admins_invite_admits_nobody_unless_redeemed_first() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    let early = log
        .create_invite(&key(1), &[1; 32], Role::Member, 1_000_000, 10)
        .unwrap();
    let racing = log
        .create_invite(&key(1), &[2; 32], Role::Member, 1_000_000, 11)
        .unwrap();
    let after = log
        .create_invite(&key(1), &[3; 32], Role::Member, 1_000_000, 12)
        .unwrap();
    // Carol redeems before the revocation (Alice has seen it when she revokes Bob).
    let carol = log
        .clone()
        .redeem_invite(&key(2), early.hash(), &[1; 32], 20)
        .unwrap();
    log.insert(carol, from_peer(id(2), 20)).unwrap();
    // Dave redeems concurrently with the revocation.
    let mut daves = log.clone();
    daves
        .redeem_invite(&key(3), racing.hash(), &[2; 32], 31)
        .unwrap();
    log.revoke_device(&key(0), id(1), Default::default(), 30)
        .unwrap();
    merge(&mut log, &daves);
    let m = log.membership();
    assert!(m.is_member(&id(2)), "redeemed before the revocation");
    assert!(!m.is_member(&id(3)), "the revocation had not seen it");
    // Erin redeems after the revocation: refused.
    let err = log
        .redeem_invite(&key(4), after.hash(), &[3; 32], 40)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::InviteCreatorNotAdmin,
            ..
        }
    ));
    assert_eq!(log.membership().open_invites(40).count(), 0);
}

#[test]
fn an_invite_redeemed_twice_admits_only_the_first_redemption() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    let invite = log
        .create_invite(&key(0), &[9; 32], Role::Member, 100_000, 1_000)
        .unwrap();
    let mut bob = log.clone();
    let mut carol = log.clone();
    bob.redeem_invite(&key(1), invite.hash(), &[9; 32], 2_000)
        .unwrap();
    carol
        .redeem_invite(&key(2), invite.hash(), &[9; 32], 3_000)
        .unwrap();
    let mut ab = log.clone();
    merge(&mut ab, &bob);
    merge(&mut ab, &carol);
    let mut ba = log.clone();
    merge(&mut ba, &carol);
    merge(&mut ba, &bob);
    assert_eq!(ab.membership(), ba.membership());
    assert!(ab.membership().is_member(&id(1)), "earlier redemption wins");
    assert!(!ab.membership().is_member(&id(2)));
    assert_eq!(ab.membership().void_entries().len(), 1);
    // A redemption that has seen the first is refused outright.
    let err = ab
        .redeem_invite(&key(3), invite.hash(), &[9; 32], 4_000)
        .unwrap_err();
    assert!(matches!(
        err,
        MembershipError::Rejected {
            rule: RuleViolation::InviteAlreadyRedeemed { .. },
            ..
        }
    ));
}

#[test]
fn a_revoked_admins_concurrent_actions_are_void() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    // Bob (admin) approves Dave while, concurrently, Alice revokes Bob.
    let mut bobs = log.clone();
    bobs.add_device(&key(1), id(3), Role::Member, 10).unwrap();
    log.revoke_device(&key(0), id(1), Default::default(), 5)
        .unwrap();
    merge(&mut log, &bobs);
    let m = log.membership();
    assert!(!m.is_member(&id(1)));
    assert!(!m.is_member(&id(3)), "approval by a revoked admin is void");
    assert!(m.revocation(&id(1)).is_some());
    // Bob's log, once merged, agrees.
    merge(&mut bobs, &log);
    assert_eq!(bobs.membership(), log.membership());
    // Bob can author nothing any more.
    assert!(bobs.add_device(&key(1), id(4), Role::Member, 20).is_err());
}

/// Filling the log so that an admin can no longer be removed: one author is capped, a
/// full log still takes revocations, and a revoked device's flood does not count.
#[test]
fn a_full_log_still_takes_revocations_and_one_author_cannot_fill_it() {
    use nexus_core::membership::LogLimits;
    let limits = LogLimits {
        max_entries: 12,
        max_entries_per_author: 9,
        ..LogLimits::default()
    };
    let (log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    let mut log = log.with_limits(limits);
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    log.add_device(&key(0), id(2), Role::Admin, 2).unwrap();
    let fill = |log: &mut MembershipLog, admin: u8, first: u8| {
        let mut n = first;
        loop {
            match log.add_device(&key(admin), id(n), Role::Member, 10 + u64::from(n)) {
                Ok(_) => n += 1,
                Err(e) => return (n - first, e),
            }
        }
    };
    // Bob, an admin gone rogue, floods his own copy until he may write no more.
    let mut bobs = log.clone();
    let (written, err) = fill(&mut bobs, 1, 100);
    assert_eq!(written, 9);
    assert!(matches!(err, MembershipError::AuthorFull { author } if author == id(1)));
    // Meanwhile Alice revokes him, and Alice and Carol fill the log.
    log.revoke_device(&key(0), id(1), Default::default(), 5)
        .unwrap();
    let (written, err) = fill(&mut log, 0, 20);
    assert_eq!(written, 5);
    assert!(matches!(err, MembershipError::AuthorFull { .. }));
    let (written, err) = fill(&mut log, 2, 40);
    assert_eq!(written, 4);
    assert!(matches!(err, MembershipError::LogFull), "{err}");
    // Full, it still takes a revocation.
    log.revoke_device(&key(2), id(20), Default::default(), 60)
        .unwrap();
    assert!(!log.membership().is_member(&id(20)));
    // Bob's flood arrives: taken in (void, so it does not count), admitting nobody.
    merge(&mut log, &bobs);
    for n in 100..109 {
        assert!(!log.membership().is_member(&id(n)));
    }
    assert!(log.membership().void_entries().len() >= 9);
}

#[test]
fn two_admins_revoking_each_other_concurrently_are_both_removed() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    log.add_device(&key(1), id(2), Role::Admin, 2).unwrap();
    let mut bobs = log.clone();
    let mut carols = log.clone();
    bobs.revoke_device(&key(1), id(2), Default::default(), 20)
        .unwrap();
    carols
        .revoke_device(&key(2), id(1), Default::default(), 10)
        .unwrap();
    merge(&mut bobs, &carols);
    merge(&mut carols, &bobs);
    for m in [bobs.membership(), carols.membership()] {
        assert!(!m.is_member(&id(1)));
        assert!(!m.is_member(&id(2)));
        assert!(m.is_admin(&id(0)));
    }
    assert_eq!(bobs.membership(), carols.membership());
}

/// The attack of a compromised senior admin: the vault's creator, revoked by a junior
/// admin, signs (later, on old parents, with an early timestamp) a revocation of the
/// admin that revoked it, and of another admin.
#[test]
fn a_revoked_senior_admin_cannot_undo_its_removal_by_a_back_dated_revocation() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    log.add_device(&key(0), id(2), Role::Admin, 2).unwrap();
    let before = log.clone();
    log.revoke_device(&key(1), id(0), Default::default(), 100)
        .unwrap();
    log.add_device(&key(2), id(5), Role::Member, 110).unwrap();
    // The creator's back-dated entries, made on the log as it was before.
    let mut attacker = before;
    attacker
        .revoke_device(&key(0), id(1), Default::default(), 3)
        .unwrap();
    attacker
        .revoke_device(&key(0), id(2), Default::default(), 4)
        .unwrap();
    attacker.add_device(&key(0), id(6), Role::Admin, 5).unwrap();
    merge(&mut log, &attacker);
    let mut theirs = attacker.clone();
    merge(&mut theirs, &log);
    for m in [log.membership(), theirs.membership()] {
        assert!(!m.is_member(&id(0)), "the creator stays removed");
        assert!(
            !m.is_member(&id(1)),
            "its counter-revocation takes its revoker along"
        );
        assert!(m.is_admin(&id(2)), "nobody else: that revocation is void");
        assert!(m.is_member(&id(5)));
        assert!(!m.is_member(&id(6)), "its back-dated approval is void");
    }
    assert_eq!(log.membership(), theirs.membership());
    // The remaining admin re-admits the revoker.
    log.add_device(&key(2), id(1), Role::Admin, 200).unwrap();
    assert!(log.membership().is_admin(&id(1)));
    assert!(!log.membership().is_member(&id(0)));
}

#[test]
fn a_revocation_beats_an_approval_it_races_and_a_later_approval_readmits() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    log.add_device(&key(0), id(3), Role::Member, 2).unwrap();
    // Alice revokes Dave; concurrently Bob approves Dave again.
    let mut bobs = log.clone();
    bobs.add_device(&key(1), id(3), Role::Member, 50).unwrap();
    log.revoke_device(&key(0), id(3), Default::default(), 10)
        .unwrap();
    merge(&mut log, &bobs);
    assert!(!log.membership().is_member(&id(3)));
    // An approval made after seeing the revocation re-admits Dave.
    log.add_device(&key(1), id(3), Role::Member, 60).unwrap();
    assert!(log.membership().is_member(&id(3)));
    assert!(log.membership().revocation(&id(3)).is_none());
}

/// One step of a random history: who acts, on which replica, doing what.
#[derive(Debug, Clone)]
enum Step {
    Add {
        admin: u8,
        device: u8,
        admin_role: bool,
    },
    Invite {
        admin: u8,
        secret: u8,
    },
    Redeem {
        device: u8,
        invite: u8,
    },
    Revoke {
        admin: u8,
        device: u8,
    },
    Cancel {
        admin: u8,
        invite: u8,
    },
    Sync {
        from: u8,
    },
}

fn step() -> impl Strategy<Value = (u8, Step)> {
    // The creator acts most; revocations rarely hit it, so histories stay interesting.
    let admin = || prop_oneof![2 => Just(0u8), 2 => 1u8..4, 1 => 4u8..6];
    let device = 0u8..6;
    let replica = 0u8..3;
    let step = prop_oneof![
        3 => (admin(), 1u8..6, any::<bool>()).prop_map(|(admin, device, admin_role)| {
            Step::Add {
                admin,
                device,
                admin_role,
            }
        }),
        1 => (admin(), 0u8..4).prop_map(|(admin, secret)| Step::Invite { admin, secret }),
        1 => (device.clone(), 0u8..8).prop_map(|(device, invite)| Step::Redeem { device, invite }),
        2 => (admin(), device).prop_map(|(admin, device)| Step::Revoke { admin, device }),
        1 => (admin(), 0u8..8).prop_map(|(admin, invite)| Step::Cancel { admin, invite }),
        2 => replica.clone().prop_map(|from| Step::Sync { from }),
    ];
    (replica, step)
}

/// Plays a random history on three replicas that sync now and then, and returns every
/// entry created (each valid where it was made).
fn play(steps: &[(u8, Step)]) -> (MembershipLog, Vec<SignedEntry>) {
    let (genesis_log, _) = MembershipLog::create(&key(0), "prop", [0; 16], 0).unwrap();
    let mut replicas = vec![
        genesis_log.clone(),
        genesis_log.clone(),
        genesis_log.clone(),
    ];
    let mut invites: Vec<(Hash, [u8; 32])> = Vec::new();
    for (t, (r, step)) in steps.iter().enumerate() {
        let now = 1_000 + t as u64 * 10;
        let r = *r as usize;
        let log = &mut replicas[r];
        // Refusals are part of the game: only valid actions make entries.
        match step {
            Step::Add {
                admin,
                device,
                admin_role,
            } => {
                let role = if *admin_role {
                    Role::Admin
                } else {
                    Role::Member
                };
                let _ = log.add_device(&key(*admin), id(*device), role, now);
            }
            Step::Invite { admin, secret } => {
                let secret = [*secret; 32];
                if let Ok(e) =
                    log.create_invite(&key(*admin), &secret, Role::Member, now + 200, now)
                {
                    invites.push((e.hash(), secret));
                }
            }
            Step::Redeem { device, invite } => {
                if let Some((hash, secret)) = invites.get(*invite as usize).copied() {
                    let _ = log.redeem_invite(&key(*device), hash, &secret, now);
                }
            }
            Step::Revoke { admin, device } => {
                let _ = log.revoke_device(&key(*admin), id(*device), Default::default(), now);
            }
            Step::Cancel { admin, invite } => {
                if let Some((hash, _)) = invites.get(*invite as usize).copied() {
                    let _ = log.cancel_invite(&key(*admin), hash, now);
                }
            }
            Step::Sync { from } => {
                let source = replicas[*from as usize].clone();
                merge(&mut replicas[r], &source);
            }
        }
    }
    let mut all = genesis_log;
    for replica in &replicas {
        merge(&mut all, replica);
    }
    let entries = all_entries(&all);
    (all, entries)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_order_and_duplication_of_the_entries_gives_the_same_members(
        steps in prop::collection::vec(step(), 1..60),
        shuffle_seed in any::<u64>(),
        duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let (reference, entries) = play(&steps);
        // A shuffled, duplicated delivery of the same entries.
        let mut delivery = entries.clone();
        for d in &duplicates {
            delivery.push(entries[d.index(entries.len())].clone());
        }
        let mut state = shuffle_seed | 1;
        for i in (1..delivery.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            delivery.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut replica = MembershipLog::from_genesis(entries[0].clone()).unwrap();
        let (_, refused) = replica.insert_many(delivery, Received::STORED);
        prop_assert!(refused.is_empty(), "refused: {:?}", refused);
        prop_assert_eq!(replica.membership(), reference.membership());
        prop_assert_eq!(replica.heads(), reference.heads());
        // The pure function agrees with the log.
        let map: HashMap<Hash, SignedEntry> = entries.iter().map(|e| (e.hash(), e.clone())).collect();
        prop_assert_eq!(&evaluate(&map, &reference.heads()), reference.membership());
        // Every surviving member was admitted by an entry in the log, and the creator
        // is a member unless revoked.
        for member in reference.membership().members().values() {
            prop_assert!(reference.contains(&member.admitted_by));
        }
    }
}

// ---- vault keys (rules 9 and 10) ------------------------------------------------------

/// A replica of `vault` built from its entries, as a device that received them holds it.
fn replica(vault: &Vault) -> Vault {
    let entries: Vec<SignedEntry> = all_entries(vault.log());
    let (replica, ingested) =
        Vault::from_entries(vault.id(), entries, Received::STORED, ActorId::random()).unwrap();
    assert!(ingested.refused.is_empty(), "{:?}", ingested.refused);
    replica
}

#[test]
fn the_vault_key_reaches_every_member_and_is_rotated_past_a_revoked_device() {
    let (alice, bob, carol) = (key(0), key(1), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    assert!(
        vault.current_key(&alice).is_none(),
        "no key before an admin makes one"
    );
    assert!(!vault.maintain_keys(&alice, 1).unwrap().is_empty());
    let (first, key0) = vault.current_key(&alice).unwrap();
    assert_eq!(key0.generation(), 0);
    // Nothing more to do until membership changes.
    assert!(vault.maintain_keys(&alice, 2).unwrap().is_empty());

    let _ = vault
        .add_device(&alice, bob.device_id(), Role::Member, 3)
        .unwrap();
    let _ = vault
        .add_device(&alice, carol.device_id(), Role::Member, 4)
        .unwrap();
    // Bob cannot share it (not an admin); Alice seals it to both newcomers at once.
    assert!(vault.maintain_keys(&bob, 5).unwrap().is_empty());
    assert!(!vault.maintain_keys(&alice, 5).unwrap().is_empty());
    let (_, info) = vault.membership().current_key().unwrap();
    assert_eq!(info.sealed.len(), 3);
    for member in [&bob, &carol] {
        assert_eq!(
            replica(&vault).current_key(member),
            Some((first, key0.clone()))
        );
    }

    let _ = vault.revoke_device(&alice, carol.device_id(), 6).unwrap();
    assert!(
        vault.membership().current_key().is_none(),
        "a revocation retires the key"
    );
    let _ = vault.maintain_keys(&alice, 7).unwrap();
    let (second, key1) = vault.current_key(&alice).unwrap();
    assert_ne!(second, first);
    assert_eq!(key1.generation(), 1);
    assert_ne!(key1.mailbox_id(&vault.id()), key0.mailbox_id(&vault.id()));
    let bobs = replica(&vault);
    assert_eq!(bobs.current_key(&bob), Some((second, key1.clone())));
    assert_eq!(
        bobs.held_keys(&bob).len(),
        2,
        "bob keeps the old key for old bundles"
    );
    // Carol, holding every entry, still has only the key from before her revocation.
    let carols = replica(&vault);
    assert!(carols.current_key(&carol).is_none());
    let held: Vec<u32> = carols
        .held_keys(&carol)
        .iter()
        .map(|(_, k)| k.generation())
        .collect();
    assert_eq!(held, vec![0]);
}

#[test]
fn a_key_made_without_seeing_a_revocation_never_becomes_current() {
    let (alice, dave, carol) = (key(0), key(3), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault.maintain_keys(&alice, 1).unwrap();
    let _ = vault
        .add_device(&alice, dave.device_id(), Role::Admin, 2)
        .unwrap();
    let _ = vault
        .add_device(&alice, carol.device_id(), Role::Member, 3)
        .unwrap();
    let _ = vault.maintain_keys(&alice, 4).unwrap();
    // Dave, who has not seen Carol's revocation, makes a key (sealed to Carol too) with
    // a later timestamp than anything Alice writes.
    let mut daves = replica(&vault);
    let key = VaultKey::derive(&dave, &daves.id(), &daves.log().heads(), 1);
    let sealed =
        [&alice, &dave, &carol].map(|k| seal_key(&key, &daves.id(), &k.device_id()).unwrap());
    let mut sealed = sealed.to_vec();
    sealed.sort_by_key(|c| c.recipient);
    let mut daves_log = daves.log().clone();
    daves_log
        .author(
            &dave,
            Action::NewKey {
                generation: 1,
                commitment: key.commitment(&daves.id()),
                sealed,
            },
            1_000,
        )
        .unwrap();
    let _ = vault.revoke_device(&alice, carol.device_id(), 10).unwrap();
    let mut merged = vault.log().clone();
    merge(&mut merged, &daves_log);
    assert!(
        merged.membership().current_key().is_none(),
        "dave's key did not see the revocation"
    );
    // Alice, now holding both, makes the key that counts.
    let mut alices = replica(&vault);
    let _ = alices.ingest_entries(all_entries(&daves_log), Received::STORED);
    let _ = alices.maintain_keys(&alice, 2_000).unwrap();
    let (_, info) = alices.membership().current_key().unwrap();
    assert_eq!(info.generation, 2, "above both generation-1 keys");
    assert!(!info.sealed.contains_key(&carol.device_id()));
    // Dave, merging it, agrees and has a copy.
    let _ = daves.ingest_entries(all_entries(alices.log()), Received::STORED);
    assert_eq!(daves.membership(), alices.membership());
    assert!(daves.current_key(&dave).is_some());
}

#[test]
fn key_entries_by_members_or_with_stale_generations_or_unknown_keys_are_refused() {
    let (alice, bob) = (key(0), key(1));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault.maintain_keys(&alice, 1).unwrap();
    let _ = vault
        .add_device(&alice, bob.device_id(), Role::Member, 2)
        .unwrap();
    let (hash, info) = vault.membership().current_key().unwrap();
    let generation = info.generation;
    let mut log = vault.log().clone();
    let fresh = VaultKey::derive(&bob, &vault.id(), &log.heads(), 5);
    let to_bob = vec![seal_key(&fresh, &vault.id(), &bob.device_id()).unwrap()];
    let refused_for = |result: Result<SignedEntry, MembershipError>| match result {
        Err(MembershipError::Rejected { rule, .. }) => rule,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let by_member = log.author(
        &bob,
        Action::NewKey {
            generation: 5,
            commitment: fresh.commitment(&vault.id()),
            sealed: to_bob.clone(),
        },
        3,
    );
    assert_eq!(refused_for(by_member), RuleViolation::NotAdmin);
    let stale = VaultKey::derive(&alice, &vault.id(), &log.heads(), generation);
    let stale_copy = vec![seal_key(&stale, &vault.id(), &bob.device_id()).unwrap()];
    let stale_entry = log.author(
        &alice,
        Action::NewKey {
            generation,
            commitment: stale.commitment(&vault.id()),
            sealed: stale_copy.clone(),
        },
        3,
    );
    assert!(matches!(
        refused_for(stale_entry),
        RuleViolation::StaleKeyGeneration { .. }
    ));
    let unknown = log.author(
        &alice,
        Action::ShareKey {
            key: Hash::of(&[b"no such entry"]),
            generation,
            sealed: stale_copy.clone(),
        },
        3,
    );
    assert_eq!(refused_for(unknown), RuleViolation::UnknownKey);
    let wrong_generation = log.author(
        &alice,
        Action::ShareKey {
            key: hash,
            generation: generation + 1,
            sealed: stale_copy,
        },
        3,
    );
    assert_eq!(refused_for(wrong_generation), RuleViolation::UnknownKey);
}

#[test]
fn key_entries_round_trip_and_unsorted_copies_do_not_decode() {
    let (alice, bob, carol) = (key(0), key(1), key(2));
    let (mut log, _) = MembershipLog::create(&alice, "v", [0; 16], 0).unwrap();
    let vault = log.vault_id();
    let key = VaultKey::derive(&alice, &vault, &log.heads(), 0);
    let mut sealed: Vec<_> = [&alice, &bob, &carol]
        .iter()
        .map(|k| seal_key(&key, &vault, &k.device_id()).unwrap())
        .collect();
    sealed.sort_by_key(|c| c.recipient);
    let entry = log
        .author(
            &alice,
            Action::NewKey {
                generation: 0,
                commitment: key.commitment(&vault),
                sealed: sealed.clone(),
            },
            1,
        )
        .unwrap();
    assert_eq!(SignedEntry::decode(&entry.encode()).unwrap(), entry);
    // The same entry with its copies out of order is signed but has two encodings of one
    // meaning: refused at decoding.
    sealed.reverse();
    let unsorted = Entry {
        action: Action::NewKey {
            generation: 0,
            commitment: key.commitment(&vault),
            sealed,
        },
        ..entry.entry().clone()
    }
    .sign(&alice);
    assert!(matches!(
        SignedEntry::decode(&unsorted.encode()),
        Err(EntryError::Decode(_))
    ));
}

/// The digest the fixed membership story evaluates to. The browser tests
/// (`crates/nexus/tests/web.rs`) check the same value in wasm32.
pub const MEMBERSHIP_FIXTURE_DIGEST: &str =
    "b09e3d0cac7d0c51706869af8d9014a752685f7db76f4f2ff5355fe9d319cd56";

#[test]
fn the_fixed_membership_story_evaluates_to_the_recorded_digest() {
    let digest = nexus_core::sim::membership_fixture_digest().to_string();
    assert_eq!(digest, MEMBERSHIP_FIXTURE_DIGEST);
}

/// Finding 6: a log sent newest first (or in any order) costs a bounded number of
/// replays, not one per entry. 10,000 entries in reverse order: the rules visit a few
/// entries per entry taken in, where a replay per insert visits about n²/2 = 50,000,000.
#[test]
fn a_reversed_log_of_ten_thousand_entries_is_taken_in_within_a_linear_work_budget() {
    let admin = key(0);
    let (genesis, mut chain) = nexus_core::sim::approval_chain(&admin, 9_999);
    chain.reverse();
    let mut log = MembershipLog::from_genesis(genesis).unwrap();
    let (accepted, refused) = log.insert_many(chain, Received::STORED);
    assert!(refused.is_empty(), "{:?}", refused.first());
    assert_eq!(accepted.len(), 9_999);
    assert_eq!(log.membership().members().len(), 10_000);
    let n = log.len() as u64;
    assert!(
        log.replay_work() <= 8 * n,
        "{} entries visited for {n} entries",
        log.replay_work()
    );
}

/// The same budget holds for a batch that revokes: conflicts send each entry of the batch
/// to its own replay, but a log without conflicts is judged in one.
#[test]
fn a_batch_with_a_revocation_race_is_judged_like_the_same_entries_one_by_one() {
    let (mut log, _) = MembershipLog::create(&key(0), "v", [0; 16], 0).unwrap();
    log.add_device(&key(0), id(1), Role::Admin, 1).unwrap();
    let mut racing = log.clone();
    log.revoke_device(&key(0), id(1), Default::default(), 10)
        .unwrap();
    racing.add_device(&key(1), id(2), Role::Member, 11).unwrap();
    log.add_device(&key(0), id(3), Role::Member, 12).unwrap();
    let mut together = MembershipLog::from_genesis(all_entries(&log)[0].clone()).unwrap();
    let mut batch = all_entries(&log);
    batch.extend(all_entries(&racing));
    batch.reverse();
    let (_, refused) = together.insert_many(batch.clone(), Received::STORED);
    assert!(refused.is_empty(), "{refused:?}");
    let mut one_by_one = MembershipLog::from_genesis(batch[batch.len() - 1].clone()).unwrap();
    for entry in batch.iter().rev() {
        one_by_one.insert(entry.clone(), Received::STORED).unwrap();
    }
    assert_eq!(together.heads(), one_by_one.heads());
    assert_eq!(together.membership(), one_by_one.membership());
    assert!(
        !together.membership().is_member(&id(2)),
        "its approval is void"
    );
}

/// Finding 12: the rendezvous name rotates with the vault key. A revoked device keeps the
/// keys it had, and with them the old names: the members register under the new key's
/// name, which it cannot compute, so it can no longer find them at a relay.
#[test]
fn a_revoked_device_cannot_compute_the_rendezvous_name_made_after_its_revocation() {
    let (alice, bob, carol) = (key(0), key(1), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault.maintain_keys(&alice, 1).unwrap();
    for (k, at) in [(&bob, 2), (&carol, 3)] {
        let _ = vault
            .add_device(&alice, k.device_id(), Role::Member, at)
            .unwrap();
    }
    let _ = vault.maintain_keys(&alice, 4).unwrap();
    let before = vault.rendezvous_namespace(&alice);
    assert_eq!(
        before,
        vault.rendezvous_namespace(&bob),
        "members meet under one name"
    );
    assert!(!vault.rendezvous_lookups(&alice).is_empty());

    let _ = vault.revoke_device(&alice, bob.device_id(), 10).unwrap();
    let _ = vault.maintain_keys(&alice, 11).unwrap();
    let after = vault.rendezvous_namespace(&alice);
    assert_ne!(after, before, "the name rotated with the key");
    assert_eq!(after, vault.rendezvous_namespace(&carol));
    // Bob holds only the keys made before: none of his names is the new one.
    assert!(!vault.rendezvous_lookups(&bob).contains(&after));
    assert_ne!(vault.rendezvous_namespace(&bob), after);
    // Members still look under the name before, where a member that missed the rotation
    // registers.
    assert!(vault.rendezvous_lookups(&carol).contains(&before));
}

/// Finding 11: what is left under an old key after a rotation lets a member that was
/// away learn its new key, and a device revoked since learn nothing: no entry, no copy of
/// its own, not even who holds one.
#[test]
fn a_revoked_device_reading_a_key_notice_learns_nothing() {
    use nexus_core::bundle::MailboxItem;
    let (alice, bob, carol) = (key(0), key(1), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    for (k, at) in [(&bob, 2), (&carol, 3)] {
        let _ = vault
            .add_device(&alice, k.device_id(), Role::Member, at)
            .unwrap();
    }
    let _ = vault.maintain_keys(&alice, 4).unwrap();
    let (_, old) = vault.current_key(&bob).unwrap();
    let _ = vault.revoke_device(&alice, bob.device_id(), 10).unwrap();
    let _ = vault.maintain_keys(&alice, 11).unwrap();
    let (_, new) = vault.current_key(&alice).unwrap();
    assert!(new.generation() > old.generation());

    let notice = vault.key_notice().unwrap();
    let id = [5u8; 16];
    let sealed = notice.seal(&old, &vault.id(), &id).unwrap();
    // Bob, revoked, holds the old key: the notice opens, and holds nothing for him.
    let Ok(MailboxItem::Notice(read)) = MailboxItem::open(&sealed, &old, &vault.id(), &id) else {
        panic!("the notice opens under the old key")
    };
    assert_eq!(read.open_for(&vault.id(), &bob), None);
    let plaintext = read.encode();
    for member in [&alice, &bob, &carol] {
        let id = member.device_id();
        assert!(
            !plaintext.windows(32).any(|w| w == id.public_key()),
            "the notice names no device"
        );
    }
    // Carol, who was away during the rotation, finds her copy of the new key.
    assert_eq!(read.open_for(&vault.id(), &carol), Some(new));
}

/// Finding 16: a hostile admin seals a bad copy of the current key to a member first
/// (another key of the same generation), and makes a new key whose copies do not match
/// its commitment. The member refuses the bad copy (it does not match the commitment),
/// an honest admin's copy replaces it, and a key nobody can open is replaced by a new one.
#[test]
fn a_bad_key_copy_is_refused_by_its_commitment_and_replaced_by_an_honest_admin() {
    let (alice, mallory, carol) = (key(0), key(1), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault
        .add_device(&alice, mallory.device_id(), Role::Admin, 1)
        .unwrap();
    let _ = vault.maintain_keys(&alice, 2).unwrap();
    let (hash, good) = vault.current_key(&alice).unwrap();
    // Carol is approved; before Alice shares the key with her, Mallory shares a copy of a
    // key of her own making under the same entry.
    let _ = vault
        .add_device(&mallory, carol.device_id(), Role::Member, 3)
        .unwrap();
    let bad = VaultKey::derive(&mallory, &vault.id(), &[], good.generation());
    let bad_copy = seal_key(&bad, &vault.id(), &carol.device_id()).unwrap();
    let mut log = vault.log().clone();
    let entry = log
        .author(
            &mallory,
            Action::ShareKey {
                key: hash,
                generation: good.generation(),
                sealed: vec![bad_copy],
            },
            4,
        )
        .unwrap();
    let _ = vault.ingest_entries(vec![entry], Received::STORED);
    assert!(
        vault.current_key(&carol).is_none(),
        "the bad copy does not match"
    );
    // Alice sees Carol has no right copy and shares one: Carol now opens the right key.
    let _ = vault.maintain_keys(&alice, 5).unwrap();
    assert_eq!(
        vault.current_key(&carol).map(|(_, k)| k),
        Some(good.clone())
    );

    // Mallory makes a new key whose copies are of another key than it commits to.
    let promised = VaultKey::derive(&mallory, &vault.id(), &[], 7);
    let other = VaultKey::derive(&mallory, &vault.id(), &[Hash([1; 32])], 7);
    let mut sealed: Vec<_> = [&alice, &mallory, &carol]
        .iter()
        .map(|k| seal_key(&other, &vault.id(), &k.device_id()).unwrap())
        .collect();
    sealed.sort_by_key(|c| c.recipient);
    let mut log = vault.log().clone();
    let entry = log
        .author(
            &mallory,
            Action::NewKey {
                generation: 7,
                commitment: promised.commitment(&vault.id()),
                sealed,
            },
            6,
        )
        .unwrap();
    let _ = vault.ingest_entries(vec![entry], Received::STORED);
    assert!(
        vault.current_key(&alice).is_none(),
        "nobody uses a key that breaks its commitment"
    );
    // Alice, holding only copies that fail, makes a new key above it.
    let _ = vault.maintain_keys(&alice, 7).unwrap();
    let (_, fresh) = vault.current_key(&alice).unwrap();
    assert!(fresh.generation() > 7);
    assert_eq!(vault.current_key(&carol).map(|(_, k)| k), Some(fresh));
}

/// Finding 6, with conflicts: a log whose entries race a revocation is judged entry by
/// entry, which costs more per entry. One batch takes at most `MAX_BATCH_WORK` of it; the
/// rest is postponed (a stranger's message costs a bounded amount), and later syncs take
/// it in, so an honest log with an old race still arrives whole.
#[test]
fn a_log_with_a_revocation_race_costs_a_bounded_amount_per_batch_and_still_arrives_whole() {
    use nexus_core::membership::{LogLimits, MAX_BATCH_WORK};
    // The default budget, for a log 2,000 entries long, scaled down to one of 300.
    let budget = MAX_BATCH_WORK / 100;
    let (alice, dave) = (key(0), key(3));
    let (mut log, genesis) = MembershipLog::create(&alice, "v", [0; 16], 0).unwrap();
    log.add_device(&alice, dave.device_id(), Role::Admin, 1)
        .unwrap();
    let mut daves = log.clone();
    log.revoke_device(&alice, dave.device_id(), Default::default(), 2)
        .unwrap();
    // Dave, not having seen it, approves someone: a conflict the rules settle by voiding.
    daves.add_device(&dave, id(9), Role::Member, 3).unwrap();
    merge(&mut log, &daves);
    for n in 0..300u32 {
        let mut secret = [7u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        let device = DeviceKey::from_secret_bytes(&secret).device_id();
        log.add_device(&alice, device, Role::Member, 10 + u64::from(n))
            .unwrap();
    }
    let mut batch = all_entries(&log);
    batch.reverse();
    let limits = LogLimits {
        max_batch_work: budget,
        ..LogLimits::default()
    };
    let mut fresh = MembershipLog::from_genesis(genesis)
        .unwrap()
        .with_limits(limits);
    let mut calls = 0;
    while fresh.len() < log.len() {
        calls += 1;
        assert!(calls <= 20, "no progress: {} of {}", fresh.len(), log.len());
        let before = fresh.replay_work();
        let (accepted, refused) = fresh.insert_many(batch.clone(), Received::STORED);
        let spent = fresh.replay_work() - before;
        // The budget, plus the one replay that crossed it and the final evaluation.
        assert!(
            spent <= budget + 8 * log.len() as u64,
            "call {calls} visited {spent} entries"
        );
        assert!(!accepted.is_empty(), "call {calls} took nothing in");
        assert!(refused.iter().all(|e| matches!(
            e,
            MembershipError::Postponed { .. } | MembershipError::MissingParents { .. }
        )));
    }
    assert!(calls > 1, "the budget cut the first batch");
    assert_eq!(fresh.heads(), log.heads());
    assert_eq!(fresh.membership(), log.membership());
    assert!(
        !fresh.membership().is_member(&id(9)),
        "Dave's racing approval is void"
    );
}

/// A hostile admin makes a key sealed to itself alone, leaving out members it had seen:
/// an honest admin left out replaces it, rather than waiting for a copy that never comes.
#[test]
fn a_key_sealed_to_its_maker_alone_is_replaced_by_an_admin_it_left_out() {
    let (alice, mallory, carol) = (key(0), key(1), key(2));
    let (mut vault, _) = Vault::create(&alice, "v", [0; 16], 0, ActorId::random()).unwrap();
    let _ = vault
        .add_device(&alice, mallory.device_id(), Role::Admin, 1)
        .unwrap();
    let _ = vault
        .add_device(&alice, carol.device_id(), Role::Member, 2)
        .unwrap();
    let _ = vault.maintain_keys(&alice, 3).unwrap();
    let hoarded = VaultKey::derive(&mallory, &vault.id(), &[], 5);
    let own = seal_key(&hoarded, &vault.id(), &mallory.device_id()).unwrap();
    let mut log = vault.log().clone();
    let entry = log
        .author(
            &mallory,
            Action::NewKey {
                generation: 5,
                commitment: hoarded.commitment(&vault.id()),
                sealed: vec![own],
            },
            4,
        )
        .unwrap();
    let _ = vault.ingest_entries(vec![entry], Received::STORED);
    assert!(vault.current_key(&carol).is_none(), "Carol was left out");
    let _ = vault.maintain_keys(&alice, 5).unwrap();
    let (_, fresh) = vault.current_key(&alice).expect("Alice made a new key");
    assert!(fresh.generation() > 5);
    assert_eq!(vault.current_key(&carol).map(|(_, k)| k), Some(fresh));
}
