//! The state a node keeps for one session: its handshake phase, what it knows of the
//! peer's heads, what it sent, and the messages waiting behind a sliced message.

use std::collections::{HashMap, VecDeque};

use automerge::ChangeHash;

use super::slices::Staged;
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::{DocId, VaultId};
use crate::protocol::{JoinProof, JoinRequest};

/// How far a session's handshake has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the peer's `Hello`.
    Hello,
    /// Exchanging membership entries.
    Membership,
    /// Syncing documents.
    Ready,
}

/// One session: a peer, the vault it is about, and what this side knows and sent.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) peer: DeviceId,
    /// `None` until the peer's `Hello` names it (a responder that was offered a vault).
    pub(super) vault: Option<VaultId>,
    pub(super) initiator: bool,
    pub(super) phase: Phase,
    pub(super) join: Option<JoinRequest>,
    pub(super) their_join: Option<JoinProof>,
    pub(super) their_membership_heads: Vec<Hash>,
    /// Whether we sent the peer every entry it may lack (not withheld).
    pub(super) sent_entries: bool,
    /// Whether the peer sent us its entries without withholding.
    pub(super) got_entries: bool,
    /// Membership entries read from the peer while it was not a member here (see
    /// [`MAX_UNVOUCHED_ENTRIES`]).
    pub(super) unvouched_entries: usize,
    /// Whether a document message was dropped because it came before the handshake ended
    /// (the peer was ready first: an offer waiting for the person's answer).
    pub(super) dropped_early: bool,
    /// Heads the peer is known (or assumed, after we sent changes) to have, per document.
    pub(super) their_heads: HashMap<DocId, Vec<ChangeHash>>,
    /// Heads we last sent a Bloom filter for, per document (so we do not repeat it).
    pub(super) have_sent: HashMap<DocId, Vec<ChangeHash>>,
    /// What we last asked for by hash, per document (so we do not ask again in a loop).
    pub(super) need_sent: HashMap<DocId, Vec<ChangeHash>>,
    pub(super) last_sent_ms: u64,
    pub(super) last_reconcile_ms: u64,
    /// Most changes the peer takes in one snapshot (0: any number), from its `Hello`.
    pub(super) their_snapshot_max_changes: usize,
    /// A snapshot, or many changes, being checked a slice at a time, with the heads the
    /// peer announced.
    pub(super) staged: Option<(Vec<ChangeHash>, Staged)>,
    /// Messages that arrived while a snapshot was being checked, in order.
    pub(super) backlog: VecDeque<Vec<u8>>,
}

/// Most membership entries a session reads (decodes and checks the signatures of) from
/// a peer that is not a member here (the inviter of a join and a device the person named
/// are not counted): four logs of the largest size in effect, which an
/// honest peer's log, sent again on every retry of a slow handshake, stays far below
/// (its first message makes it a member, and then nothing counts). Past it the session
/// is refused as a protocol violation, which bans the peer for a while: a stranger that
/// sends its log again and again costs a bounded number of signature checks.
pub(super) const MAX_UNVOUCHED_ENTRIES: usize = 4 * crate::membership::MAX_ENTRIES;

/// Most messages a session may queue while one of its snapshots is checked.
pub(super) const MAX_BACKLOG: usize = 1024;

impl Session {
    pub(super) fn new(
        peer: DeviceId,
        vault: Option<VaultId>,
        initiator: bool,
        join: Option<JoinRequest>,
    ) -> Self {
        Self {
            peer,
            vault,
            initiator,
            phase: Phase::Hello,
            join,
            their_join: None,
            their_membership_heads: Vec::new(),
            sent_entries: false,
            got_entries: false,
            dropped_early: false,
            unvouched_entries: 0,
            their_heads: HashMap::new(),
            have_sent: HashMap::new(),
            need_sent: HashMap::new(),
            last_sent_ms: 0,
            last_reconcile_ms: 0,
            their_snapshot_max_changes: 0,
            staged: None,
            backlog: VecDeque::new(),
        }
    }
}
