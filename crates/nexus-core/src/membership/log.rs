//! A vault's membership log: the DAG of accepted entries and its heads, how entries are
//! checked on the way in, and the helpers that author new ones.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::order::Replay;
use super::{
    Action, Entry, MAX_CLOCK_SKEW_MS, MAX_ENTRIES, MAX_ENTRIES_PER_AUTHOR, MAX_NAME_LEN,
    Membership, MembershipError, Role, RuleViolation, SignedEntry, WorkSeen, evaluate, invite_key,
    redemption_proof,
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
    limits: LogLimits,
}

/// How many entries a log takes (see "Limits" in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Most entries in effect, revocations, cancellations and key entries aside.
    pub max_entries: usize,
    /// Most entries of any kind by one author.
    pub max_entries_per_author: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ENTRIES,
            max_entries_per_author: MAX_ENTRIES_PER_AUTHOR,
        }
    }
}

/// How an entry was received, for the checks that depend on who presented it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// This device's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Where the entry came from.
    pub source: Source,
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Made on this device.
    Local,
    /// Loaded from this device's own storage: already checked when stored.
    Stored,
    /// Sent by this authenticated device in a session.
    Peer(DeviceId),
    /// Found in a mailbox bundle at a relay (its writer is not known).
    Mailbox,
}

impl Received {
    /// An entry loaded from this device's own storage.
    pub const STORED: Received = Received {
        now_ms: 0,
        source: Source::Stored,
    };

    /// An entry sent by `peer` in a session.
    pub fn from_peer(peer: DeviceId, now_ms: u64) -> Self {
        Self {
            now_ms,
            source: Source::Peer(peer),
        }
    }

    /// An entry found in a mailbox bundle.
    pub fn from_mailbox(now_ms: u64) -> Self {
        Self {
            now_ms,
            source: Source::Mailbox,
        }
    }
}

/// Entries of a kind that a full log still takes (see "Limits" in the module doc).
fn exempt_from_cap(action: &Action) -> bool {
    matches!(
        action,
        Action::RevokeDevice { .. }
            | Action::CancelInvite { .. }
            | Action::NewKey { .. }
            | Action::ShareKey { .. }
    )
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
            limits: LogLimits::default(),
        })
    }

    /// The same log with other limits (smaller ones, say, for a test or a small device).
    pub fn with_limits(mut self, limits: LogLimits) -> Self {
        self.limits = limits;
        self
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
        self.check_room(&signed)?;
        self.check_presenter(&signed, received)?;
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

    /// Finding 5's limits: entries in effect, and per author.
    fn check_room(&self, signed: &SignedEntry) -> Result<(), MembershipError> {
        let author = signed.entry.author;
        let by_author = self
            .entries
            .values()
            .filter(|e| e.entry.author == author)
            .count();
        if by_author >= self.limits.max_entries_per_author {
            return Err(MembershipError::AuthorFull { author });
        }
        // Kinds a full log still takes, and entries of a revoked device (void or refused).
        let revoked = self.current.revocation(&author).is_some();
        if exempt_from_cap(&signed.entry.action) || revoked {
            return Ok(());
        }
        let void = self.current.void_entries();
        let in_effect = self
            .entries
            .values()
            .filter(|e| !exempt_from_cap(&e.entry.action) && !void.contains(&e.hash))
            .count();
        if in_effect >= self.limits.max_entries {
            return Err(MembershipError::LogFull);
        }
        Ok(())
    }

    /// Rule 3's clock check: a redemption comes from its author (or a mailbox) with a
    /// timestamp close to this device's clock, or from a member that accepted it.
    fn check_presenter(
        &self,
        signed: &SignedEntry,
        received: Received,
    ) -> Result<(), MembershipError> {
        let entry = &signed.entry;
        if !matches!(entry.action, Action::RedeemInvite { .. }) {
            return Ok(());
        }
        let check_clock = match received.source {
            Source::Local | Source::Stored => false,
            Source::Mailbox => true,
            Source::Peer(peer) if peer == entry.author => true,
            Source::Peer(peer) if self.current.is_member(&peer) => false,
            Source::Peer(presenter) => {
                return Err(MembershipError::Unvouched {
                    entry: signed.hash,
                    presenter,
                });
            }
        };
        if check_clock && entry.timestamp_ms.abs_diff(received.now_ms) > MAX_CLOCK_SKEW_MS {
            return Err(MembershipError::ClockSkew {
                entry: signed.hash,
                claimed_ms: entry.timestamp_ms,
                now_ms: received.now_ms,
            });
        }
        Ok(())
    }

    /// Inserts entries given in any order: parents first, then any that waited on a
    /// member's admission to be vouched for. Returns the hashes accepted and the entries
    /// refused with why.
    pub fn insert_many(
        &mut self,
        entries: impl IntoIterator<Item = SignedEntry>,
        received: Received,
    ) -> (Vec<Hash>, Vec<MembershipError>) {
        let mut pending = parents_first(entries.into_iter().collect());
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
                    Err(
                        e @ (MembershipError::MissingParents { .. }
                        | MembershipError::Unvouched { .. }),
                    ) => waiting.push((signed, e)),
                    Err(e) => refused.push(e),
                }
            }
            if waiting.is_empty() || waiting.len() == before {
                refused.extend(waiting.into_iter().map(|(_, e)| e));
                return (accepted, refused);
            }
            pending = waiting.into_iter().map(|(signed, _)| signed).collect();
        }
    }

    /// Signs an entry by `key` on top of the current heads and inserts it. Its timestamp
    /// is `now_ms`, or the latest parent's if this device's clock is behind.
    pub fn author(
        &mut self,
        key: &DeviceKey,
        action: Action,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let parents = self.heads();
        // A clock behind the log's would make an entry every device refuses (rule 0).
        let latest_parent_ms = parents
            .iter()
            .filter_map(|p| self.entries.get(p))
            .map(|e| e.entry.timestamp_ms)
            .max()
            .unwrap_or(0);
        let signed = Entry {
            vault: Some(self.vault),
            parents,
            author: key.device_id(),
            timestamp_ms: now_ms.max(latest_parent_ms),
            action,
        }
        .sign(key);
        self.insert(
            signed.clone(),
            Received {
                now_ms,
                source: Source::Local,
            },
        )?;
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
    /// hash with the invitee. The log holds only the key derived from the secret.
    pub fn create_invite(
        &mut self,
        admin: &DeviceKey,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let action = Action::CreateInvite {
            invite_key: invite_key(secret).device_id(),
            role,
            expires_at_ms,
        };
        self.author(admin, action, now_ms)
    }

    /// An admin cancels the invite made by entry `invite`.
    pub fn cancel_invite(
        &mut self,
        admin: &DeviceKey,
        invite: Hash,
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        self.author(admin, Action::CancelInvite { invite }, now_ms)
    }

    /// A new device redeems an invite with its own key; the secret stays on the device.
    pub fn redeem_invite(
        &mut self,
        newcomer: &DeviceKey,
        invite: Hash,
        secret: &[u8; 32],
        now_ms: u64,
    ) -> Result<SignedEntry, MembershipError> {
        let proof = redemption_proof(secret, &self.vault, &invite, &newcomer.device_id());
        self.author(newcomer, Action::RedeemInvite { invite, proof }, now_ms)
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

/// Orders a batch so that every entry comes after those of its parents that are in the
/// batch (a depth-first walk, linear in the batch), whatever order it arrived in.
fn parents_first(batch: Vec<SignedEntry>) -> Vec<SignedEntry> {
    let index: HashMap<Hash, usize> = batch.iter().enumerate().map(|(i, e)| (e.hash, i)).collect();
    let mut placed = vec![false; batch.len()];
    let mut order = Vec::with_capacity(batch.len());
    for start in 0..batch.len() {
        // (entry, next parent to look at)
        let mut stack = vec![(start, 0usize)];
        while let Some((i, next)) = stack.pop() {
            if placed[i] {
                continue;
            }
            let parents = &batch[i].entry.parents;
            if let Some(p) = parents[next..]
                .iter()
                .position(|p| index.get(p).is_some_and(|&j| !placed[j] && j != i))
            {
                stack.push((i, next + p + 1));
                stack.push((index[&parents[next + p]], 0));
            } else {
                placed[i] = true;
                order.push(i);
            }
        }
    }
    let mut slots: Vec<Option<SignedEntry>> = batch.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
