//! A device's sync state machine: its vaults and one session per (connection, vault).
//!
//! [`Node`] is sans-IO. The engine feeds it what happened — a session opened, bytes
//! arrived, time passed, the app made an edit — and gets back an [`Output`] to carry out
//! **in this order**:
//!
//! 1. commit [`Output::batch`] to storage, atomically (nothing below may happen if it fails:
//!    reload the node from storage instead);
//! 2. send each of [`Output::transmits`] on its session's stream;
//! 3. close each of [`Output::closed`] (after sending what precedes it);
//! 4. hand [`Output::events`] to the app.
//!
//! # Protocol
//!
//! Both sides open with `Hello` (vault, membership heads, an invite when joining, and
//! the most changes the sender takes in one document snapshot). If the membership heads
//! differ, each sends the entries the other lacks — but only to a peer it already
//! counts as a member, or one presenting a valid invite; otherwise it sends an empty
//! `Entries` marked *withheld* and waits for the peer's entries to prove the peer's
//! standing. A peer that is still not a member is refused (`Refuse`) and closed before
//! any document data flows. A joining device receives the log, signs its own
//! `RedeemInvite` and sends it back.
//!
//! Once both sides are members in each other's eyes, the initiator sends a range-based
//! reconciliation of (document id, heads hash) over the whole vault: equal fingerprints
//! end it at once, so a reconnect with thousands of unchanged documents costs one small
//! message; differing ranges are split sixteen ways until they are small enough to
//! list. Each differing document then syncs by heads: a side that knows all of the
//! other's heads sends exactly the missing signed changes; when both sides have changes
//! the other lacks, they swap Bloom filters of their changes. Missing dependencies are
//! asked for by hash. A side with none of a document gets it as one snapshot (the
//! compacted document and every change's signature); one that takes fewer changes per
//! snapshot gets a snapshot of the first ones and the rest as changes, so a
//! single-threaded engine (a browser tab) never loads a big document in one step, and
//! checks and applies the rest a slice per [`Node::work`] call. Changes accepted in one
//! session are pushed to the vault's other sessions, so a device that sits between two
//! groups bridges them. Every `tick` the initiator reconciles again, which repairs
//! anything a lost message left undone.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use automerge::{AutomergeError, ChangeHash};

use crate::bundle::Bundle;
use crate::document::{ApplyError, Document, SignedChange};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey};
use crate::ids::{DocId, VaultId};
use crate::membership::{Membership, Received, Role, SignedEntry};
use crate::protocol::{
    Bloom, CHANGES_CHUNK_BYTES, JoinRequest, MAX_ITEMS, MAX_RANGES, MAX_SNAPSHOT_MESSAGE_BYTES,
    Message, Range, RangeBody, RefuseCode, SNAPSHOT_MIN_CHANGES,
};
use crate::storage::{Batch, Op, Storage, Table, Touched};
use crate::vault::{Vault, VaultError, VaultLoadError};
use crate::{ActorId, DecodeError};

/// A range with at most this many documents is listed rather than split.
const LIST_THRESHOLD: usize = 16;
/// A differing range is split into this many parts.
const SPLIT_FANOUT: usize = 16;
/// Most changes sent in answer to one `DocNeed`.
const MAX_NEED_ANSWER: usize = 4096;

/// Timing settings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    /// How often an idle ready session reconciles again (milliseconds).
    pub reconcile_interval_ms: u64,
    /// How long a handshake step waits before it is sent again (milliseconds).
    pub retry_ms: u64,
    /// A device with none of a document gets it as one snapshot when it has at least this
    /// many changes (and the snapshot fits a message); smaller ones travel as changes.
    pub snapshot_min_changes: usize,
    /// Most signatures of a peer's snapshot, or changes of one of its messages, checked
    /// (and applied) per call (0: all at once). With a limit, a big snapshot is loaded
    /// and checked, and a big message of changes checked and applied, over several
    /// [`Node::work`] calls, and the session's later messages wait their turn: an engine
    /// on one thread (a browser tab) gives the page a turn between calls.
    pub verify_slice: usize,
    /// Most changes this device takes in one snapshot from a peer (0: any number). It
    /// tells its peers in `Hello`; a bigger document reaches it as a snapshot of its
    /// first changes, then the rest as changes, which (with a
    /// [`NodeConfig::verify_slice`]) are checked and applied a slice per
    /// [`Node::work`] call. Loading a snapshot is the one step that cannot be cut up, so
    /// this bounds the longest step of a big first sync.
    pub snapshot_max_changes: usize,
}

impl NodeConfig {
    /// Defaults: reconcile every 30 s, retry handshake steps after 5 s, send documents of
    /// 32 changes or more to an empty device as a snapshot.
    pub fn new() -> Self {
        Self {
            reconcile_interval_ms: 30_000,
            retry_ms: 5_000,
            snapshot_min_changes: SNAPSHOT_MIN_CHANGES,
            verify_slice: 0,
            snapshot_max_changes: 0,
        }
    }

    /// Takes at most `changes` changes in one snapshot from a peer (see
    /// [`NodeConfig::snapshot_max_changes`]).
    pub fn with_snapshot_max_changes(mut self, changes: usize) -> Self {
        self.snapshot_max_changes = changes;
        self
    }

    /// Checks at most `signatures` of a peer's snapshot per call (see
    /// [`NodeConfig::verify_slice`]).
    pub fn with_verify_slice(mut self, signatures: usize) -> Self {
        self.verify_slice = signatures;
        self
    }

    /// Sets the snapshot threshold.
    pub fn with_snapshot_min_changes(mut self, changes: usize) -> Self {
        self.snapshot_min_changes = changes;
        self
    }

    /// Sets the reconcile interval.
    pub fn with_reconcile_interval_ms(mut self, ms: u64) -> Self {
        self.reconcile_interval_ms = ms;
        self
    }

    /// Sets the handshake retry delay.
    pub fn with_retry_ms(mut self, ms: u64) -> Self {
        self.retry_ms = ms;
        self
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Names one session of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// For programs.
    pub code: RefuseCode,
    /// For people.
    pub reason: String,
    /// Whether this side refused the peer (`false`: the peer refused this side).
    pub by_us: bool,
}

/// Something the app should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A document changed because of a peer.
    DocChanged {
        /// The vault.
        vault: VaultId,
        /// The document.
        doc: DocId,
    },
    /// The vault's membership changed.
    MembershipChanged {
        /// The vault.
        vault: VaultId,
    },
    /// This device now holds a vault it did not have (approved by id, or joined).
    VaultJoined {
        /// The vault.
        vault: VaultId,
    },
    /// A session finished its handshake and is syncing documents.
    SessionReady {
        /// The session.
        session: SessionId,
        /// The vault.
        vault: VaultId,
        /// The peer.
        peer: DeviceId,
    },
    /// A peer sent changes that were rejected (not necessarily its fault: it may not
    /// know of a revocation yet).
    Rejected {
        /// The session.
        session: SessionId,
        /// Why.
        error: ApplyError,
    },
}

/// What a node asks its engine to do. See the module doc for the order.
#[derive(Debug, Default)]
#[must_use = "an output does nothing until the engine carries it out"]
pub struct Output {
    /// Records to commit first.
    pub batch: Batch,
    /// Messages to send, in order.
    pub transmits: Vec<(SessionId, Vec<u8>)>,
    /// Sessions to close.
    pub closed: Vec<(SessionId, CloseReason)>,
    /// Events for the app.
    pub events: Vec<Event>,
}

impl Output {
    fn send(&mut self, session: SessionId, message: &Message) {
        self.transmits.push((session, message.encode()));
    }

    /// Appends another output after this one.
    pub fn extend(&mut self, other: Output) {
        self.batch.extend(other.batch);
        self.transmits.extend(other.transmits);
        self.closed.extend(other.closed);
        self.events.extend(other.events);
    }
}

/// A bundle ready to encrypt, from [`Node::bundle_since`].
#[derive(Debug)]
pub struct PreparedBundle {
    /// The bundle.
    pub bundle: Bundle,
    /// The heads each covered document is at once the bundle is delivered: the `since`
    /// for the next one.
    pub heads: BTreeMap<DocId, Vec<ChangeHash>>,
    /// Documents skipped because their new changes alone exceed the size limit.
    pub too_large: Vec<DocId>,
}

/// Why a node could not be loaded.
pub type NodeLoadError<E> = VaultLoadError<E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's `Hello`.
    Hello,
    /// Exchanging membership entries.
    Membership,
    /// Syncing documents.
    Ready,
}

#[derive(Debug, Clone)]
struct Session {
    peer: DeviceId,
    /// `None` until the peer's `Hello` names it (a responder that was offered a vault).
    vault: Option<VaultId>,
    initiator: bool,
    phase: Phase,
    join: Option<JoinRequest>,
    their_join: Option<JoinRequest>,
    their_membership_heads: Vec<Hash>,
    /// Whether we sent the peer every entry it may lack (not withheld).
    sent_entries: bool,
    /// Whether the peer sent us its entries without withholding.
    got_entries: bool,
    /// Heads the peer is known (or assumed, after we sent changes) to have, per document.
    their_heads: HashMap<DocId, Vec<ChangeHash>>,
    /// Heads we last sent a Bloom filter for, per document (so we do not repeat it).
    have_sent: HashMap<DocId, Vec<ChangeHash>>,
    /// What we last asked for by hash, per document (so we do not ask again in a loop).
    need_sent: HashMap<DocId, Vec<ChangeHash>>,
    last_sent_ms: u64,
    last_reconcile_ms: u64,
    /// Most changes the peer takes in one snapshot (0: any number), from its `Hello`.
    their_snapshot_max_changes: usize,
    /// A snapshot, or many changes, being checked a slice at a time, with the heads the
    /// peer announced.
    staged: Option<(Vec<ChangeHash>, Staged)>,
    /// Messages that arrived while a snapshot was being checked, in order.
    backlog: VecDeque<Vec<u8>>,
}

/// A peer's snapshot on its way in: each step is one call of [`Node::work`].
#[derive(Debug, Clone)]
enum Staged {
    /// Received, not parsed yet.
    Received { doc: DocId, bytes: Vec<u8> },
    /// Parsed; signatures being checked.
    Parsed(Box<crate::document::StagedSnapshot>),
    /// Changes from one message, in the order sent, checked and applied a slice at a
    /// time.
    Changes {
        doc: DocId,
        changes: VecDeque<SignedChange>,
        held: Box<Held>,
    },
}

/// What the slices of one big message of changes applied so far, with the records of the
/// applied changes held back: after the last slice, the document is stored as one
/// compacted snapshot instead of one record per change (thousands of small writes would
/// cost a browser's IndexedDB more than the checking and applying).
#[derive(Debug, Clone, Default)]
struct Held {
    /// Everything but the held records.
    applied: crate::document::Applied,
    /// The held change records (key, value).
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Held {
    /// Adds a slice's outcome, holding back its change records.
    fn hold(&mut self, applied: crate::document::Applied) {
        for op in applied.batch.into_ops() {
            match op {
                Op::Put {
                    table: Table::Changes,
                    key,
                    value,
                } => self.records.push((key, value)),
                Op::Put { table, key, value } => self.applied.batch.put(table, key, value),
                Op::Delete { table, key } => self.applied.batch.delete(table, key),
            }
        }
        self.applied.accepted.extend(applied.accepted);
        self.applied.rejected.extend(applied.rejected);
    }
}

/// Most messages a session may queue while one of its snapshots is checked.
const MAX_BACKLOG: usize = 1024;

impl Session {
    fn new(
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

/// A device: its key, its vaults and its sessions.
#[derive(Debug, Clone)]
pub struct Node {
    key: DeviceKey,
    actor: ActorId,
    config: NodeConfig,
    vaults: BTreeMap<VaultId, Vault>,
    sessions: BTreeMap<SessionId, Session>,
    /// Held changes of sessions that closed before their last slice, to be stored.
    unfinished: Vec<(VaultId, DocId, Held)>,
    next_session: u64,
    /// Varies Bloom filter probe positions from one filter to the next.
    bloom_salt: u32,
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads.dedup();
    heads
}

/// The 16-byte hash of one reconciliation item.
fn item_hash(doc: &DocId, heads: &[ChangeHash]) -> [u8; 16] {
    let mut parts: Vec<&[u8]> = vec![doc.as_bytes()];
    for head in heads {
        parts.push(&head.0);
    }
    let full = Hash::of(&parts);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full.0[..16]);
    out
}

fn fingerprint<'a>(items: impl Iterator<Item = &'a [u8; 16]>) -> ([u8; 16], u64) {
    let mut fp = [0u8; 16];
    let mut count = 0;
    for item in items {
        for (a, b) in fp.iter_mut().zip(item) {
            *a ^= b;
        }
        count += 1;
    }
    (fp, count)
}

/// Loads a [`Node`] from storage a few documents at a time, so that an engine on one
/// thread (a browser tab) can let the page run between steps instead of freezing while a
/// profile with thousands of documents opens. [`NodeLoader::new`] reads every vault's
/// membership; each [`NodeLoader::step`] reads some documents; [`NodeLoader::finish`]
/// reads what is left and gives the node. The store must not change in between.
pub struct NodeLoader {
    node: Node,
    /// Documents not read yet, in the order they are read.
    pending: VecDeque<(VaultId, DocId)>,
    total: usize,
}

impl NodeLoader {
    /// Reads the membership of every vault in `store` and lists their documents.
    pub fn new<S: Storage>(
        store: &S,
        key: DeviceKey,
        actor: ActorId,
        config: NodeConfig,
    ) -> Result<Self, NodeLoadError<S::Error>> {
        let mut node = Node::new(key, actor, config);
        let ids = Vault::list(store).map_err(|source| VaultLoadError::Storage {
            vault: VaultId(Hash([0; 32])),
            source,
        })?;
        let mut pending = VecDeque::new();
        for id in ids {
            let (vault, docs) = Vault::load_membership(store, id, node.actor.clone())?;
            pending.extend(docs.into_iter().map(|doc| (id, doc)));
            node.vaults.insert(id, vault);
        }
        let total = pending.len();
        Ok(Self {
            node,
            pending,
            total,
        })
    }

    /// Reads up to `max_docs` more documents (at least one). Returns whether every
    /// document has been read.
    pub fn step<S: Storage>(
        &mut self,
        store: &S,
        max_docs: usize,
    ) -> Result<bool, NodeLoadError<S::Error>> {
        for _ in 0..max_docs.max(1) {
            let Some((vault, doc)) = self.pending.pop_front() else {
                break;
            };
            if let Some(v) = self.node.vaults.get_mut(&vault) {
                v.load_document(store, doc)?;
            }
        }
        Ok(self.pending.is_empty())
    }

    /// Documents read so far, and how many there are in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.total - self.pending.len(), self.total)
    }

    /// Reads the documents not read yet and returns the node.
    pub fn finish<S: Storage>(mut self, store: &S) -> Result<Node, NodeLoadError<S::Error>> {
        self.step(store, usize::MAX)?;
        Ok(self.node)
    }
}

impl Node {
    /// A node with no vaults. `actor` names this writer (random per process or tab).
    pub fn new(key: DeviceKey, actor: ActorId, config: NodeConfig) -> Self {
        Self {
            key,
            actor,
            config,
            vaults: BTreeMap::new(),
            sessions: BTreeMap::new(),
            unfinished: Vec::new(),
            next_session: 0,
            bloom_salt: 0,
        }
    }

    /// A node with every vault in `store`. [`NodeLoader`] does the same a few documents
    /// at a time.
    pub fn load<S: Storage>(
        store: &S,
        key: DeviceKey,
        actor: ActorId,
        config: NodeConfig,
    ) -> Result<Self, NodeLoadError<S::Error>> {
        NodeLoader::new(store, key, actor, config)?.finish(store)
    }

    /// The Automerge actor this node writes with.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.key.device_id()
    }

    /// The device key.
    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    /// A vault.
    pub fn vault(&self, id: &VaultId) -> Option<&Vault> {
        self.vaults.get(id)
    }

    /// Every vault.
    pub fn vaults(&self) -> impl Iterator<Item = &Vault> {
        self.vaults.values()
    }

    /// The reconciliation fingerprint of a vault's documents: equal on two devices when
    /// (with overwhelming probability) they hold the same heads for every document.
    pub fn fingerprint(&self, vault: &VaultId) -> Option<[u8; 16]> {
        let v = self.vaults.get(vault)?;
        let digest = digest(v);
        Some(fingerprint(digest.values()).0)
    }

    /// The peer and vault of each open session, and whether it is syncing documents.
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = (SessionId, DeviceId, Option<VaultId>, bool)> + '_ {
        self.sessions
            .iter()
            .map(|(id, s)| (*id, s.peer, s.vault, s.phase == Phase::Ready))
    }

    // ---- local operations -------------------------------------------------------------

    /// Creates a vault with this device as its first admin.
    pub fn create_vault(
        &mut self,
        name: &str,
        nonce: [u8; 16],
        now_ms: u64,
    ) -> Result<(VaultId, Output), VaultError> {
        let (mut vault, mut batch) =
            Vault::create(&self.key, name, nonce, now_ms, self.actor.clone())?;
        batch.extend(vault.maintain_keys(&self.key, now_ms)?);
        let id = vault.id();
        self.vaults.insert(id, vault);
        Ok((
            id,
            Output {
                batch,
                ..Output::default()
            },
        ))
    }

    fn vault_mut(&mut self, id: &VaultId) -> Result<&mut Vault, VaultError> {
        self.vaults
            .get_mut(id)
            .ok_or(VaultError::UnknownVault { vault: *id })
    }

    /// Creates an empty document.
    pub fn create_document(
        &mut self,
        vault: VaultId,
        doc: DocId,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self.vault_mut(&vault)?.create_document(&key, doc, now_ms)?;
        Ok(Output {
            batch,
            ..Output::default()
        })
    }

    /// Edits a document: one signed change, stored, then offered to every peer.
    pub fn change<F>(&mut self, vault: VaultId, doc: DocId, edit: F) -> Result<Output, VaultError>
    where
        F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
    {
        let key = self.key.clone();
        let mut out = Output::default();
        if let Some(local) = self.vault_mut(&vault)?.change(&key, doc, edit)? {
            out.batch = local.batch;
            self.offer(vault, doc, None, &mut out);
        }
        Ok(out)
    }

    /// An admin approves a device by id.
    pub fn add_device(
        &mut self,
        vault: VaultId,
        device: DeviceId,
        role: Role,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self
            .vault_mut(&vault)?
            .add_device(&key, device, role, now_ms)?;
        Ok(self.after_membership_change(vault, batch, None, now_ms))
    }

    /// An admin creates an invite. Returns the invite's entry hash.
    pub fn create_invite(
        &mut self,
        vault: VaultId,
        secret: &[u8; 32],
        role: Role,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(Hash, Output), VaultError> {
        let key = self.key.clone();
        let (hash, batch) =
            self.vault_mut(&vault)?
                .create_invite(&key, secret, role, expires_at_ms, now_ms)?;
        Ok((
            hash,
            self.after_membership_change(vault, batch, None, now_ms),
        ))
    }

    /// An admin revokes a device; its sessions here are closed.
    pub fn revoke_device(
        &mut self,
        vault: VaultId,
        device: DeviceId,
        now_ms: u64,
    ) -> Result<Output, VaultError> {
        let key = self.key.clone();
        let batch = self
            .vault_mut(&vault)?
            .revoke_device(&key, device, now_ms)?;
        Ok(self.after_membership_change(vault, batch, None, now_ms))
    }

    /// Takes in a vault as another process left it in the shared store (loaded with
    /// [`Vault::load`]), keeping this node's sessions: new membership entries and document
    /// changes are offered to the peers at once, as if made here. A vault this node did not
    /// hold is added and its sessions can then be opened.
    pub fn refresh_vault(&mut self, fresh: Vault, now_ms: u64) -> Output {
        let id = fresh.id();
        let mut out = Output::default();
        let Some(old) = self.vaults.get(&id) else {
            self.vaults.insert(id, fresh);
            out.events.push(Event::VaultJoined { vault: id });
            return out;
        };
        let membership_changed = old.log().heads() != fresh.log().heads();
        let changed_docs: Vec<DocId> = fresh
            .documents()
            .filter(|d| old.document(&d.id()).map(Document::heads) != Some(d.heads()))
            .map(Document::id)
            .collect();
        if !membership_changed && changed_docs.is_empty() {
            return out;
        }
        self.vaults.insert(id, fresh);
        if membership_changed {
            out.extend(self.after_membership_change(id, Batch::new(), None, now_ms));
        }
        for doc in changed_docs {
            self.offer(id, doc, None, &mut out);
        }
        out
    }

    /// What to read back for `touched` (another tab's commit): what it names, widened
    /// to the whole vault when this node does not hold the vault, and to the whole
    /// document when this node does not hold the document or still has changes of it
    /// waiting for others (so that a message this tab missed is made up for).
    pub fn what_to_read(&self, touched: &Touched) -> Touched {
        let mut read = touched.clone();
        let Some(vault) = self.vaults.get(&touched.vault) else {
            read.membership = true;
            return read;
        };
        let partial: Vec<DocId> = read
            .changes
            .keys()
            .filter(|id| vault.document(id).is_none_or(Document::has_waiting))
            .copied()
            .collect();
        for id in partial {
            read.changes.remove(&id);
            read.whole.insert(id);
        }
        read
    }

    /// Takes in what another writer of the shared store (another tab) committed, as
    /// [`Touched`] describes it: only the documents and change records it names are read
    /// back, unless the membership changed or the vault is new here, when the vault is
    /// read whole as [`Node::refresh_vault`] does. Moved documents are offered to the
    /// peers and reported as [`Event::DocChanged`].
    pub fn take_in_stored<S: Storage>(
        &mut self,
        store: &S,
        touched: &Touched,
        now_ms: u64,
    ) -> Result<Output, VaultLoadError<S::Error>> {
        let id = touched.vault;
        let moved = match self.vaults.get_mut(&id) {
            Some(vault) if !touched.membership => vault.take_in_stored(store, touched)?,
            _ => {
                let before: BTreeMap<DocId, Vec<ChangeHash>> = self
                    .vaults
                    .get(&id)
                    .map(|v| v.documents().map(|d| (d.id(), d.heads())).collect())
                    .unwrap_or_default();
                let fresh = Vault::load(store, id, self.actor.clone())?;
                let moved = fresh
                    .documents()
                    .filter(|d| before.get(&d.id()) != Some(&d.heads()))
                    .map(Document::id)
                    .collect();
                let mut out = self.refresh_vault(fresh, now_ms);
                out.events.extend(moved_events(id, moved));
                return Ok(out);
            }
        };
        let mut out = Output::default();
        for doc in &moved {
            self.offer(id, *doc, None, &mut out);
        }
        out.events.extend(moved_events(id, moved));
        Ok(out)
    }

    // ---- mailbox bundles ---------------------------------------------------------------

    /// The devices this node has a session with for `vault` that is syncing documents.
    pub fn ready_peers(&self, vault: &VaultId) -> BTreeSet<DeviceId> {
        self.sessions
            .values()
            .filter(|s| s.vault == Some(*vault) && s.phase == Phase::Ready)
            .map(|s| s.peer)
            .collect()
    }

    /// What changed in `vault` since `since` (per document, the heads as of the last
    /// bundle), as a [`Bundle`] of at most `max_bytes` of plaintext with the vault's
    /// membership entries. `None` when no document changed. Documents that do not fit wait
    /// for the next bundle; one whose new changes alone exceed `max_bytes` is skipped (it
    /// travels by sync sessions only) and named in [`PreparedBundle::too_large`].
    pub fn bundle_since(
        &self,
        vault: &VaultId,
        since: &BTreeMap<DocId, Vec<ChangeHash>>,
        max_bytes: usize,
    ) -> Option<PreparedBundle> {
        let v = self.vaults.get(vault)?;
        // Cheap first: most calls find nothing new. Heads are kept sorted (as
        // [`Document::heads`] returns them), so they compare directly.
        let changed: Vec<&Document> = v
            .documents()
            .filter(|d| since.get(&d.id()).is_none_or(|have| *have != d.heads()))
            .collect();
        if changed.is_empty() {
            return None;
        }
        let entries: Vec<SignedEntry> = v.log().entries().into_iter().cloned().collect();
        let base: usize = 64 + entries.iter().map(|e| e.encode().len() + 5).sum::<usize>();
        let mut size = base;
        let mut prepared = PreparedBundle {
            bundle: Bundle {
                entries,
                docs: Vec::new(),
            },
            heads: BTreeMap::new(),
            too_large: Vec::new(),
        };
        for d in changed {
            let heads = d.heads();
            let have = since.get(&d.id()).map(Vec::as_slice).unwrap_or_default();
            let changes = d.changes_since(have);
            let doc_size: usize = 32 + changes.iter().map(|c| c.encoded_len() + 5).sum::<usize>();
            if base + doc_size > max_bytes {
                prepared.too_large.push(d.id());
                prepared.heads.insert(d.id(), heads);
                continue;
            }
            if size + doc_size > max_bytes {
                continue; // the next bundle
            }
            size += doc_size;
            prepared.heads.insert(d.id(), heads);
            if !changes.is_empty() {
                prepared.bundle.docs.push((d.id(), changes));
            }
        }
        (!prepared.heads.is_empty()).then_some(prepared)
    }

    /// Takes in a bundle left at a relay by another member: its entries and changes go
    /// through the same checks as a peer's (invalid ones are dropped), are stored, and are
    /// offered to the peers connected now.
    pub fn receive_bundle(&mut self, vault: VaultId, bundle: Bundle, now_ms: u64) -> Output {
        let mut out = Output::default();
        let Some(v) = self.vaults.get_mut(&vault) else {
            return out;
        };
        let before = v.log().heads();
        let ingested = v.ingest_entries(bundle.entries, Received { now_ms, from: None });
        for doc in ingested.dropped.keys() {
            out.events.push(Event::DocChanged { vault, doc: *doc });
        }
        if v.log().heads() != before {
            out.extend(self.after_membership_change(vault, ingested.batch, None, now_ms));
        } else {
            out.batch.extend(ingested.batch);
        }
        for (doc, changes) in bundle.docs {
            let Some(v) = self.vaults.get_mut(&vault) else {
                break;
            };
            let applied = v.apply_changes(doc, changes, now_ms);
            out.batch.extend(applied.batch);
            if !applied.accepted.is_empty() {
                out.events.push(Event::DocChanged { vault, doc });
                self.offer(vault, doc, None, &mut out);
            }
        }
        out
    }

    /// Compacts a document's storage.
    pub fn compact(&mut self, vault: VaultId, doc: DocId) -> Result<Output, VaultError> {
        let batch = self.vault_mut(&vault)?.compact(doc)?;
        Ok(Output {
            batch,
            ..Output::default()
        })
    }

    /// Pushes new membership entries to every ready session of the vault and closes the
    /// sessions of peers that are no longer members.
    fn after_membership_change(
        &mut self,
        vault: VaultId,
        batch: Batch,
        except: Option<SessionId>,
        now_ms: u64,
    ) -> Output {
        let mut out = Output {
            batch,
            ..Output::default()
        };
        out.events.push(Event::MembershipChanged { vault });
        let key = self.key.clone();
        let Some(v) = self.vaults.get_mut(&vault) else {
            return out;
        };
        // An admin keeps the vault key current; a failure leaves it to the next change.
        // A key entry made now is news to every session, the one that brought the change
        // included.
        let mut key_entry = false;
        if let Ok(batch) = v.maintain_keys(&key, now_ms)
            && !batch.is_empty()
        {
            out.batch.extend(batch);
            key_entry = true;
        }
        let v = &*v;
        let membership = v.membership().clone();
        let entries: Vec<SignedEntry> = v.log().entries().into_iter().cloned().collect();
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.vault == Some(vault) && s.phase != Phase::Hello)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let peer = session.peer;
            let joining = session.their_join.is_some() && session.phase != Phase::Ready;
            if membership.is_member(&peer) || joining {
                if Some(id) != except || !session.sent_entries || key_entry {
                    // Small logs: send them whole; the peer drops what it has.
                    session.sent_entries = true;
                    out.send(
                        id,
                        &Message::Entries {
                            entries: entries.clone(),
                            withheld: false,
                        },
                    );
                }
                if Some(id) != except {
                    self.check_ready(id, now_ms, &mut out);
                }
            } else if session.phase == Phase::Ready || session.got_entries {
                self.refuse(id, &membership, &mut out);
            }
        }
        out
    }

    fn refuse(&mut self, id: SessionId, membership: &Membership, out: &mut Output) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        let (code, reason) = if let Some(revocation) = membership.revocation(&session.peer) {
            // The revoked device learns it from the signed entries (the revocations and
            // their ancestry, nothing later), so that it stops treating itself as a
            // member and can tell its user.
            if let Some(log) = session
                .vault
                .and_then(|v| self.vaults.get(&v))
                .map(|v| v.log())
            {
                let ancestry = log.ancestry(&revocation.entries);
                let entries: Vec<SignedEntry> = log
                    .entries()
                    .into_iter()
                    .filter(|e| ancestry.contains(&e.hash()))
                    .cloned()
                    .collect();
                out.send(
                    id,
                    &Message::Entries {
                        entries,
                        withheld: false,
                    },
                );
            }
            (
                RefuseCode::Revoked,
                format!("device {} was revoked from this vault", session.peer),
            )
        } else {
            (
                RefuseCode::NotMember,
                format!("device {} is not a member of this vault", session.peer),
            )
        };
        self.close_with(id, code, reason, out);
    }

    fn close_with(&mut self, id: SessionId, code: RefuseCode, reason: String, out: &mut Output) {
        self.sessions.remove(&id);
        out.send(
            id,
            &Message::Refuse {
                code,
                reason: reason.clone(),
            },
        );
        out.closed.push((
            id,
            CloseReason {
                code,
                reason,
                by_us: true,
            },
        ));
    }

    // ---- sessions ---------------------------------------------------------------------

    /// Opens a session with `peer` (authenticated by the transport) about `vault`. The
    /// initiator reconciles documents; `join` presents an invite for a vault this device
    /// does not hold yet.
    pub fn open_session(
        &mut self,
        peer: DeviceId,
        vault: VaultId,
        initiator: bool,
        join: Option<JoinRequest>,
        now_ms: u64,
    ) -> (SessionId, Output) {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let mut session = Session::new(peer, Some(vault), initiator, join);
        let mut out = Output::default();
        self.send_hello(id, &mut session, now_ms, &mut out);
        self.sessions.insert(id, session);
        (id, out)
    }

    /// Accepts a session opened by `peer`; the vault is named by the peer's `Hello`.
    pub fn accept_session(&mut self, peer: DeviceId) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions
            .insert(id, Session::new(peer, None, false, None));
        id
    }

    /// The transport closed a session.
    pub fn session_closed(&mut self, id: SessionId) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        // Changes applied from the session's last message are stored all the same.
        if let (Some(vault), Some((_, Staged::Changes { doc, held, .. }))) =
            (session.vault, session.staged)
        {
            self.unfinished.push((vault, doc, *held));
        }
    }

    /// Vaults in which `peer` is a member, to open sessions for when it connects.
    pub fn shared_vaults(&self, peer: &DeviceId) -> Vec<VaultId> {
        self.vaults
            .values()
            .filter(|v| {
                v.membership().is_member(peer) && v.membership().is_member(&self.device_id())
            })
            .map(Vault::id)
            .collect()
    }

    fn send_hello(&self, id: SessionId, session: &mut Session, now_ms: u64, out: &mut Output) {
        let Some(vault) = session.vault else {
            return;
        };
        let membership_heads = self
            .vaults
            .get(&vault)
            .map(|v| v.log().heads())
            .unwrap_or_default();
        out.send(
            id,
            &Message::Hello {
                vault,
                membership_heads,
                join: session.join,
                snapshot_max_changes: self.config.snapshot_max_changes as u64,
            },
        );
        session.last_sent_ms = now_ms;
    }

    /// Handles bytes received on a session. A malformed message, or one that breaks the
    /// protocol, closes the session; storage is untouched by anything refused.
    pub fn handle_message(&mut self, id: SessionId, bytes: &[u8], now_ms: u64) -> Output {
        let mut out = Output::default();
        let Some(session) = self.sessions.get_mut(&id) else {
            return out;
        };
        if session.staged.is_some() || !session.backlog.is_empty() {
            // A snapshot of this session is being checked: the message waits its turn.
            if session.backlog.len() >= MAX_BACKLOG {
                self.close_with(
                    id,
                    RefuseCode::ProtocolViolation,
                    format!("sent over {MAX_BACKLOG} messages while a snapshot was checked"),
                    &mut out,
                );
            } else {
                session.backlog.push_back(bytes.to_vec());
            }
            return out;
        }
        self.handle_message_now(id, bytes, now_ms, &mut out);
        out
    }

    /// Whether [`Node::work`] has something to do (a snapshot being checked, messages
    /// waiting behind one).
    pub fn has_work(&self) -> bool {
        !self.unfinished.is_empty()
            || self
                .sessions
                .values()
                .any(|s| s.staged.is_some() || !s.backlog.is_empty())
    }

    /// Does one slice of pending work: one step of a staged snapshot (loading its
    /// document, reading its signatures, checking the next [`NodeConfig::verify_slice`]
    /// of them, or applying it once all are checked), or handles one message that waited
    /// behind one. Call while [`Node::has_work`], giving other work a
    /// turn between calls.
    pub fn work(&mut self, now_ms: u64) -> Output {
        let mut out = Output::default();
        if let Some((vault, doc, held)) = self.unfinished.pop() {
            let applied = self.store_held(vault, doc, held);
            out.batch.extend(applied.batch);
            if !applied.accepted.is_empty() {
                out.events.push(Event::DocChanged { vault, doc });
            }
            return out;
        }
        let slice = self.config.verify_slice;
        let Some((&id, session)) = self
            .sessions
            .iter_mut()
            .find(|(_, s)| s.staged.is_some() || !s.backlog.is_empty())
        else {
            return out;
        };
        let vault = session.vault;
        match session.staged.take() {
            Some((theirs, Staged::Received { doc, bytes })) => {
                // Parsing (loading the document) is a step of its own.
                let Some(vault) = vault else {
                    return out;
                };
                match crate::document::StagedSnapshot::load(vault, doc, &bytes) {
                    Ok(staged) => session.staged = Some((theirs, Staged::Parsed(Box::new(staged)))),
                    Err(aborted) => self.after_apply(id, vault, doc, theirs, aborted, &mut out),
                }
                return out;
            }
            Some((theirs, Staged::Parsed(mut staged))) => {
                // Reading the signatures, checking the last slice and applying are
                // separate steps too.
                if !staged.signatures_read() {
                    let doc = staged.doc();
                    match staged.read_signatures() {
                        Ok(()) => session.staged = Some((theirs, Staged::Parsed(staged))),
                        Err(aborted) => {
                            let Some(vault) = vault else {
                                return out;
                            };
                            self.after_apply(id, vault, doc, theirs, aborted, &mut out);
                        }
                    }
                } else if staged.is_checked() {
                    self.apply_staged(id, theirs, *staged, now_ms, &mut out);
                } else {
                    staged.verify_some(slice);
                    session.staged = Some((theirs, Staged::Parsed(staged)));
                }
                return out;
            }
            Some((
                theirs,
                Staged::Changes {
                    doc,
                    mut changes,
                    mut held,
                },
            )) => {
                // Each slice is checked and applied as a message of its own; changes come
                // in causal order, so a slice never waits for a later one.
                let Some(vault) = vault else {
                    return out;
                };
                let take = slice.max(1).min(changes.len());
                let first: Vec<SignedChange> = changes.drain(..take).collect();
                let Some(v) = self.vaults.get_mut(&vault) else {
                    return out;
                };
                let applied = v.apply_changes_from_peer(doc, first, now_ms);
                if applied.aborted {
                    // What the earlier slices applied stays; then the peer is cut off.
                    let earlier = self.store_held(vault, doc, *held);
                    self.after_apply(id, vault, doc, theirs.clone(), earlier, &mut out);
                    self.after_apply(id, vault, doc, theirs, applied, &mut out);
                    return out;
                }
                held.hold(applied);
                if changes.is_empty() {
                    let all = self.store_held(vault, doc, *held);
                    self.after_apply(id, vault, doc, theirs, all, &mut out);
                } else if let Some(session) = self.sessions.get_mut(&id) {
                    session.staged = Some((theirs, Staged::Changes { doc, changes, held }));
                }
                return out;
            }
            None => {}
        }
        if let Some(bytes) = session.backlog.pop_front() {
            self.handle_message_now(id, &bytes, now_ms, &mut out);
        }
        out
    }

    /// The outcome of the slices `held` with its records: the applied changes folded
    /// into one compacted snapshot of the document, and the records of changes that
    /// still wait for their dependencies.
    fn store_held(&mut self, vault: VaultId, doc: DocId, held: Held) -> crate::document::Applied {
        let Held {
            mut applied,
            records,
        } = held;
        let Some(v) = self.vaults.get_mut(&vault) else {
            return applied;
        };
        let mut unstored = Vec::new();
        if let Some(d) = v.document(&doc) {
            for (key, value) in records {
                let Some(hash) = crate::storage::keys::change_hash(&key) else {
                    continue;
                };
                if d.has_change(&hash) {
                    unstored.push(hash);
                } else if d.is_waiting(&hash) {
                    applied.batch.put(Table::Changes, key, value);
                }
            }
        }
        if !unstored.is_empty()
            && let Ok(batch) = v.compact_with_unstored(doc, &unstored)
        {
            applied.batch.extend(batch);
        }
        applied
    }

    fn apply_staged(
        &mut self,
        id: SessionId,
        theirs: Vec<ChangeHash>,
        staged: crate::document::StagedSnapshot,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get_mut(&vault) else {
            return;
        };
        let doc = staged.doc();
        let applied = v.apply_staged_snapshot_from_peer(staged, now_ms);
        self.after_apply(id, vault, doc, theirs, applied, out);
    }

    fn handle_message_now(&mut self, id: SessionId, bytes: &[u8], now_ms: u64, out: &mut Output) {
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                self.violation(id, &e, out);
                return;
            }
        };
        match message {
            Message::Hello {
                vault,
                membership_heads,
                join,
                snapshot_max_changes,
            } => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.their_snapshot_max_changes =
                        usize::try_from(snapshot_max_changes).unwrap_or(usize::MAX);
                }
                self.on_hello(id, vault, membership_heads, join, now_ms, out)
            }
            Message::Entries { entries, withheld } => {
                self.on_entries(id, entries, withheld, now_ms, out)
            }
            Message::Refuse { code, reason } => {
                self.sessions.remove(&id);
                out.closed.push((
                    id,
                    CloseReason {
                        code,
                        reason,
                        by_us: false,
                    },
                ));
            }
            other => {
                let Some(session) = self.sessions.get(&id) else {
                    return;
                };
                // Document messages before the handshake completed are dropped: they can
                // only be reordered early, and the next reconciliation repeats them.
                if session.phase != Phase::Ready {
                    return;
                }
                self.on_document_message(id, other, now_ms, out);
            }
        }
    }

    fn violation(&mut self, id: SessionId, error: &DecodeError, out: &mut Output) {
        self.close_with(
            id,
            RefuseCode::ProtocolViolation,
            format!("malformed message: {error}"),
            out,
        );
    }

    fn on_hello(
        &mut self,
        id: SessionId,
        vault: VaultId,
        membership_heads: Vec<Hash>,
        join: Option<JoinRequest>,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(mut session) = self.sessions.remove(&id) else {
            return;
        };
        match session.vault {
            Some(v) if v != vault => {
                self.sessions.insert(id, session);
                self.close_with(
                    id,
                    RefuseCode::ProtocolViolation,
                    format!("hello names vault {vault} but this session is about {v}"),
                    out,
                );
                return;
            }
            Some(_) => {}
            None => {
                session.vault = Some(vault);
                self.send_hello(id, &mut session, now_ms, out);
            }
        }
        if session.phase != Phase::Hello {
            // A repeated hello (the peer's retry): answer with ours again, nothing else. Not
            // if we sent one lately: two sides both waiting for entries would otherwise
            // answer each other's answers forever (found by the soak at seed 10087).
            if session.phase == Phase::Membership
                && now_ms.saturating_sub(session.last_sent_ms) >= self.config.retry_ms / 2
            {
                self.send_hello(id, &mut session, now_ms, out);
            }
            self.sessions.insert(id, session);
            return;
        }
        session.their_membership_heads = sorted_hashes(membership_heads);
        session.their_join = join;
        session.phase = Phase::Membership;
        let Some(v) = self.vaults.get(&vault) else {
            self.sessions.insert(id, session);
            if join.is_some() {
                self.close_with(
                    id,
                    RefuseCode::UnknownVault,
                    format!("this device does not hold vault {vault}"),
                    out,
                );
                return;
            }
            // Offered a vault we do not hold: we have nothing to prove; wait for entries.
            if let Some(s) = self.sessions.get_mut(&id) {
                s.sent_entries = true;
            }
            out.send(
                id,
                &Message::Entries {
                    entries: Vec::new(),
                    withheld: false,
                },
            );
            return;
        };
        let membership = v.membership();
        let same_log = v.log().heads() == session.their_membership_heads;
        let peer_is_member = membership.is_member(&session.peer);
        if same_log && peer_is_member && membership.is_member(&self.device_id()) {
            // Same log on both sides: nothing to exchange, and both see both as members.
            session.sent_entries = true;
            session.got_entries = true;
            self.sessions.insert(id, session);
            self.become_ready(id, now_ms, out);
            return;
        }
        let join_ok = join.is_some_and(|j| invite_usable(membership, &j, now_ms));
        if join.is_some() && !join_ok {
            self.sessions.insert(id, session);
            self.close_with(
                id,
                RefuseCode::BadInvite,
                "the invite is unknown, already used, expired or its secret is wrong".into(),
                out,
            );
            return;
        }
        let entries = if peer_is_member || join_ok {
            session.sent_entries = true;
            entries_missing(v, &session.their_membership_heads)
        } else {
            Vec::new()
        };
        out.send(
            id,
            &Message::Entries {
                entries,
                withheld: !session.sent_entries,
            },
        );
        session.last_sent_ms = now_ms;
        self.sessions.insert(id, session);
    }

    fn on_entries(
        &mut self,
        id: SessionId,
        entries: Vec<SignedEntry>,
        withheld: bool,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let (peer, Some(vault)) = (session.peer, session.vault) else {
            return;
        };
        if session.phase == Phase::Hello {
            return; // reordered before the hello; the peer resends
        }
        let received = Received {
            now_ms,
            from: Some(peer),
        };
        let me = self.device_id();
        // A vault we do not hold yet: offered (approved by id) or being joined.
        if !self.vaults.contains_key(&vault) {
            if entries.is_empty() {
                return;
            }
            let join = session.join;
            let (mut v, ingested) =
                match Vault::from_entries(vault, entries, received, self.actor.clone()) {
                    Ok(x) => x,
                    Err(e) => {
                        self.close_with(
                            id,
                            RefuseCode::ProtocolViolation,
                            format!("the vault's entries do not start a log: {e}"),
                            out,
                        );
                        return;
                    }
                };
            let mut batch = ingested.batch;
            if !v.membership().is_member(&me) {
                let Some(join) = join else {
                    self.close_with(
                        id,
                        RefuseCode::NotMember,
                        "this device is not a member of the offered vault".into(),
                        out,
                    );
                    return;
                };
                match v.redeem_invite(&self.key, join.invite, join.secret, now_ms) {
                    Ok((entry, redeem)) => {
                        batch.extend(redeem);
                        out.send(
                            id,
                            &Message::Entries {
                                entries: vec![entry],
                                withheld: false,
                            },
                        );
                    }
                    Err(e) => {
                        self.close_with(
                            id,
                            RefuseCode::BadInvite,
                            format!("could not redeem the invite: {e}"),
                            out,
                        );
                        return;
                    }
                }
            }
            out.batch.extend(batch);
            self.vaults.insert(vault, v);
            out.events.push(Event::VaultJoined { vault });
            if let Some(s) = self.sessions.get_mut(&id) {
                s.sent_entries = true;
                s.got_entries = !withheld;
            }
            self.check_ready(id, now_ms, out);
            return;
        }
        let Some(v) = self.vaults.get_mut(&vault) else {
            return;
        };
        let before = v.log().heads();
        let ingested = v.ingest_entries(entries, received);
        let changed = !ingested.accepted.is_empty();
        let mut batch = ingested.batch;
        for (doc, _) in ingested.dropped {
            out.events.push(Event::DocChanged { vault, doc });
        }
        if changed && v.log().heads() != before {
            let other =
                self.after_membership_change(vault, std::mem::take(&mut batch), Some(id), now_ms);
            out.extend(other);
            if !self.sessions.contains_key(&id) {
                return;
            }
        } else {
            out.batch.extend(batch);
        }
        let Some(v) = self.vaults.get(&vault) else {
            return;
        };
        let membership = v.membership().clone();
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if !withheld {
            session.got_entries = true;
        }
        if membership.is_member(&peer) {
            if !session.sent_entries {
                session.sent_entries = true;
                let entries = entries_missing(v, &session.their_membership_heads);
                out.send(
                    id,
                    &Message::Entries {
                        entries,
                        withheld: false,
                    },
                );
            }
            self.check_ready(id, now_ms, out);
        } else if session.their_join.is_some() && !withheld {
            // The joining peer's redemption comes in its next entries.
        } else if !withheld || membership.revocation(&peer).is_some() {
            self.refuse(id, &membership, out);
        } else if !session.sent_entries && !membership.is_member(&me) {
            // Neither side counts the other: nothing more can prove anything.
            self.refuse(id, &membership, out);
        }
    }

    fn check_ready(&mut self, id: SessionId, now_ms: u64, out: &mut Output) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let Some(vault) = session.vault.and_then(|v| self.vaults.get(&v)) else {
            return;
        };
        let membership = vault.membership();
        if session.phase == Phase::Membership
            && session.sent_entries
            && session.got_entries
            && membership.is_member(&session.peer)
            && membership.is_member(&self.device_id())
        {
            self.become_ready(id, now_ms, out);
        }
    }

    fn become_ready(&mut self, id: SessionId, now_ms: u64, out: &mut Output) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.phase = Phase::Ready;
        let (peer, Some(vault)) = (session.peer, session.vault) else {
            return;
        };
        out.events.push(Event::SessionReady {
            session: id,
            vault,
            peer,
        });
        if session.initiator {
            self.send_root_reconcile(id, now_ms, out);
        }
    }

    fn send_root_reconcile(&mut self, id: SessionId, now_ms: u64, out: &mut Output) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(vault) = session.vault.and_then(|v| self.vaults.get(&v)) else {
            return;
        };
        session.last_reconcile_ms = now_ms;
        // A new reconciliation cycle: earlier Bloom filters and requests may have been
        // lost, so they may be sent again.
        session.have_sent.clear();
        session.need_sent.clear();
        let items = digest(vault);
        let (fingerprint, count) = fingerprint(items.values());
        out.send(
            id,
            &Message::Reconcile {
                ranges: vec![Range {
                    lower: DocId([0; 16]),
                    upper: None,
                    body: RangeBody::Fingerprint { fingerprint, count },
                }],
            },
        );
    }

    /// Lets time pass: retries handshake steps and reconciles idle sessions again.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let mut out = Output::default();
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(mut session) = self.sessions.remove(&id) else {
                continue;
            };
            match session.phase {
                Phase::Hello | Phase::Membership
                    if now_ms.saturating_sub(session.last_sent_ms) >= self.config.retry_ms =>
                {
                    self.send_hello(id, &mut session, now_ms, &mut out);
                    if session.phase == Phase::Membership {
                        // Our entries may have been lost: send them again.
                        let entries = match session.vault.and_then(|v| self.vaults.get(&v)) {
                            Some(v) if session.sent_entries => {
                                entries_missing(v, &session.their_membership_heads)
                            }
                            _ => Vec::new(),
                        };
                        out.send(
                            id,
                            &Message::Entries {
                                entries,
                                withheld: !session.sent_entries,
                            },
                        );
                    }
                    self.sessions.insert(id, session);
                }
                Phase::Ready
                    if session.initiator
                        && now_ms.saturating_sub(session.last_reconcile_ms)
                            >= self.config.reconcile_interval_ms =>
                {
                    self.sessions.insert(id, session);
                    self.send_root_reconcile(id, now_ms, &mut out);
                }
                _ => {
                    self.sessions.insert(id, session);
                }
            }
        }
        out
    }

    // ---- documents --------------------------------------------------------------------

    fn on_document_message(
        &mut self,
        id: SessionId,
        message: Message,
        now_ms: u64,
        out: &mut Output,
    ) {
        match message {
            Message::Reconcile { ranges } => self.on_reconcile(id, ranges, out),
            Message::DocHeads { doc, heads, reply } => {
                self.on_doc_heads(id, doc, sorted(heads), reply, out)
            }
            Message::DocHave { doc, heads, bloom } => {
                self.on_doc_have(id, doc, sorted(heads), Bloom::from_bytes(bloom), out)
            }
            Message::DocChanges {
                doc,
                heads,
                changes,
            } if self.config.verify_slice > 0 && changes.len() > self.config.verify_slice => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    let changes = changes.into();
                    let held = Box::default();
                    let staged = Staged::Changes { doc, changes, held };
                    session.staged = Some((sorted(heads), staged));
                }
            }
            Message::DocChanges {
                doc,
                heads,
                changes,
            } => self.on_doc_data(
                id,
                doc,
                sorted(heads),
                DocData::Changes(changes),
                now_ms,
                out,
            ),
            Message::DocNeed { doc, hashes } => self.on_doc_need(id, doc, hashes, out),
            Message::DocSnapshot {
                doc,
                heads,
                snapshot,
            } if self.config.verify_slice > 0 => {
                self.stage_snapshot(id, doc, sorted(heads), snapshot)
            }
            Message::DocSnapshot {
                doc,
                heads,
                snapshot,
            } => self.on_doc_data(
                id,
                doc,
                sorted(heads),
                DocData::Snapshot(snapshot),
                now_ms,
                out,
            ),
            _ => {}
        }
    }

    fn on_reconcile(&mut self, id: SessionId, ranges: Vec<Range>, out: &mut Output) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get(&vault) else {
            return;
        };
        if ranges
            .iter()
            .any(|r| r.lower == DocId([0; 16]) && r.upper.is_none())
            && let Some(s) = self.sessions.get_mut(&id)
        {
            s.have_sent.clear();
            s.need_sent.clear();
        }
        let items = digest(v);
        let mut reply: Vec<Range> = Vec::new();
        let mut listed: Vec<(DocId, Vec<ChangeHash>)> = Vec::new();
        for range in ranges {
            let mine: Vec<(&DocId, &[u8; 16])> = match range.upper {
                Some(upper) => items.range(range.lower..upper).collect(),
                None => items.range(range.lower..).collect(),
            };
            match range.body {
                RangeBody::Fingerprint {
                    fingerprint: theirs,
                    count,
                } => {
                    let (ours, our_count) = fingerprint(mine.iter().map(|(_, h)| *h));
                    if ours == theirs && our_count == count {
                        continue;
                    }
                    if mine.len() <= LIST_THRESHOLD {
                        let list = mine.iter().map(|(d, _)| (**d, heads_of(v, d))).collect();
                        reply.push(Range {
                            lower: range.lower,
                            upper: range.upper,
                            body: RangeBody::Items(list),
                        });
                    } else {
                        reply.extend(split(&mine, range.lower, range.upper));
                    }
                }
                RangeBody::Items(theirs) => {
                    let theirs: BTreeMap<DocId, Vec<ChangeHash>> = theirs.into_iter().collect();
                    let docs: BTreeSet<DocId> = theirs
                        .keys()
                        .copied()
                        .chain(mine.iter().map(|(d, _)| **d))
                        .collect();
                    for doc in docs {
                        listed.push((doc, theirs.get(&doc).cloned().unwrap_or_default()));
                    }
                }
            }
        }
        for chunk in reply.chunks(MAX_RANGES) {
            out.send(
                id,
                &Message::Reconcile {
                    ranges: chunk.to_vec(),
                },
            );
        }
        for (doc, their_heads) in listed {
            self.on_doc_heads(id, doc, sorted(their_heads), true, out);
        }
    }

    /// The peer's heads for a document (from a listing, `DocHeads` or a `DocHave`).
    fn on_doc_heads(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        reply: bool,
        out: &mut Output,
    ) {
        let Some((vault, ours, known)) = self.learn_their_heads(id, &doc, &theirs) else {
            return;
        };
        if theirs == ours {
            return;
        }
        if known {
            self.send_changes_since(id, vault, doc, &theirs, out);
        } else if !reply {
            out.send(
                id,
                &Message::DocHeads {
                    doc,
                    heads: ours,
                    reply: true,
                },
            );
        } else {
            self.send_have(id, vault, doc, out);
        }
    }

    fn on_doc_have(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        bloom: Bloom,
        out: &mut Output,
    ) {
        let Some((vault, _, known)) = self.learn_their_heads(id, &doc, &theirs) else {
            return;
        };
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let missing: Vec<SignedChange> = if known {
            // Their heads say exactly what they have: no need for the filter.
            d.changes_since(&theirs)
        } else {
            let common: Vec<ChangeHash> =
                theirs.iter().filter(|h| d.has_change(h)).copied().collect();
            d.changes_since(&common)
                .into_iter()
                .filter(|c| {
                    automerge::Change::from_bytes(c.bytes.clone())
                        .map(|change| !bloom.contains(&change.hash()))
                        .unwrap_or(false)
                })
                .collect()
        };
        let heads = d.heads();
        send_chunked(out, id, doc, &heads, missing);
        if !known {
            self.send_have(id, vault, doc, out);
        }
    }

    /// A snapshot to check a slice at a time: kept as received; [`Node::work`] parses it,
    /// checks its signatures a slice per call, then applies it.
    fn stage_snapshot(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        bytes: Vec<u8>,
    ) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.staged = Some((theirs, Staged::Received { doc, bytes }));
        }
    }

    /// Changes (or a whole-document snapshot) from the peer.
    fn on_doc_data(
        &mut self,
        id: SessionId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        data: DocData,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(v) = self.vaults.get_mut(&vault) else {
            return;
        };
        let applied = match data {
            DocData::Changes(changes) => v.apply_changes_from_peer(doc, changes, now_ms),
            DocData::Snapshot(bytes) => v.apply_snapshot_from_peer(doc, &bytes, now_ms),
        };
        self.after_apply(id, vault, doc, theirs, applied, out);
    }

    /// What follows applying a peer's changes: cut off a forger, store, tell the app,
    /// forward to the other sessions, and answer what the peer lacks or ask what we lack.
    fn after_apply(
        &mut self,
        id: SessionId,
        vault: VaultId,
        doc: DocId,
        theirs: Vec<ChangeHash>,
        applied: crate::document::Applied,
        out: &mut Output,
    ) {
        if applied.aborted {
            // Nothing of the message was applied or stored; the peer is cut off.
            let reason = match applied.rejected.first() {
                Some(error) => format!("sent an invalid change: {error}"),
                None => "sent an invalid change".to_string(),
            };
            self.close_with(id, RefuseCode::ProtocolViolation, reason, out);
            return;
        }
        for error in &applied.rejected {
            out.events.push(Event::Rejected {
                session: id,
                error: error.clone(),
            });
        }
        let accepted = !applied.accepted.is_empty();
        out.batch.extend(applied.batch);
        if let Some(s) = self.sessions.get_mut(&id) {
            s.their_heads.insert(doc, theirs.clone());
        }
        if accepted {
            out.events.push(Event::DocChanged { vault, doc });
            self.offer(vault, doc, Some(id), out);
        }
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let ours = d.heads();
        let known = theirs.iter().all(|h| d.has_change(h));
        if known {
            if ours != theirs {
                self.send_changes_since(id, vault, doc, &theirs, out);
            }
        } else {
            let missing = d.missing_deps();
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            // Ask once per reconciliation cycle: the same request again would get the
            // same answer.
            if !missing.is_empty() && s.need_sent.get(&doc) != Some(&missing) {
                s.need_sent.insert(doc, missing.clone());
                out.send(
                    id,
                    &Message::DocNeed {
                        doc,
                        hashes: missing,
                    },
                );
            }
        }
    }

    fn on_doc_need(
        &mut self,
        id: SessionId,
        doc: DocId,
        mut hashes: Vec<ChangeHash>,
        out: &mut Output,
    ) {
        let Some(vault) = self.sessions.get(&id).and_then(|s| s.vault) else {
            return;
        };
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        hashes.truncate(MAX_NEED_ANSWER);
        let changes = d.changes_by_hash(&hashes);
        let heads = d.heads();
        send_chunked(out, id, doc, &heads, changes);
    }

    /// Records the peer's heads for `doc`; returns this device's heads and whether it
    /// knows all of the peer's.
    fn learn_their_heads(
        &mut self,
        id: SessionId,
        doc: &DocId,
        theirs: &[ChangeHash],
    ) -> Option<(VaultId, Vec<ChangeHash>, bool)> {
        let session = self.sessions.get_mut(&id)?;
        session.their_heads.insert(*doc, theirs.to_vec());
        let vault = session.vault?;
        let v = self.vaults.get(&vault)?;
        Some(match v.document(doc) {
            Some(d) => (vault, d.heads(), theirs.iter().all(|h| d.has_change(h))),
            None => (vault, Vec::new(), theirs.is_empty()),
        })
    }

    fn send_changes_since(
        &mut self,
        id: SessionId,
        vault: VaultId,
        doc: DocId,
        theirs: &[ChangeHash],
        out: &mut Output,
    ) {
        let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
            return;
        };
        let heads = d.heads();
        let limit = match self.sessions.get(&id).map(|s| s.their_snapshot_max_changes) {
            None | Some(0) => usize::MAX,
            Some(limit) => limit,
        };
        let snapshot = (theirs.is_empty() && d.change_count() >= self.config.snapshot_min_changes)
            .then(|| d.snapshot_and_rest(limit))
            .filter(|(bytes, _)| bytes.len() <= MAX_SNAPSHOT_MESSAGE_BYTES);
        if let Some((snapshot, rest)) = snapshot {
            // A device with nothing gets the compacted document and the signatures; one
            // that takes only so many changes at a time gets the rest as changes.
            out.send(
                id,
                &Message::DocSnapshot {
                    doc,
                    heads: heads.clone(),
                    snapshot,
                },
            );
            send_chunked(out, id, doc, &heads, rest);
        } else {
            let changes = d.changes_since(theirs);
            if changes.is_empty() {
                return;
            }
            send_chunked(out, id, doc, &heads, changes);
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.their_heads.insert(doc, heads);
        }
    }

    fn send_have(&mut self, id: SessionId, vault: VaultId, doc: DocId, out: &mut Output) {
        let (heads, bloom) = match self.vaults.get(&vault).and_then(|v| v.document(&doc)) {
            Some(d) => {
                let hashes: Vec<&ChangeHash> = d.applied_hashes().collect();
                self.bloom_salt = self.bloom_salt.wrapping_add(0x6D2B_79F5);
                let mut bloom = Bloom::with_capacity(hashes.len(), self.bloom_salt);
                for hash in hashes {
                    bloom.insert(hash);
                }
                (d.heads(), bloom)
            }
            None => (Vec::new(), Bloom::with_capacity(0, 0)),
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.have_sent.get(&doc) == Some(&heads) {
            return;
        }
        s.have_sent.insert(doc, heads.clone());
        out.send(
            id,
            &Message::DocHave {
                doc,
                heads,
                bloom: bloom.into_bytes(),
            },
        );
    }

    /// Offers a document's new changes to every ready session of the vault but `except`.
    fn offer(&mut self, vault: VaultId, doc: DocId, except: Option<SessionId>, out: &mut Output) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                Some(**id) != except && s.vault == Some(vault) && s.phase == Phase::Ready
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let their = self
                .sessions
                .get(&id)
                .and_then(|s| s.their_heads.get(&doc).cloned());
            let Some(d) = self.vaults.get(&vault).and_then(|v| v.document(&doc)) else {
                return;
            };
            match their {
                Some(theirs) if theirs.iter().all(|h| d.has_change(h)) => {
                    self.send_changes_since(id, vault, doc, &theirs, out);
                }
                _ => {
                    let heads = d.heads();
                    out.send(
                        id,
                        &Message::DocHeads {
                            doc,
                            heads,
                            reply: false,
                        },
                    );
                }
            }
        }
    }
}

/// What a peer sent for a document.
enum DocData {
    Changes(Vec<SignedChange>),
    Snapshot(Vec<u8>),
}

fn sorted_hashes(mut hashes: Vec<Hash>) -> Vec<Hash> {
    hashes.sort();
    hashes.dedup();
    hashes
}

fn heads_of(v: &Vault, doc: &DocId) -> Vec<ChangeHash> {
    v.document(doc).map(|d| d.heads()).unwrap_or_default()
}

/// (document, item hash) for every document with at least one change.
fn digest(v: &Vault) -> BTreeMap<DocId, [u8; 16]> {
    v.documents()
        .filter_map(|d| {
            let heads = d.heads();
            (!heads.is_empty()).then(|| (d.id(), item_hash(&d.id(), &heads)))
        })
        .collect()
}

/// Splits a differing range into up to [`SPLIT_FANOUT`] parts with equal counts of our items.
fn split(mine: &[(&DocId, &[u8; 16])], lower: DocId, upper: Option<DocId>) -> Vec<Range> {
    let n = mine.len();
    let mut bounds: Vec<DocId> = (1..SPLIT_FANOUT)
        .map(|k| *mine[k * n / SPLIT_FANOUT].0)
        .collect();
    bounds.retain(|b| *b > lower);
    bounds.dedup();
    let mut ranges = Vec::new();
    let mut start = lower;
    let mut index = 0;
    for bound in bounds.into_iter().map(Some).chain(std::iter::once(upper)) {
        let end = index
            + mine[index..]
                .iter()
                .take_while(|(d, _)| bound.is_none_or(|b| **d < b))
                .count();
        let (fingerprint, count) = fingerprint(mine[index..end].iter().map(|(_, h)| *h));
        ranges.push(Range {
            lower: start,
            upper: bound,
            body: RangeBody::Fingerprint { fingerprint, count },
        });
        index = end;
        if let Some(b) = bound {
            start = b;
        }
    }
    ranges
}

fn entries_missing(v: &Vault, their_heads: &[Hash]) -> Vec<SignedEntry> {
    let log = v.log();
    let known: Vec<Hash> = their_heads
        .iter()
        .filter(|h| log.contains(h))
        .copied()
        .collect();
    let theirs = log.ancestry(&known);
    log.entries()
        .into_iter()
        .filter(|e| !theirs.contains(&e.hash()))
        .cloned()
        .collect()
}

fn invite_usable(membership: &Membership, join: &JoinRequest, now_ms: u64) -> bool {
    membership
        .invites()
        .get(&join.invite)
        .is_some_and(|invite| {
            invite.redeemed_by.is_none()
                && now_ms <= invite.expires_at_ms
                && membership.invite_secret_matches(&join.invite, &join.secret)
        })
}

fn send_chunked(
    out: &mut Output,
    id: SessionId,
    doc: DocId,
    heads: &[ChangeHash],
    changes: Vec<SignedChange>,
) {
    let mut chunk: Vec<SignedChange> = Vec::new();
    let mut size = 0;
    for change in changes {
        size += change.bytes.len() + 110;
        chunk.push(change);
        if size >= CHANGES_CHUNK_BYTES || chunk.len() >= MAX_ITEMS * 16 {
            out.send(
                id,
                &Message::DocChanges {
                    doc,
                    heads: heads.to_vec(),
                    changes: std::mem::take(&mut chunk),
                },
            );
            size = 0;
        }
    }
    if !chunk.is_empty() {
        out.send(
            id,
            &Message::DocChanges {
                doc,
                heads: heads.to_vec(),
                changes: chunk,
            },
        );
    }
}

fn moved_events(vault: VaultId, docs: Vec<DocId>) -> impl Iterator<Item = Event> {
    docs.into_iter()
        .map(move |doc| Event::DocChanged { vault, doc })
}
