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

// This file holds `Node` and routes what comes in (`handle_message`, `tick`); each step
// lives with its topic, in `impl Node` blocks of the child modules.
mod bundles; // mailbox bundles: what changed since the last one, one taken in
mod config; // NodeConfig
mod doc_sync; // one document by heads, Bloom filters and requests by hash
mod forwarding; // news pushed to the vault's other sessions
mod handshake; // open, Hello, membership entries, ready, close
mod loader; // Node::load and NodeLoader
mod local; // this device's own operations
mod output; // Output, Event, CloseReason, SessionId
mod reconciliation; // the vault-wide range fingerprints
mod session; // the per-session state
mod slices; // big messages taken in over several `work` calls

use std::collections::BTreeMap;

use crate::ActorId;
use crate::identity::{DeviceId, DeviceKey};
use crate::ids::{DocId, VaultId};
use crate::protocol::{Bloom, Message, RefuseCode};
use crate::vault::Vault;

pub use bundles::PreparedBundle;
pub use config::NodeConfig;
pub use loader::{NodeLoadError, NodeLoader};
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
}
