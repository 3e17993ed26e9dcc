//! The membership log of a vault and the one pure function that decides who belongs.
//!
//! A vault's membership is a hash-linked DAG of signed [`Entry`]s. Each entry names the
//! entries its author had seen (its `parents`), so the log records what every action
//! knew. [`MembershipLog::membership`] (and the pure [`evaluate`]) read the log at a set
//! of heads and return the [`Membership`]: members and their roles, revoked devices and
//! where their work is cut off, and open invites.
//!
//! # The rules
//!
//! The entries in the causal past of the heads are put in one canonical order: parents
//! before children; among entries whose parents are all placed, the smallest
//! `(timestamp, hash)` first. The order depends only on the set of entries, never on the
//! order they arrived in, so every device computes the same answer. Entries are then
//! replayed in that order:
//!
//! 0. **Time moves forward along the log.** An entry's timestamp is at or after each of
//!    its parents'.
//! 1. **Genesis** makes its author the first admin. A log has exactly one genesis, and its
//!    hash is the [`VaultId`](crate::VaultId).
//! 2. **AddDevice** (approve a `DeviceId`, e.g. read from a QR code), **CreateInvite**,
//!    **CancelInvite** and **RevokeDevice** need an author who is an admin at that point.
//! 3. **CreateInvite** publishes the public key derived from a one-time secret
//!    ([`invite_key`]), a role and an expiry at most [`MAX_INVITE_LIFETIME_MS`] (30 days)
//!    after its timestamp. **RedeemInvite** is signed by the *new* device and carries
//!    the invite key's signature over the vault, the invite and the new device
//!    ([`redemption_proof`]), so a device can join while no admin is online and the
//!    secret never enters the log: a member or a revoked device that reads the log cannot
//!    admit anyone with it. A redemption is valid when the invite is in its causal past,
//!    the proof names its author, its timestamp is not after the expiry, no cancellation
//!    of the invite is in its causal past, the invite's creator is an admin at that point
//!    and its author is not already a member. Clocks: a device refuses a redemption that
//!    its author or a mailbox bundle presents with a timestamp more than
//!    [`MAX_CLOCK_SKEW_MS`] from its own clock (so an expired invite cannot be redeemed by
//!    back-dating), and one passed on by a device that is not a member. Members pass on
//!    only what they accepted.
//! 4. **An invite admits one device, while it stands.** If it is redeemed twice
//!    (concurrently), the redemption first in the canonical order wins; the other admits
//!    nobody. A redemption that a cancellation of its invite had not seen admits nobody,
//!    and neither does one that a revocation of the invite's creator had not seen: an
//!    invite dies with its creator's admin standing unless it was redeemed first.
//! 5. **A device is a member** while it has an admission (AddDevice or RedeemInvite) that
//!    comes causally *after* every revocation of it. A revocation therefore beats an
//!    approval it races with, and re-admitting a revoked device takes a new approval made
//!    by an admin who had seen the revocation.
//! 6. **Revocation wins over the revoked device's concurrent actions.** Every entry by a
//!    revoked device that is not in the causal past of its revocation is void, even if it
//!    came earlier in the canonical order (unless a later re-admission precedes it). Void
//!    entries are stored but have no effect; the replay repeats until no new entry is void.
//!    A revoked device therefore cannot undo its removal by back-dating: whatever it signs
//!    on old parents is void.
//! 7. **Any admin can remove any device, however senior.** The one entry of a revoked
//!    device that its revocation does not void is a concurrent revocation *of the admin
//!    that revoked it*: two admins who revoke each other concurrently are both removed.
//!    Trade-off: a removed admin can take its revoker down with it by claiming not to
//!    have seen the revocation (it cannot keep itself in), and any other admin re-admits
//!    the revoker with a new approval. Keep a second admin device: if the last two admins
//!    remove each other the vault has no admin left (members keep editing; nobody can
//!    approve). The alternative rules let the removed device win: by seniority (a
//!    compromised senior admin could never be removed) or by the canonical order
//!    (timestamps are the signer's to choose).
//! 8. A revocation records, per document, how much of the revoked device's work its author
//!    had seen: for each Automerge actor the device wrote with, the highest sequence number
//!    (a [`WorkSeen`]). Automerge numbers an actor's changes 1, 2, 3… and each builds on the
//!    one before, so this is exactly the set of the device's changes in the causal past of
//!    the heads the admin had, yet it can be judged from a change alone, without the rest
//!    of the graph (which may never arrive: a head the admin saw can later be dropped by
//!    another revocation). Changes at or below the recorded numbers stay valid; the
//!    device's other changes are rejected everywhere (see [`crate::Document`]). Several
//!    revocations of one device keep the highest number per actor.
//! 9. **Vault keys.** **NewKey** (admins only) makes a vault key and carries a commitment
//!    to it and the key sealed to the devices its author counts as members
//!    ([`crate::sealing`]); its generation must be higher than that of every key in its
//!    causal past. **ShareKey** (admins only) seals a key whose `NewKey` is in its causal
//!    past to more devices (a device admitted after the key was made). Every admin's
//!    first copy per device counts, and a device uses the first that opens to a key
//!    matching the commitment, so a bad copy by one admin neither passes for the key nor
//!    keeps out a good one by another; copies are the same whoever seals them, so an
//!    admin holding the key can tell which devices lack the right one.
//! 10. **The current key** is the last `NewKey` in the canonical order that causally
//!     follows every revocation. After a revocation there is none until an admin who has
//!     seen it makes a new key, which the revoked device never receives. Admins' nodes do
//!     this by themselves ([`crate::Vault::maintain_keys`]): a key at creation, a new one
//!     after each revocation, and shared copies for members who lack the current key.
//!
//! # Limits
//!
//! A log holds at most [`MAX_ENTRIES`] entries in effect: void entries do not count, and
//! neither do revocations, cancellations and key entries, so a full log can still remove
//! a device. One author writes at most [`MAX_ENTRIES_PER_AUTHOR`] entries of any kind, so
//! no single device can fill the log.
//!
//! ```
//! use nexus_core::{DeviceKey, MembershipLog, Role};
//!
//! let alice = DeviceKey::from_secret_bytes(&[1; 32]);
//! let bob = DeviceKey::from_secret_bytes(&[2; 32]);
//! let (mut log, _genesis) = MembershipLog::create(&alice, "Home", [0; 16], 1_000).unwrap();
//! log.add_device(&alice, bob.device_id(), Role::Member, 2_000).unwrap();
//! assert!(log.membership().is_member(&bob.device_id()));
//! log.revoke_device(&alice, bob.device_id(), Default::default(), 3_000).unwrap();
//! assert!(!log.membership().is_member(&bob.device_id()));
//! ```

mod entry;
mod error;
mod invite;
mod log;
mod order;
mod rules;
mod state;

pub use entry::{Action, Entry, Role, SignedEntry, WorkSeen};
pub use error::{EntryError, MembershipError, RuleViolation};
pub use invite::{invite_key, proof_verifies, redemption_message, redemption_proof};
pub use log::{LogLimits, MembershipLog, Received, Source};
pub use rules::evaluate;
pub use state::{Invite, KeyInfo, Member, Membership, Revocation};

/// Largest clock difference tolerated between a redeeming device and the member that
/// first accepts its redemption (10 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// Longest an invite may stay open (30 days).
pub const MAX_INVITE_LIFETIME_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most entries the rules visit judging one batch entry by entry (a batch with
/// revocation races, see [`MembershipLog::insert_many`]); the rest of such a batch is
/// postponed to a later sync.
pub const MAX_BATCH_WORK: u64 = 2_000_000;
/// Most entries one author may write.
pub const MAX_ENTRIES_PER_AUTHOR: usize = 10_000;
/// Most parents an entry may name.
pub const MAX_PARENTS: usize = 64;
/// Most entries in effect a vault's membership log may hold (see "Limits").
pub const MAX_ENTRIES: usize = 10_000;
/// Longest vault name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Most documents a revocation may record work for.
pub const MAX_REVOKED_DOCS: usize = 100_000;
/// Most Automerge actors recorded per document in a revocation.
pub const MAX_ACTORS_PER_DOC: usize = 64;
/// Longest Automerge actor id, in bytes.
pub const MAX_ACTOR_LEN: usize = 64;
/// Most sealed key copies one entry may carry.
pub const MAX_SEALED_KEYS: usize = 1024;
/// Largest encoded entry body accepted (a revocation recording many documents' heads).
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;
