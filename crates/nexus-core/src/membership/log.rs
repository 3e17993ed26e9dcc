//! A vault's membership log: the DAG of accepted entries and its heads, how entries are
//! checked on the way in, and the helpers that author new ones.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::order::Replay;
use super::{
    Action, Entry, MAX_CLOCK_SKEW_MS, MAX_ENTRIES, MAX_NAME_LEN, Membership, MembershipError, Role,
    RuleViolation, SignedEntry, WorkSeen, evaluate,
};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey};
use crate::ids::VaultId;

/// A vault's membership log: every accepted entry, its heads, and the membership they give.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    vault: VaultId,
    entries: HashMap<Hash, SignedEntry>,
    heads: BTreeSet<Hash>,
    current: Membership,
}

/// How an entry was received, for the checks that depend on who presented it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// This device's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The authenticated device that sent the entry (`None` when it was made here or
    /// loaded from storage).
    pub from: Option<DeviceId>,
}

impl Received {
    /// An entry loaded from this device's own storage: already checked when stored.
    pub const STORED: Received = Received {
        now_ms: 0,
        from: None,
    };
}

impl MembershipLog {
    /// Creates a new vault: signs its genesis entry with `creator`'s key.
    pub fn create(
        creator: &DeviceKey,
        name: &str,
        nonce: [u8; 16],
        now_ms: u64,
    ) -> Result<(Self, SignedEntry), MembershipError> {
        let mut name = name.to_owned();
        while name.len() > MAX_NAME_LEN {
            name.pop();
        }
        let genesis = Entry {
            vault: None,
            parents: Vec::new(),
            author: creator.device_id(),
            timestamp_ms: now_ms,
            action: Action::Genesis { name, nonce },
        }
        .sign(creator);
        Ok((Self::from_genesis(genesis.clone())?, genesis))
    }

    /// Starts a log from a genesis entry received or loaded from storage.
    pub fn from_genesis(genesis: SignedEntry) -> Result<Self, MembershipError> {
        let hash = genesis.hash;
        if !matches!(genesis.entry.action, Action::Genesis { .. }) {
            return Err(MembershipError::Rejected {
                entry: hash,
                action: genesis.entry.action.name(),
                author: genesis.entry.author,
                rule: RuleViolation::NotGenesis,
            });
        }
        let mut entries = HashMap::new();
        entries.insert(hash, genesis);
        let heads = BTreeSet::from([hash]);
        let current = evaluate(&entries, &[hash]);
        Ok(Self {
            vault: VaultId(hash),
            entries,
            heads,
            current,
        })
    }

    /// The vault this log belongs to.
    pub fn vault_id(&self) -> VaultId {
        self.vault
    }

    /// Membership at the current heads.
    pub fn membership(&self) -> &Membership {
        &self.current
    }

    /// The current heads.
    pub fn heads(&self) -> Vec<Hash> {
        self.heads.iter().copied().collect()
    }

    /// Whether the log holds `hash`.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// An entry by hash.
    pub fn get(&self, hash: &Hash) -> Option<&SignedEntry> {
        self.entries.get(hash)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a log holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, parents before children.
    pub fn entries(&self) -> Vec<&SignedEntry> {
        Replay::new(&self.entries, &self.heads()).order
    }

    /// Hashes of `heads` and all their ancestors that this log holds.
    pub fn ancestry(&self, heads: &[Hash]) -> HashSet<Hash> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Hash> = heads.to_vec();
        while let Some(hash) = stack.pop() {
            if let Some(entry) = self.entries.get(&hash)
                && seen.insert(hash)
            {
                stack.extend(entry.entry.parents.iter().copied());
            }
        }
        seen
    }

    /// Membership at other heads (e.g. what a peer's heads imply).
    pub fn membership_at(&self, heads: &[Hash]) -> Membership {
        evaluate(&self.entries, heads)
    }

    /// Accepts one entry if it is valid in its own causal past. Returns `false` for an
    /// entry already in the log.
    pub fn insert(
        &mut self,
        signed: SignedEntry,
        received: Received,
    ) -> Result<bool, MembershipError> {
        let hash = signed.hash;
        if self.entries.contains_key(&hash) {
            return Ok(false);
        }
        let entry = &signed.entry;
        if entry.vault != Some(self.vault) {
            return Err(MembershipError::WrongVault {
                entry: hash,
                expected: self.vault,
                found: entry.vault,
            });
        }
        let missing: Vec<Hash> = entry
            .parents
            .iter()
            .filter(|p| !self.entries.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(MembershipError::MissingParents {
                entry: hash,
                missing,
            });
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(MembershipError::LogFull);
        }
        if let (Action::RedeemInvite { .. }, Some(from)) = (&entry.action, received.from)
            && from == entry.author
            && entry.timestamp_ms.abs_diff(received.now_ms) > MAX_CLOCK_SKEW_MS
        {
            return Err(MembershipError::ClockSkew {
                entry: hash,
                claimed_ms: entry.timestamp_ms,
                now_ms: received.now_ms,
            });
        }
        // Judge the entry against its own causal past.
        let author = entry.author;
        let action = entry.action.name();
        self.entries.insert(hash, signed);
        let replay = Replay::new(&self.entries, &[hash]);
        let outcome = replay.run();
        let own_position = replay.order.len() - 1;
        if let Some(rule) = outcome.refused.get(&own_position) {
            let rule = rule.clone();
            self.entries.remove(&hash);
            return Err(MembershipError::Rejected {
                entry: hash,
                action,
                author,
                rule,
            });
        }
        if let Some(entry) = self.entries.get(&hash) {
            for parent in &entry.entry.parents {
                self.heads.remove(parent);
            }
        }
        self.heads.insert(hash);
        self.current = evaluate(&self.entries, &self.heads());
        Ok(true)
    }

    /// Inserts entries given in any order, retrying those whose parents come later in
    /// the batch. Returns the hashes accepted and the entries refused with why.
    pub fn insert_many(
        &mut self,
        entries: impl IntoIterator<Item = SignedEntry>,
        received: Received,
    ) -> (Vec<Hash>, Vec<MembershipError>) {
        let mut pending: Vec<SignedEntry> = entries.into_iter().collect();
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        loop {
            let mut waiting = Vec::new();
            let before = pending.len();
            for signed in pending {
                let hash = signed.hash;
                match self.insert(signed.clone(), received) {
                    Ok(true) => accepted.push(hash),
                    Ok(false) => {}
                    Err(MembershipError::MissingParents { .. }) => waiting.push(signed),
                    Err(e) => refused.push(e),
                }
            }
            if waiting.is_empty() || waiting.len() == before {
                for signed in waiting {
                    if let Err(e) = self.insert(signed, received) {
                        refused.push(e);
                    }
                }
                return (accepted, refused);
            }
            pending = waiting;
        }
    }

    /// Signs an entry by `key` on top of the current heads and inserts it.
    pub fn author(
        &mut self,
        key: &DeviceKey,
        action: Action,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let signed = Entry {
            vault: Some(self.vault),
            parents: self.heads(),
            author: key.device_id(),
            timestamp_ms: now_ms,
            action,
        }
        .sign(key);
        self.insert(signed.clone(), Received { now_ms, from: None })?;
        Ok(signed)
    }

    /// An admin approves `device`.
    pub fn add_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        role: Role,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(admin, Action::AddDevice { device, role }, now_ms)
    }

    /// An admin creates an invite for `secret`; share the secret and the returned entry's
    /// hash with the invitee.
    pub fn create_invite(
        &mut self,
        admin: &DeviceKey,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let action = Action::CreateInvite {
            secret_hash: Hash::of(&[secret]),
            role,
            expires_at_ms,
        };
        self.author(admin, action, now_ms)
    }

    /// A new device redeems an invite with its own key.
    pub fn redeem_invite(
        &mut self,
        newcomer: &DeviceKey,
        invite: Hash,
        secret: [u8; 32],
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(newcomer, Action::RedeemInvite { invite, secret }, now_ms)
    }

    /// An admin revokes `device`, recording how much of its work the admin has seen.
    pub fn revoke_device(
        &mut self,
        admin: &DeviceKey,
        device: DeviceId,
        seen: WorkSeen,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(admin, Action::RevokeDevice { device, seen }, now_ms)
    }
}
