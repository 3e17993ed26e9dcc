//! Why an entry is not authentic, why a log refuses it, and which rule it breaks.

use thiserror::Error;

use super::{MAX_CLOCK_SKEW_MS, MAX_ENTRIES, MAX_ENTRIES_PER_AUTHOR};
use crate::codec::DecodeError;
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::VaultId;

/// Why bytes are not an authentic membership entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes do not decode.
    #[error("malformed membership entry: {0}")]
    Decode(#[from] DecodeError),
    /// The signature does not match the author's key.
    #[error(
        "membership entry {entry} has a signature that does not verify against its author {author}"
    )]
    BadSignature {
        /// The entry's hash.
        entry: Hash,
        /// The device it claims as author.
        author: DeviceId,
    },
}

/// Why a membership entry was not accepted into a log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The entry belongs to another vault (or is a second genesis).
    #[error("entry {entry} belongs to vault {found:?}, not to this vault {expected}")]
    WrongVault {
        /// The entry.
        entry: Hash,
        /// This log's vault.
        expected: VaultId,
        /// The vault named in the entry (`None` for a genesis entry).
        found: Option<VaultId>,
    },
    /// Some parents are not in the log yet; insert them first.
    #[error("entry {entry} names {} parent(s) this log does not have yet", missing.len())]
    MissingParents {
        /// The entry.
        entry: Hash,
        /// The unknown parents.
        missing: Vec<Hash>,
    },
    /// The log is full: revocations, cancellations and key entries are still taken.
    #[error(
        "the membership log already holds the maximum of entries in effect ({MAX_ENTRIES} by default); revocations and key entries are still accepted"
    )]
    LogFull,
    /// One author wrote as many entries as one author may.
    #[error(
        "device {author} already wrote the maximum of entries one device may write ({MAX_ENTRIES_PER_AUTHOR} by default)"
    )]
    AuthorFull {
        /// The author.
        author: DeviceId,
    },
    /// Judging the entry's batch entry by entry took the most work one batch may take
    /// ([`super::MAX_BATCH_WORK`]): it is taken in on a later sync.
    #[error(
        "entry {entry} waits for a later sync: its batch took the most work one batch may take"
    )]
    Postponed {
        /// The entry.
        entry: Hash,
    },
    /// A redemption was passed on by a device that is not a member (a revoked device, a
    /// stranger): only its author or a member may present it.
    #[error(
        "invite redemption {entry} was presented by {presenter}, which is neither its author nor a member"
    )]
    Unvouched {
        /// The entry.
        entry: Hash,
        /// The device that sent it.
        presenter: DeviceId,
    },
    /// The entry breaks a membership rule in its own causal past.
    #[error("{action} entry {entry} by {author} rejected: {rule}")]
    Rejected {
        /// The entry.
        entry: Hash,
        /// What it tried to do.
        action: &'static str,
        /// Its author.
        author: DeviceId,
        /// The rule it breaks.
        rule: RuleViolation,
    },
    /// A redemption presented by its author, or found in a mailbox bundle, has a
    /// timestamp far from this device's clock.
    #[error(
        "invite redemption {entry} claims time {claimed_ms} ms but this device's clock says {now_ms} ms (more than {MAX_CLOCK_SKEW_MS} ms apart); check the clocks"
    )]
    ClockSkew {
        /// The entry.
        entry: Hash,
        /// The entry's timestamp.
        claimed_ms: u64,
        /// This device's clock.
        now_ms: u64,
    },
    /// The bytes were not an authentic entry.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// Which membership rule an entry breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RuleViolation {
    /// The author is not a member.
    #[error("the author is not a member of the vault")]
    NotMember,
    /// The action needs an admin.
    #[error("only an admin may do this and the author is a plain member")]
    NotAdmin,
    /// A log must start with a genesis entry.
    #[error("a vault's log starts with its genesis entry")]
    NotGenesis,
    /// A second genesis in one log.
    #[error("a vault has exactly one genesis entry")]
    SecondGenesis,
    /// The redeemed invite is not in the entry's causal past.
    #[error("the invite being redeemed is unknown to this vault")]
    UnknownInvite,
    /// The redemption's proof is not the invite key's signature for this device.
    #[error(
        "the invite proof does not verify: it was not made with this invite's secret for this device"
    )]
    BadInviteProof,
    /// The invite was cancelled by an admin.
    #[error("the invite was cancelled")]
    InviteCancelled,
    /// The invite's creator is no longer an admin, so its invites admit nobody.
    #[error("the invite's creator is no longer an admin of the vault")]
    InviteCreatorNotAdmin,
    /// An invite's expiry is not after its creation or too far ahead.
    #[error(
        "an invite must expire after it is made and within {} days; this one would last {lasts_ms} ms", super::MAX_INVITE_LIFETIME_MS / 86_400_000
    )]
    InviteLifetime {
        /// How long it would last (0 when the expiry is not after the creation).
        lasts_ms: u64,
    },
    /// The entry claims a time before one of its parents'.
    #[error("the entry's timestamp {timestamp_ms} ms is before its parent's {parent_ms} ms")]
    BeforeParents {
        /// The entry's timestamp.
        timestamp_ms: u64,
        /// The latest parent timestamp.
        parent_ms: u64,
    },
    /// The invite had expired at the redemption's time.
    #[error(
        "the invite expired at {expires_at_ms} ms, before the redemption at {redeemed_at_ms} ms"
    )]
    InviteExpired {
        /// The invite's expiry.
        expires_at_ms: u64,
        /// The redemption's timestamp.
        redeemed_at_ms: u64,
    },
    /// The invite was already used.
    #[error("the invite was already redeemed by {by}")]
    InviteAlreadyRedeemed {
        /// The device that redeemed it first.
        by: DeviceId,
    },
    /// The redeeming device is already a member.
    #[error("the device is already a member")]
    AlreadyMember,
    /// A revocation of the author, concurrent with this entry, voids it.
    #[error("the author was revoked by an entry that had not seen this one")]
    VoidedByRevocation,
    /// A new key whose generation is not above every key the author had seen.
    #[error("key generation {generation} is not above generation {newest} already in the log")]
    StaleKeyGeneration {
        /// The entry's generation.
        generation: u32,
        /// The highest generation in its causal past.
        newest: u32,
    },
    /// A shared key whose `NewKey` is not in the entry's causal past, or of another
    /// generation.
    #[error("the shared key is not a vault key of that generation in the log")]
    UnknownKey,
}
