//! The deterministic rules (see the module doc of [`crate::membership`]): replaying the
//! entries in canonical order, deciding which are valid and which are void, and the
//! [`Membership`] they give.

use std::collections::{BTreeSet, HashMap};

use super::order::Replay;
use super::{
    Action, Invite, KeyInfo, MAX_INVITE_LIFETIME_MS, Member, Membership, Revocation, Role,
    RuleViolation, SignedEntry, WorkSeen,
};
use crate::hash::Hash;
use crate::identity::DeviceId;

/// Reads membership at `heads` from a set of entries keyed by hash. Pure: the same
/// entries and heads give the same answer on every device. Entries in the causal past of
/// `heads` that are missing from `entries` are skipped.
pub fn evaluate(entries: &HashMap<Hash, SignedEntry>, heads: &[Hash]) -> Membership {
    Replay::new(entries, heads).run().membership
}

pub(super) struct Outcome {
    pub(super) membership: Membership,
    /// Why each entry that had no effect was refused, by position in the order.
    pub(super) refused: HashMap<usize, RuleViolation>,
    /// How many passes over the order the replay took.
    pub(super) passes: usize,
}

#[derive(Default)]
struct DeviceState {
    /// (position, role) of each valid admission.
    admissions: Vec<(usize, Role)>,
    /// Positions of each valid revocation.
    revocations: Vec<usize>,
}

struct InviteState {
    position: usize,
    invite: Invite,
    /// Position of the redemption that took the invite.
    redeemed_at: Option<usize>,
}
impl Replay<'_> {
    pub(super) fn run(&self) -> Outcome {
        let mut void: BTreeSet<usize> = BTreeSet::new();
        // Each pass either adds an entry to `void` or ends, so this ends. Only entries
        // that nothing can void act first (a revocation by a device that is itself being
        // revoked voids nothing while that is undecided); when none is left to act, the
        // rest act on everything but revocations (a ring of three or more admins
        // revoking each other concurrently: all of them are removed).
        let mut passes = 0;
        loop {
            passes += 1;
            let pass = self.pass(&void);
            let mut newly_void = self.voided(&pass, &void, Stage::Settled);
            if newly_void.is_empty() {
                newly_void = self.voided(&pass, &void, Stage::All);
            }
            if newly_void.is_empty() {
                return self.finish(pass, &void, passes);
            }
            void.extend(newly_void);
        }
    }

    /// Whether the entries conflict: some revocation or cancellation had not seen an
    /// entry it voids, or an invite is redeemed twice concurrently. Without conflicts
    /// nothing is void, in these entries or in any causal past among them, so one pass
    /// judges every entry exactly as a replay of its own causal past would.
    pub(super) fn conflicts(&self) -> Option<Outcome> {
        let pass = self.pass(&BTreeSet::new());
        let conflict = pass.concurrent_redemption
            || !self.voided(&pass, &BTreeSet::new(), Stage::Any).is_empty();
        (!conflict).then(|| self.finish(pass, &BTreeSet::new(), 1))
    }

    fn pass(&self, void: &BTreeSet<usize>) -> Pass {
        let mut pass = Pass::default();
        for (i, signed) in self.order.iter().enumerate() {
            if void.contains(&i) {
                continue;
            }
            if let Err(rule) = self.apply(&mut pass, i, signed) {
                pass.refused.insert(i, rule);
            }
        }
        pass
    }

    /// The role of `device` by rule 5: at the heads (`at` = `None`), or as entry `at`
    /// saw it (admissions and revocations in its causal past only; concurrent
    /// revocations act through rule 6 instead).
    fn current_role(
        &self,
        pass: &Pass,
        device: &DeviceId,
        at: Option<usize>,
    ) -> Option<(usize, Role)> {
        let state = pass.devices.get(device)?;
        let seen = |e: usize| at.is_none_or(|i| self.is_ancestor(e, i));
        state
            .admissions
            .iter()
            .rev()
            .filter(|(admission, _)| seen(*admission))
            .find(|(admission, _)| {
                state
                    .revocations
                    .iter()
                    .filter(|&&r| seen(r))
                    .all(|&r| self.is_ancestor(r, *admission))
            })
            .copied()
    }

    fn apply(&self, pass: &mut Pass, i: usize, signed: &SignedEntry) -> Result<(), RuleViolation> {
        let entry = &signed.entry;
        // Rule 0: no entry claims a time before what its author had seen.
        let parent_ms = entry
            .parents
            .iter()
            .filter_map(|p| self.position.get(p))
            .map(|&p| self.order[p].entry.timestamp_ms)
            .max()
            .unwrap_or(0);
        if entry.timestamp_ms < parent_ms {
            return Err(RuleViolation::BeforeParents {
                timestamp_ms: entry.timestamp_ms,
                parent_ms,
            });
        }
        let author = entry.author;
        let author_role = self
            .current_role(pass, &author, Some(i))
            .map(|(_, role)| role);
        let require_admin = || match author_role {
            Some(Role::Admin) => Ok(()),
            Some(Role::Member) => Err(RuleViolation::NotAdmin),
            None => Err(RuleViolation::NotMember),
        };
        match &entry.action {
            Action::Genesis { name, .. } => {
                if pass.genesis_seen {
                    return Err(RuleViolation::SecondGenesis);
                }
                pass.genesis_seen = true;
                pass.name = name.clone();
                pass.admit(author, i, Role::Admin);
            }
            Action::AddDevice { device, role } => {
                require_admin()?;
                pass.admit(*device, i, *role);
            }
            Action::CreateInvite {
                invite_key,
                role,
                expires_at_ms,
            } => {
                require_admin()?;
                let lasts_ms = expires_at_ms.saturating_sub(entry.timestamp_ms);
                if lasts_ms == 0 || lasts_ms > MAX_INVITE_LIFETIME_MS {
                    return Err(RuleViolation::InviteLifetime { lasts_ms });
                }
                pass.invites.insert(
                    signed.hash,
                    InviteState {
                        position: i,
                        invite: Invite {
                            created_by: author,
                            role: *role,
                            created_at_ms: entry.timestamp_ms,
                            expires_at_ms: *expires_at_ms,
                            redeemed_by: None,
                            cancelled_by: None,
                            invite_key: *invite_key,
                        },
                        redeemed_at: None,
                    },
                );
            }
            Action::CancelInvite { invite } => {
                require_admin()?;
                let state = pass
                    .invites
                    .get_mut(invite)
                    .filter(|s| self.is_ancestor(s.position, i))
                    .ok_or(RuleViolation::UnknownInvite)?;
                state.invite.cancelled_by.get_or_insert(signed.hash);
                pass.cancels.push((i, *invite));
            }
            Action::RedeemInvite { invite, proof } => {
                let state = pass
                    .invites
                    .get(invite)
                    .filter(|s| self.is_ancestor(s.position, i))
                    .ok_or(RuleViolation::UnknownInvite)?;
                let vault = entry.vault.ok_or(RuleViolation::UnknownInvite)?;
                if !super::proof_verifies(&state.invite.invite_key, &vault, invite, &author, proof)
                {
                    return Err(RuleViolation::BadInviteProof);
                }
                if pass
                    .cancels
                    .iter()
                    .any(|(c, hash)| hash == invite && self.is_ancestor(*c, i))
                {
                    return Err(RuleViolation::InviteCancelled);
                }
                if self
                    .current_role(pass, &state.invite.created_by, Some(i))
                    .map(|(_, r)| r)
                    != Some(Role::Admin)
                {
                    return Err(RuleViolation::InviteCreatorNotAdmin);
                }
                if entry.timestamp_ms > state.invite.expires_at_ms {
                    return Err(RuleViolation::InviteExpired {
                        expires_at_ms: state.invite.expires_at_ms,
                        redeemed_at_ms: entry.timestamp_ms,
                    });
                }
                if let (Some(by), Some(at)) = (state.invite.redeemed_by, state.redeemed_at) {
                    if !self.is_ancestor(at, i) {
                        pass.concurrent_redemption = true;
                    }
                    return Err(RuleViolation::InviteAlreadyRedeemed { by });
                }
                if author_role.is_some() {
                    return Err(RuleViolation::AlreadyMember);
                }
                let role = state.invite.role;
                if let Some(state) = pass.invites.get_mut(invite)
                    && state.redeemed_at.is_none()
                {
                    state.invite.redeemed_by = Some(author);
                    state.redeemed_at = Some(i);
                }
                pass.admit(author, i, role);
            }
            Action::RevokeDevice { device, .. } => {
                require_admin()?;
                pass.devices.entry(*device).or_default().revocations.push(i);
                pass.revocations.push(i);
            }
            Action::NewKey {
                generation,
                commitment,
                sealed,
            } => {
                require_admin()?;
                let newest = pass
                    .keys
                    .values()
                    .filter(|(position, _)| self.is_ancestor(*position, i))
                    .map(|(_, info)| info.generation)
                    .max();
                if let Some(newest) = newest.filter(|newest| *generation <= *newest) {
                    return Err(RuleViolation::StaleKeyGeneration {
                        generation: *generation,
                        newest,
                    });
                }
                let info = KeyInfo {
                    generation: *generation,
                    created_by: author,
                    commitment: *commitment,
                    sealed: sealed
                        .iter()
                        .map(|c| (c.recipient, vec![(author, c.clone())]))
                        .collect(),
                };
                pass.keys.insert(signed.hash, (i, info));
                pass.new_keys.push(i);
            }
            Action::ShareKey {
                key,
                generation,
                sealed,
            } => {
                require_admin()?;
                let (_, info) = pass
                    .keys
                    .get_mut(key)
                    .filter(|(position, info)| {
                        self.is_ancestor(*position, i) && info.generation == *generation
                    })
                    .ok_or(RuleViolation::UnknownKey)?;
                // One copy per recipient and sealing admin: a bad copy by one admin
                // cannot keep out a good one by another.
                for copy in sealed {
                    let copies = info.sealed.entry(copy.recipient).or_default();
                    if !copies.iter().any(|(by, _)| *by == author) {
                        copies.push((author, copy.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether revocation `r` (of the author of `j`, valid in this pass) voids entry `j`
    /// by rules 6 and 7.
    fn revocation_voids(&self, pass: &Pass, r: usize, j: usize) -> bool {
        let entry = &self.order[j].entry;
        if j == r || self.is_ancestor(j, r) {
            return false;
        }
        let revoker = self.order[r].entry.author;
        // Rule 7: its revocation of the revoker, made without seeing this one, stands.
        if matches!(&entry.action, Action::RevokeDevice { device, .. } if *device == revoker)
            && self.concurrent(j, r)
        {
            return false;
        }
        let readmitted_before = pass.devices.get(&entry.author).is_some_and(|state| {
            state
                .admissions
                .iter()
                .any(|&(a, _)| self.is_ancestor(r, a) && (a == j || self.is_ancestor(a, j)))
        });
        !readmitted_before
    }

    /// Whether some revocation valid in this pass could void entry `j`.
    fn voidable(&self, pass: &Pass, j: usize) -> bool {
        let author = self.order[j].entry.author;
        pass.devices.get(&author).is_some_and(|state| {
            state
                .revocations
                .iter()
                .any(|&r| self.revocation_voids(pass, r, j))
        })
    }

    /// Rules 4, 6 and 7: the entries that revocations and cancellations had not seen, as
    /// `stage` lets them act.
    fn voided(&self, pass: &Pass, void: &BTreeSet<usize>, stage: Stage) -> Vec<usize> {
        let acts = |r: usize| stage != Stage::Settled || !self.voidable(pass, r);
        let may_void = |j: usize| {
            !void.contains(&j)
                && !pass.refused.contains_key(&j)
                && (stage != Stage::All
                    || !matches!(self.order[j].entry.action, Action::RevokeDevice { .. }))
        };
        let mut newly_void = Vec::new();
        for (device, state) in &pass.devices {
            for &r in state.revocations.iter().filter(|&&r| acts(r)) {
                for j in (0..self.order.len()).filter(|&j| may_void(j)) {
                    let entry = &self.order[j].entry;
                    if entry.author == *device {
                        if self.revocation_voids(pass, r, j) {
                            newly_void.push(j);
                        }
                    } else if let Action::RedeemInvite { invite, .. } = &entry.action
                        && !self.is_ancestor(j, r)
                        && pass
                            .invites
                            .get(invite)
                            .is_some_and(|s| s.invite.created_by == *device)
                    {
                        // Rule 4: the invite died with its creator's admin standing.
                        newly_void.push(j);
                    }
                }
            }
        }
        for &(c, cancelled) in pass.cancels.iter().filter(|(c, _)| acts(*c)) {
            for j in (0..self.order.len()).filter(|&j| may_void(j)) {
                if j != c
                    && !self.is_ancestor(j, c)
                    && matches!(&self.order[j].entry.action,
                        Action::RedeemInvite { invite, .. } if *invite == cancelled)
                {
                    newly_void.push(j);
                }
            }
        }
        newly_void.sort_unstable();
        newly_void.dedup();
        newly_void
    }

    fn finish(&self, pass: Pass, void: &BTreeSet<usize>, passes: usize) -> Outcome {
        let mut membership = Membership {
            name: pass.name.clone(),
            ..Membership::default()
        };
        for (device, state) in &pass.devices {
            if let Some((admission, role)) = self.current_role(&pass, device, None) {
                membership.members.insert(
                    *device,
                    Member {
                        role,
                        admitted_by: self.order[admission].hash,
                    },
                );
            } else if !state.revocations.is_empty() {
                let mut revocation = Revocation {
                    entries: Vec::new(),
                    seen: WorkSeen::new(),
                };
                for &r in &state.revocations {
                    revocation.entries.push(self.order[r].hash);
                    if let Action::RevokeDevice { seen, .. } = &self.order[r].entry.action {
                        for (doc, actors) in seen {
                            let merged = revocation.seen.entry(*doc).or_default();
                            for (actor, seq) in actors {
                                let max = merged.entry(actor.clone()).or_default();
                                *max = (*max).max(*seq);
                            }
                        }
                    }
                }
                membership.revoked.insert(*device, revocation);
            }
        }
        membership.invites = pass
            .invites
            .into_iter()
            .map(|(hash, state)| (hash, state.invite))
            .collect();
        // Rule 10: the last new key that saw every revocation.
        membership.current_key = pass
            .new_keys
            .iter()
            .rev()
            .find(|&&k| pass.revocations.iter().all(|&r| self.is_ancestor(r, k)))
            .map(|&k| self.order[k].hash);
        membership.keys = pass
            .keys
            .into_iter()
            .map(|(hash, (_, info))| (hash, info))
            .collect();
        let mut refused = pass.refused;
        for &i in void {
            refused.insert(i, RuleViolation::VoidedByRevocation);
        }
        membership.void = refused.keys().map(|&i| self.order[i].hash).collect();
        Outcome {
            membership,
            refused,
            passes,
        }
    }
}

/// Which revocations and cancellations void which entries in a round of the replay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Only those that nothing could void act, on every entry.
    Settled,
    /// All of them act, on everything but revocations.
    All,
    /// All of them, on every entry: not a stage of the rules, the test for conflicts.
    Any,
}

#[derive(Default)]
struct Pass {
    /// Whether an invite was redeemed by two entries that had not seen each other.
    concurrent_redemption: bool,
    genesis_seen: bool,
    name: String,
    devices: HashMap<DeviceId, DeviceState>,
    invites: HashMap<Hash, InviteState>,
    revocations: Vec<usize>,
    /// Valid cancellations: (position, invite).
    cancels: Vec<(usize, Hash)>,
    /// Vault keys by `NewKey` entry: (position, key).
    keys: HashMap<Hash, (usize, KeyInfo)>,
    /// Positions of valid `NewKey` entries, in order.
    new_keys: Vec<usize>,
    refused: HashMap<usize, RuleViolation>,
}

impl Pass {
    fn admit(&mut self, device: DeviceId, position: usize, role: Role) {
        self.devices
            .entry(device)
            .or_default()
            .admissions
            .push((position, role));
    }
}
