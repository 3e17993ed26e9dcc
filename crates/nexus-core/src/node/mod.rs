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
//! Between inputs, call [`Node::work`] while [`Node::has_work`] (giving other work a turn
//! in between), and [`Node::tick`] once the time of [`Node::poll_timeout`] has come.
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

// This file holds `Node` and routes what comes in (`handle_message`, `tick`); each step
// lives with its topic, in `impl Node` blocks of the child modules.
mod bundles; // mailbox bundles: what changed since the last one, one taken in
mod config; // NodeConfig
mod doc_sync; // one document by heads, Bloom filters and requests by hash
mod forwarding; // news pushed to the vault's other sessions
mod handshake; // open, Hello, membership entries, ready, close
mod loader; // Node::load and NodeLoader
mod local; // this device's own operations
mod offers; // vaults offered by an approval, until the person answers
mod output; // Output, Event, CloseReason, SessionId
mod reconciliation; // the vault-wide range fingerprints
mod session; // the per-session state
mod slices; // big messages taken in over several `work` calls

use std::collections::BTreeMap;

use crate::ActorId;
use crate::identity::{DeviceId, DeviceKey};
use crate::ids::{DocId, VaultId};
use crate::protocol::{Bloom, Message, RefuseCode};
use crate::storage::Storage;
use crate::vault::Vault;

pub use bundles::PreparedBundle;
pub use config::NodeConfig;
pub use loader::{NodeLoadError, NodeLoader};
pub use offers::{MAX_DECLINED, MAX_OFFERS, VaultOffer};
pub use output::{CloseReason, Event, Output, SessionId};

use doc_sync::{DocData, sorted};
use handshake::entries_missing;
use session::{MAX_BACKLOG, Phase, Session};
use slices::Held;

/// A device: its key, its vaults and its sessions.
#[derive(Debug, Clone)]
pub struct Node {
    key: DeviceKey,
    actor: ActorId,
    config: NodeConfig,
    vaults: BTreeMap<VaultId, Vault>,
    sessions: BTreeMap<SessionId, Session>,
    /// Vaults offered by an approval, waiting for the person's answer.
    offers: offers::Offers,
    /// Held changes of sessions that closed before their last slice, to be stored.
    unfinished: Vec<(VaultId, DocId, Held)>,
    next_session: u64,
    /// Varies Bloom filter probe positions from one filter to the next.
    bloom_salt: u32,
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
            offers: offers::Offers::default(),
            unfinished: Vec::new(),
            next_session: 0,
            bloom_salt: 0,
        }
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

    /// How the node was configured (what a reload from the store must keep).
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A node loaded again from `store`, with this node's key, actor and configuration:
    /// what an engine starts over from after a failed commit (its sessions are gone).
    pub fn reloaded<S: Storage>(&self, store: &S) -> Result<Node, NodeLoadError<S::Error>> {
        let mut node = Node::load(store, self.key.clone(), self.actor.clone(), self.config)?;
        node.offers = self.offers.clone();
        Ok(node)
    }

    /// A vault.
    pub fn vault(&self, id: &VaultId) -> Option<&Vault> {
        self.vaults.get(id)
    }

    /// Every vault.
    pub fn vaults(&self) -> impl Iterator<Item = &Vault> {
        self.vaults.values()
    }

    /// The peer and vault of each open session, and whether it is syncing documents.
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = (SessionId, DeviceId, Option<VaultId>, bool)> + '_ {
        self.sessions
            .iter()
            .map(|(id, s)| (*id, s.peer, s.vault, s.phase == Phase::Ready))
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

    fn handle_message_now(&mut self, id: SessionId, bytes: &[u8], now_ms: u64, out: &mut Output) {
        if let Some(count) = Message::entries_count(bytes)
            && !self.take_unvouched_entries(id, count)
        {
            self.close_with(
                id,
                RefuseCode::ProtocolViolation,
                format!(
                    "sent over {} membership entries while not a member here",
                    session::MAX_UNVOUCHED_ENTRIES
                ),
                out,
            );
            return;
        }
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
                let Some(session) = self.sessions.get_mut(&id) else {
                    return;
                };
                // Document messages before the handshake completed are dropped: they can
                // only be reordered early, and the next reconciliation repeats them.
                if session.phase != Phase::Ready {
                    session.dropped_early = true;
                    return;
                }
                self.on_document_message(id, other, now_ms, out);
            }
        }
    }

    /// Counts `count` entries an `Entries` message of session `id` brings against what a
    /// session reads from a peer that is not a member ([`session::MAX_UNVOUCHED_ENTRIES`]);
    /// whether it is to be read. A member's are not counted.
    fn take_unvouched_entries(&mut self, id: SessionId, count: usize) -> bool {
        let Some(session) = self.sessions.get(&id) else {
            return true;
        };
        let vouched = session.join.is_some()
            || self.offers.expected_from.contains(&session.peer)
            || session
                .vault
                .and_then(|v| self.vaults.get(&v))
                .is_some_and(|v| v.membership().is_member(&session.peer));
        if vouched || count == 0 {
            return true;
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return true;
        };
        session.unvouched_entries = session.unvouched_entries.saturating_add(count);
        session.unvouched_entries <= session::MAX_UNVOUCHED_ENTRIES
    }

    /// Routes a message of a ready session to the topic it belongs to.
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
                self.stage_changes(id, doc, sorted(heads), changes)
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

    /// Lets time pass: retries handshake steps and reconciles idle sessions again. It has
    /// something to do from [`Node::poll_timeout`] on, and nothing before.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let mut out = Output::default();
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(mut session) = self.sessions.remove(&id) else {
                continue;
            };
            match session.phase {
                Phase::Hello | Phase::Membership
                    if self.retry_at(&session).is_some_and(|at| now_ms >= at) =>
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
                Phase::Ready if self.reconcile_at(&session).is_some_and(|at| now_ms >= at) => {
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

    /// The earliest time, on the clock of the `now_ms` arguments, at which [`Node::tick`]
    /// has something to do; `None` when nothing is scheduled.
    ///
    /// An engine sleeps until then instead of ticking on an interval, and calls `tick`
    /// with a `now_ms` at or after it (a time already past means at once). The timers are
    /// per session:
    ///
    /// - a session in its handshake sends its `Hello` (and its membership entries, once it
    ///   has the peer's `Hello`) again [`NodeConfig::retry_ms`] after it last sent them; a
    ///   session accepted from a peer waits without a timer until the peer's `Hello` names
    ///   the vault;
    /// - the initiator of a syncing session reconciles again
    ///   [`NodeConfig::reconcile_interval_ms`] after it last did.
    ///
    /// The value can change after any call that takes `&mut self` (a session opened,
    /// accepted or closed, a message handled, [`Node::work`], [`Node::tick`], a local
    /// operation), so ask again after each. Pending work is not a timer: see
    /// [`Node::has_work`].
    pub fn poll_timeout(&self) -> Option<u64> {
        self.sessions
            .values()
            .flat_map(|s| [self.retry_at(s), self.reconcile_at(s)])
            .flatten()
            .min()
    }

    /// When `session` sends its handshake step again: only while it is in its handshake
    /// and has something to send (a responder learns the vault from the peer's `Hello`).
    fn retry_at(&self, session: &Session) -> Option<u64> {
        let waiting = match session.phase {
            Phase::Hello => session.vault.is_some(),
            Phase::Membership => true,
            Phase::Ready => false,
        };
        waiting
            .then(|| due(session.last_sent_ms, self.config.retry_ms))
            .flatten()
    }

    /// When `session` reconciles again: only the initiator of a syncing session does, for
    /// a vault this node holds.
    fn reconcile_at(&self, session: &Session) -> Option<u64> {
        let held = session.vault.is_some_and(|v| self.vaults.contains_key(&v));
        (session.phase == Phase::Ready && session.initiator && held)
            .then(|| due(session.last_reconcile_ms, self.config.reconcile_interval_ms))
            .flatten()
    }
}

/// The first `now` with `now - last >= interval` (saturating, as time running backwards
/// counts as none passing); `None` when the sum is past the clock's range.
fn due(last: u64, interval: u64) -> Option<u64> {
    if interval == 0 {
        Some(0)
    } else {
        last.checked_add(interval)
    }
}
