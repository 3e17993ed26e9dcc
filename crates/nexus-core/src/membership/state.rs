//! The membership at some set of heads, as the rules compute it: members and their
//! roles, revoked devices and their cut-off, invites, and vault keys.

use std::collections::{BTreeMap, BTreeSet};

use super::{Role, RuleViolation, WorkSeen};
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::sealing::SealedKey;

/// A current member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// The entry that admitted it.
    pub admitted_by: Hash,
}

/// A revoked device and where its work is cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revocation entries (more than one if it was revoked several times).
    pub entries: Vec<Hash>,
    /// The device's work seen by the revoking admins (highest per actor over all its
    /// revocations): changes at or below it stay valid.
    pub seen: WorkSeen,
}

/// An invite and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The admin that created it.
    pub created_by: DeviceId,
    /// The role it grants.
    pub role: Role,
    /// When it was made, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The device that redeemed it, if any.
    pub redeemed_by: Option<DeviceId>,
    /// The `CancelInvite` entry that cancelled it, if any.
    pub cancelled_by: Option<Hash>,
    /// The public key derived from its secret.
    pub invite_key: DeviceId,
}

/// A vault key made by a `NewKey` entry, and to whom it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its generation.
    pub generation: u32,
    /// The admin that made it.
    pub created_by: DeviceId,
    /// What an opened copy must match ([`crate::sealing::VaultKey::commitment`]).
    pub commitment: crate::hash::Hash,
    /// Copies of the key, by recipient: at most one per sealing admin, in the canonical
    /// order, so a bad copy from one admin does not stop a good one from another.
    pub sealed: BTreeMap<DeviceId, Vec<(DeviceId, SealedKey)>>,
}

impl KeyInfo {
    /// The key, from the first copy sealed to `device` that opens and matches the
    /// commitment.
    pub fn open_for(
        &self,
        vault: &crate::ids::VaultId,
        device: &crate::identity::DeviceKey,
    ) -> Option<crate::sealing::VaultKey> {
        self.sealed
            .get(&device.device_id())?
            .iter()
            .filter_map(|(_, copy)| crate::sealing::open_key(copy, vault, device).ok())
            .find(|key| key.commitment(vault) == self.commitment)
    }

    /// Whether `device` holds `copy` among its copies.
    pub fn holds(&self, device: &DeviceId, copy: &SealedKey) -> bool {
        self.sealed
            .get(device)
            .is_some_and(|copies| copies.iter().any(|(_, c)| c == copy))
    }
}

/// Who belongs to a vault at some set of heads. Built by [`evaluate`](super::evaluate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    pub(super) name: String,
    pub(super) members: BTreeMap<DeviceId, Member>,
    pub(super) revoked: BTreeMap<DeviceId, Revocation>,
    pub(super) invites: BTreeMap<Hash, Invite>,
    pub(super) void: BTreeSet<Hash>,
    pub(super) keys: BTreeMap<Hash, KeyInfo>,
    pub(super) current_key: Option<Hash>,
}

impl Membership {
    /// The vault's name, from its genesis.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `device` is a current member.
    pub fn is_member(&self, device: &DeviceId) -> bool {
        self.members.contains_key(device)
    }

    /// Whether `device` is a current admin.
    pub fn is_admin(&self, device: &DeviceId) -> bool {
        self.role(device) == Some(Role::Admin)
    }

    /// A member's role.
    pub fn role(&self, device: &DeviceId) -> Option<Role> {
        self.members.get(device).map(|m| m.role)
    }

    /// Current members.
    pub fn members(&self) -> &BTreeMap<DeviceId, Member> {
        &self.members
    }

    /// Revoked devices that are not members again.
    pub fn revoked(&self) -> &BTreeMap<DeviceId, Revocation> {
        &self.revoked
    }

    /// The revocation of `device`, if it is revoked.
    pub fn revocation(&self, device: &DeviceId) -> Option<&Revocation> {
        self.revoked.get(device)
    }

    /// Invites, by the hash of their `CreateInvite` entry.
    pub fn invites(&self) -> &BTreeMap<Hash, Invite> {
        &self.invites
    }

    /// Whether `redeemer` may join now with the invite created by entry `invite` and the
    /// `proof` it showed: the invite exists, is neither redeemed, cancelled nor expired,
    /// its creator is still an admin, and the proof names `redeemer`.
    pub fn check_redemption(
        &self,
        vault: &crate::ids::VaultId,
        invite: &Hash,
        redeemer: &DeviceId,
        proof: &crate::identity::Signature,
        now_ms: u64,
    ) -> Result<(), RuleViolation> {
        let found = self
            .invites
            .get(invite)
            .ok_or(RuleViolation::UnknownInvite)?;
        if !super::proof_verifies(&found.invite_key, vault, invite, redeemer, proof) {
            return Err(RuleViolation::BadInviteProof);
        }
        if let Some(by) = found.redeemed_by {
            return Err(RuleViolation::InviteAlreadyRedeemed { by });
        }
        if found.cancelled_by.is_some() {
            return Err(RuleViolation::InviteCancelled);
        }
        if now_ms > found.expires_at_ms {
            return Err(RuleViolation::InviteExpired {
                expires_at_ms: found.expires_at_ms,
                redeemed_at_ms: now_ms,
            });
        }
        if !self.is_admin(&found.created_by) {
            return Err(RuleViolation::InviteCreatorNotAdmin);
        }
        if self.is_member(redeemer) {
            return Err(RuleViolation::AlreadyMember);
        }
        Ok(())
    }

    /// Invites that can still admit a device now: not redeemed, cancelled or expired,
    /// and made by a device that is still an admin.
    pub fn open_invites(&self, now_ms: u64) -> impl Iterator<Item = (&Hash, &Invite)> {
        self.invites.iter().filter(move |(_, i)| {
            i.redeemed_by.is_none()
                && i.cancelled_by.is_none()
                && now_ms <= i.expires_at_ms
                && self.is_admin(&i.created_by)
        })
    }

    /// Entries that are stored but have no effect (rules 4, 6 and 9).
    pub fn void_entries(&self) -> &BTreeSet<Hash> {
        &self.void
    }

    /// Every vault key, by the hash of the `NewKey` entry that made it.
    pub fn keys(&self) -> &BTreeMap<Hash, KeyInfo> {
        &self.keys
    }

    /// The key to encrypt with now (rule 10), or `None` until an admin makes one after
    /// the latest revocation.
    pub fn current_key(&self) -> Option<(Hash, &KeyInfo)> {
        let hash = self.current_key?;
        self.keys.get(&hash).map(|info| (hash, info))
    }
}
