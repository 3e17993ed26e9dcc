//! The deterministic rules (see the module doc of [`crate::membership`]): replaying the
//! entries in canonical order, deciding which are valid and which are void, and the
//! [`Membership`] they give.

use std::collections::{BTreeSet, HashMap};

use super::order::Replay;
use super::{
    Action, Invite, KeyInfo, Member, Membership, Revocation, Role, RuleViolation, SignedEntry,
    WorkSeen,
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
    membership: Membership,
    /// Why each entry that had no effect was refused, by position in the order.
    pub(super) refused: HashMap<usize, RuleViolation>,
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
    secret_hash: Hash,
    invite: Invite,
}
impl Replay<'_> {
    pub(super) fn run(&self) -> Outcome {
        let mut void: BTreeSet<usize> = BTreeSet::new();
        // Each pass either adds an entry to `void` or ends, so this ends.
        loop {
            let pass = self.pass(&void);
            let newly_void = self.voided_by_revocations(&pass.devices, &void);
            if newly_void.is_empty() {
                return self.finish(pass, &void);
            }
            void.extend(newly_void);
        }
    }

    fn pass(&self, void: &BTreeSet<usize>) -> Pass {
        let mut pass = Pass::default();
        for (i, signed) in self.order.iter().enumerate() {
            if void.contains(&i) {
                continue;
            }
            if let Err(rule) = self.apply(&mut pass, i, signed, void) {
                pass.refused.insert(i, rule);
            }
        }
        pass
    }

    /// The role of `device` at the current point of a pass, by rule 5.
    fn current_role(&self, pass: &Pass, device: &DeviceId) -> Option<(usize, Role)> {
        let state = pass.devices.get(device)?;
        state
            .admissions
            .iter()
            .rev()
            .find(|(admission, _)| {
                state
                    .revocations
                    .iter()
                    .all(|&r| self.is_ancestor(r, *admission))
            })
            .copied()
    }

    fn seniority(pass: &Pass, device: &DeviceId) -> usize {
        pass.devices
            .get(device)
            .and_then(|s| s.admissions.first())
            .map_or(usize::MAX, |(p, _)| *p)
    }

    fn apply(
        &self,
        pass: &mut Pass,
        i: usize,
        signed: &SignedEntry,
        void: &BTreeSet<usize>,
    ) -> Result<(), RuleViolation> {
        let entry = &signed.entry;
        let author = entry.author;
        let author_role = self.current_role(pass, &author).map(|(_, role)| role);
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
                secret_hash,
                role,
                expires_at_ms,
            } => {
                require_admin()?;
                pass.invites.insert(
                    signed.hash,
                    InviteState {
                        position: i,
                        secret_hash: *secret_hash,
                        invite: Invite {
                            created_by: author,
                            role: *role,
                            expires_at_ms: *expires_at_ms,
                            redeemed_by: None,
                            secret_hash: *secret_hash,
                        },
                    },
                );
            }
            Action::RedeemInvite { invite, secret } => {
                let state = pass
                    .invites
                    .get(invite)
                    .filter(|s| self.is_ancestor(s.position, i))
                    .ok_or(RuleViolation::UnknownInvite)?;
                if Hash::of(&[secret]) != state.secret_hash {
                    return Err(RuleViolation::WrongSecret);
                }
                if entry.timestamp_ms > state.invite.expires_at_ms {
                    return Err(RuleViolation::InviteExpired {
                        expires_at_ms: state.invite.expires_at_ms,
                        redeemed_at_ms: entry.timestamp_ms,
                    });
                }
                if let Some(by) = state.invite.redeemed_by {
                    return Err(RuleViolation::InviteAlreadyRedeemed { by });
                }
                if author_role.is_some() {
                    return Err(RuleViolation::AlreadyMember);
                }
                let role = state.invite.role;
                if let Some(state) = pass.invites.get_mut(invite) {
                    state.invite.redeemed_by = Some(author);
                }
                pass.admit(author, i, role);
            }
            Action::RevokeDevice { device, .. } => {
                require_admin()?;
                // Rule 7: a concurrent revocation of this author by a more senior admin.
                let senior_counter = (0..self.order.len()).find(|&j| {
                    !void.contains(&j)
                        && self.concurrent(i, j)
                        && self.order[j].entry.author == *device
                        && matches!(&self.order[j].entry.action,
                            Action::RevokeDevice { device: target, .. } if *target == author)
                        && Self::seniority(pass, device) < Self::seniority(pass, &author)
                });
                if senior_counter.is_some() {
                    return Err(RuleViolation::OverriddenBySenior { by: *device });
                }
                pass.devices.entry(*device).or_default().revocations.push(i);
                pass.revocations.push(i);
            }
            Action::NewKey { generation, sealed } => {
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
                    sealed: sealed.iter().map(|c| (c.recipient, c.clone())).collect(),
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
                for copy in sealed {
                    info.sealed
                        .entry(copy.recipient)
                        .or_insert_with(|| copy.clone());
                }
            }
        }
        Ok(())
    }

    /// Rule 6: entries by a revoked device that its revocation had not seen.
    fn voided_by_revocations(
        &self,
        devices: &HashMap<DeviceId, DeviceState>,
        void: &BTreeSet<usize>,
    ) -> Vec<usize> {
        let mut newly_void = Vec::new();
        for (device, state) in devices {
            for &r in &state.revocations {
                for j in 0..self.order.len() {
                    if j == r
                        || void.contains(&j)
                        || self.order[j].entry.author != *device
                        || self.is_ancestor(j, r)
                    {
                        continue;
                    }
                    let readmitted_before = state.admissions.iter().any(|&(a, _)| {
                        self.is_ancestor(r, a) && (a == j || self.is_ancestor(a, j))
                    });
                    if !readmitted_before {
                        newly_void.push(j);
                    }
                }
            }
        }
        newly_void.sort_unstable();
        newly_void.dedup();
        newly_void
    }

    fn finish(&self, pass: Pass, void: &BTreeSet<usize>) -> Outcome {
        let mut membership = Membership {
            name: pass.name.clone(),
            ..Membership::default()
        };
        for (device, state) in &pass.devices {
            if let Some((admission, role)) = self.current_role(&pass, device) {
                membership.members.insert(
                    *device,
                    Member {
                        role,
                        admitted_by: self.order[admission].hash,
                        seniority: Self::seniority(&pass, device),
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
        }
    }
}

#[derive(Default)]
struct Pass {
    genesis_seen: bool,
    name: String,
    devices: HashMap<DeviceId, DeviceState>,
    invites: HashMap<Hash, InviteState>,
    revocations: Vec<usize>,
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
