//! A vault's membership log: the DAG of accepted entries and its heads, how entries are
//! checked on the way in, and the helpers that author new ones.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::order::Replay;
use super::{
    Action, Entry, MAX_BATCH_WORK, MAX_CLOCK_SKEW_MS, MAX_ENTRIES, MAX_ENTRIES_PER_AUTHOR,
    MAX_NAME_LEN, Membership, MembershipError, Role, RuleViolation, SignedEntry, WorkSeen,
    evaluate, invite_key, redemption_proof,
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
    /// Entries per author, for the per-author limit.
    by_author: HashMap<DeviceId, usize>,
    /// See [`MembershipLog::replay_work`].
    work: u64,
}

/// How many entries a log takes (see "Limits" in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Most entries in effect, revocations, cancellations and key entries aside.
    pub max_entries: usize,
    /// Most entries of any kind by one author.
    pub max_entries_per_author: usize,
    /// Most entries the rules visit judging one batch entry by entry (see
    /// [`MAX_BATCH_WORK`]).
    pub max_batch_work: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ENTRIES,
            max_entries_per_author: MAX_ENTRIES_PER_AUTHOR,
            max_batch_work: MAX_BATCH_WORK,
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
        let genesis_author = genesis.entry.author;
        let mut entries = HashMap::new();
        entries.insert(hash, genesis);
        let heads = BTreeSet::from([hash]);
        let by_author = HashMap::from([(genesis_author, 1)]);
        let current = evaluate(&entries, &[hash]);
        Ok(Self {
            vault: VaultId(hash),
            entries,
            heads,
            current,
            limits: LogLimits::default(),
            by_author,
            work: 1,
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
        if self.entries.contains_key(&signed.hash) {
            return Ok(false);
        }
        let (accepted, mut failed) = self.take_in(vec![signed], received);
        match failed.pop() {
            Some((_, error)) => Err(error),
            None => Ok(!accepted.is_empty()),
        }
    }

    /// Inserts entries given in any order: parents first, then any that waited on a
    /// member's admission to be vouched for. Returns the hashes accepted and the entries
    /// refused with why. The rules replay the log a bounded number of times per call,
    /// however many entries it brings (see [`MembershipLog::replay_work`]).
    pub fn insert_many(
        &mut self,
        entries: impl IntoIterator<Item = SignedEntry>,
        received: Received,
    ) -> (Vec<Hash>, Vec<MembershipError>) {
        let (mut accepted, mut failed) = self.take_in(entries.into_iter().collect(), received);
        // A redemption passed on by a device that this batch admits is vouched for on the
        // second round (with the entries that waited on it); nothing a later round takes
        // in changes who presented the batch, so two retries are enough.
        for _ in 0..2 {
            let retry = failed.iter().any(|(_, e)| {
                matches!(
                    e,
                    MembershipError::MissingParents { .. } | MembershipError::Unvouched { .. }
                )
            });
            if accepted.is_empty() || !retry {
                break;
            }
            let (waiting, done): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(_, e)| {
                matches!(
                    e,
                    MembershipError::MissingParents { .. } | MembershipError::Unvouched { .. }
                )
            });
            let (more, still) = self.take_in(
                waiting.into_iter().map(|(signed, _)| signed).collect(),
                received,
            );
            let progress = !more.is_empty();
            accepted.extend(more);
            failed = done.into_iter().chain(still).collect();
            if !progress {
                break;
            }
        }
        (accepted, failed.into_iter().map(|(_, e)| e).collect())
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

    /// Entries visited by the rules' replays since this log was made: the CPU it has cost
    /// (a test budget, a benchmark figure).
    pub fn replay_work(&self) -> u64 {
        self.work
    }

    /// Judges a batch with one replay: the cheap checks per entry, then every entry at
    /// once against the log's entries read without voiding. Refused entries are returned
    /// with why, and so are the entries that named them as parents.
    fn take_in(
        &mut self,
        batch: Vec<SignedEntry>,
        received: Received,
    ) -> (Vec<Hash>, Vec<(SignedEntry, MembershipError)>) {
        let mut failed = Vec::new();
        let mut candidates: Vec<SignedEntry> = Vec::new();
        let mut candidate_hashes: HashSet<Hash> = HashSet::new();
        let mut room = Room::of(self);
        for signed in parents_first(batch) {
            let hash = signed.hash;
            if self.entries.contains_key(&hash) || candidate_hashes.contains(&hash) {
                continue;
            }
            if signed.entry.vault != Some(self.vault) {
                let error = MembershipError::WrongVault {
                    entry: hash,
                    expected: self.vault,
                    found: signed.entry.vault,
                };
                failed.push((signed, error));
                continue;
            }
            let missing: Vec<Hash> = signed
                .entry
                .parents
                .iter()
                .filter(|p| !self.entries.contains_key(p) && !candidate_hashes.contains(p))
                .copied()
                .collect();
            if !missing.is_empty() {
                failed.push((
                    signed,
                    MembershipError::MissingParents {
                        entry: hash,
                        missing,
                    },
                ));
                continue;
            }
            let checked = room
                .take(self, &signed)
                .and_then(|()| self.check_presenter(&signed, received));
            if let Err(error) = checked {
                failed.push((signed, error));
                continue;
            }
            candidate_hashes.insert(hash);
            candidates.push(signed);
        }
        if candidates.is_empty() {
            return (Vec::new(), failed);
        }
        // Judge every candidate in one replay of the log with them in it.
        let mut heads = self.heads.clone();
        for signed in &candidates {
            for parent in &signed.entry.parents {
                heads.remove(parent);
            }
        }
        for signed in &candidates {
            self.entries.insert(signed.hash, signed.clone());
        }
        for signed in &candidates {
            if !candidates
                .iter()
                .any(|c| c.entry.parents.contains(&signed.hash))
            {
                heads.insert(signed.hash);
            }
        }
        let heads: Vec<Hash> = heads.into_iter().collect();
        let replay = Replay::new(&self.entries, &heads);
        self.work += 2 * replay.order.len() as u64;
        let mut postponed: HashSet<Hash> = HashSet::new();
        let (verdicts, outcome): (Vec<Option<RuleViolation>>, _) = match replay.conflicts() {
            Some(outcome) => {
                let verdicts = candidates
                    .iter()
                    .map(|c| {
                        let at = replay.position.get(&c.hash);
                        at.and_then(|i| outcome.refused.get(i)).cloned()
                    })
                    .collect();
                (verdicts, Some(outcome.membership))
            }
            // Revocations or a twice-redeemed invite: judge each entry by a replay of its
            // own causal past (only admins can sign what gets a log here).
            // A batch takes at most `max_batch_work` of this; what is left waits for a later
            // sync (a stranger's log of races costs a bounded amount per message).
            None => {
                let mut spent = 0u64;
                let budget = self.limits.max_batch_work;
                let verdicts = candidates
                    .iter()
                    .map(|c| {
                        if spent > budget {
                            postponed.insert(c.hash);
                            return None;
                        }
                        let own = Replay::new(&self.entries, &[c.hash]);
                        let outcome = own.run();
                        let cost = (own.order.len() * (outcome.passes + 1)) as u64;
                        spent += cost;
                        self.work += cost;
                        let at = own.position.get(&c.hash);
                        at.and_then(|i| outcome.refused.get(i)).cloned()
                    })
                    .collect();
                (verdicts, None)
            }
        };
        drop(replay);
        let mut dropped: HashSet<Hash> = HashSet::new();
        let mut accepted = Vec::new();
        for (signed, verdict) in candidates.into_iter().zip(verdicts) {
            let hash = signed.hash;
            let entry = &signed.entry;
            let error = if postponed.contains(&hash) {
                Some(MembershipError::Postponed { entry: hash })
            } else if let Some(rule) = verdict {
                Some(MembershipError::Rejected {
                    entry: hash,
                    action: entry.action.name(),
                    author: entry.author,
                    rule,
                })
            } else {
                let missing: Vec<Hash> = entry
                    .parents
                    .iter()
                    .filter(|p| dropped.contains(p))
                    .copied()
                    .collect();
                (!missing.is_empty()).then_some(MembershipError::MissingParents {
                    entry: hash,
                    missing,
                })
            };
            match error {
                Some(error) => {
                    dropped.insert(hash);
                    self.entries.remove(&hash);
                    failed.push((signed, error));
                }
                None => {
                    *self.by_author.entry(entry.author).or_default() += 1;
                    accepted.push(hash);
                }
            }
        }
        if !accepted.is_empty() {
            let unchanged = dropped.is_empty();
            for hash in &accepted {
                self.heads.insert(*hash);
            }
            for hash in &accepted {
                if let Some(signed) = self.entries.get(hash) {
                    for parent in &signed.entry.parents {
                        self.heads.remove(parent);
                    }
                }
            }
            match outcome {
                Some(membership) if unchanged => self.current = membership,
                _ => self.reevaluate(),
            }
        }
        (accepted, failed)
    }

    /// Membership at the heads, after the log changed.
    fn reevaluate(&mut self) {
        let heads = self.heads();
        let replay = Replay::new(&self.entries, &heads);
        let outcome = replay.run();
        self.work += (replay.order.len() * (outcome.passes + 1)) as u64;
        self.current = outcome.membership;
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

/// The room a log has left for a batch ("Limits" in the module doc), counted once and
/// then kept up to date entry by entry.
struct Room {
    in_effect: usize,
    taken_by: HashMap<DeviceId, usize>,
}

impl Room {
    fn of(log: &MembershipLog) -> Self {
        let void = log.current.void_entries();
        let in_effect = log
            .entries
            .values()
            .filter(|e| !exempt_from_cap(&e.entry.action) && !void.contains(&e.hash))
            .count();
        Self {
            in_effect,
            taken_by: HashMap::new(),
        }
    }

    /// Makes room for `signed`, or says which limit it would pass.
    fn take(&mut self, log: &MembershipLog, signed: &SignedEntry) -> Result<(), MembershipError> {
        let author = signed.entry.author;
        let taken = self.taken_by.entry(author).or_default();
        let by_author = log.by_author.get(&author).copied().unwrap_or(0) + *taken;
        if by_author >= log.limits.max_entries_per_author {
            return Err(MembershipError::AuthorFull { author });
        }
        // Kinds a full log still takes, and entries of a revoked device (void or refused).
        let counts =
            !exempt_from_cap(&signed.entry.action) && log.current.revocation(&author).is_none();
        if counts && self.in_effect >= log.limits.max_entries {
            return Err(MembershipError::LogFull);
        }
        *taken += 1;
        if counts {
            self.in_effect += 1;
        }
        Ok(())
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
