//! The membership at some set of heads, as the rules compute it: members and their
//! roles, revoked devices and their cut-off, invites, and vault keys.

use std::collections::{BTreeMap, BTreeSet};

use super::{Role, WorkSeen};
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
    /// Seniority: position of its first admission in the canonical order (0 = creator).
    pub seniority: usize,
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
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The device that redeemed it, if any.
    pub redeemed_by: Option<DeviceId>,
    /// SHA-256 of the invite's secret.
    pub secret_hash: Hash,
}

/// A vault key made by a `NewKey` entry, and to whom it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its generation.
    pub generation: u32,
    /// The admin that made it.
    pub created_by: DeviceId,
    /// Copies of the key, by recipient.
    pub sealed: BTreeMap<DeviceId, SealedKey>,
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

    /// Whether `secret` is the secret of the invite created by entry `invite`.
    pub fn invite_secret_matches(&self, invite: &Hash, secret: &[u8; 32]) -> bool {
        self.invites
            .get(invite)
            .is_some_and(|i| Hash::of(&[secret]) == i.secret_hash)
    }

    /// Entries that are stored but have no effect (rules 4, 6, 7 and 9).
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
