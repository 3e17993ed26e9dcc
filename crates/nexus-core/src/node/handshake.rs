//! A session's life up to syncing documents and its end: opening and accepting it, the
//! `Hello` and membership-entry exchange that proves each side's standing (or redeems an
//! invite), becoming ready, and closing it (refusing a peer, a protocol violation, the
//! transport going away).

use super::offers::Offer;
use super::session::{Phase, Session};
use super::slices::Staged;
use super::{CloseReason, Event, Node, Output, SessionId};
use crate::DecodeError;
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::{DocId, VaultId};
use crate::membership::{Membership, MembershipError, Received, SignedEntry};
use crate::protocol::{JoinProof, JoinRequest, Message, RefuseCode};
use crate::vault::Vault;

/// Batches a trusted log (the inviter's, or a named device's) may take to arrive whole.
const MAX_TRUSTED_ROUNDS: usize = 64;

impl Node {
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

    pub(super) fn send_hello(
        &self,
        id: SessionId,
        session: &mut Session,
        now_ms: u64,
        out: &mut Output,
    ) {
        let Some(vault) = session.vault else {
            return;
        };
        // Heads only to a member: a stranger who names a vault learns nothing of its log.
        let membership_heads = self
            .vaults
            .get(&vault)
            .filter(|v| v.membership().is_member(&session.peer))
            .map(|v| v.log().heads())
            .unwrap_or_default();
        let me = self.device_id();
        out.send(
            id,
            &Message::Hello {
                vault,
                membership_heads,
                join: session.join.as_ref().map(|j| j.proof(&vault, &me)),
                snapshot_max_changes: self.config.snapshot_max_changes as u64,
            },
        );
        session.last_sent_ms = now_ms;
    }

    pub(super) fn on_hello(
        &mut self,
        id: SessionId,
        vault: VaultId,
        membership_heads: Vec<Hash>,
        join: Option<JoinProof>,
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
        let join_check = join.map(|j| {
            membership.check_redemption(&vault, &j.invite, &session.peer, &j.proof, now_ms)
        });
        let join_ok = matches!(join_check, Some(Ok(())));
        if let Some(Err(rule)) = join_check {
            self.sessions.insert(id, session);
            self.close_with(
                id,
                RefuseCode::BadInvite,
                format!("the invite cannot admit this device: {rule}"),
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

    pub(super) fn on_entries(
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
        let received = Received::from_peer(peer, now_ms);
        let me = self.device_id();
        // A vault we do not hold yet: offered (approved by id) or being joined.
        if !self.vaults.contains_key(&vault) {
            if entries.is_empty() {
                return;
            }
            let join = session.join.clone();
            if join.is_none() && self.offers.is_declined(&vault) {
                self.close_with(
                    id,
                    RefuseCode::NotMember,
                    format!("this device declined vault {vault}"),
                    out,
                );
                return;
            }
            if join.is_none()
                && !self.offers.expected_from.contains(&peer)
                && self.offers.is_waiting(&vault)
            {
                // Held already, the person has not answered: keep what else the log holds.
                self.offers.add_entries(&vault, entries, received);
                return;
            }
            // From the inviter, or a device the person named, a log is taken in whole even
            // when its races make a batch postpone part of it; from anyone else, one
            // bounded batch per message.
            let trusted = join.is_some() || self.offers.expected_from.contains(&peer);
            let again = trusted.then(|| entries.clone());
            let (mut v, mut ingested) =
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
            if let Some(entries) = again {
                for _ in 0..MAX_TRUSTED_ROUNDS {
                    let postponed = ingested
                        .refused
                        .iter()
                        .any(|e| matches!(e, MembershipError::Postponed { .. }));
                    if !postponed {
                        break;
                    }
                    let more = v.ingest_entries(entries.iter().cloned(), received);
                    if more.accepted.is_empty() {
                        break;
                    }
                    ingested.batch.extend(more.batch);
                    ingested.refused = more.refused;
                }
            }
            let mut batch = ingested.batch;
            if join.is_none()
                && v.membership().is_member(&me)
                && !self.offers.expected_from.contains(&peer)
            {
                // Approved by id without asking: the person answers first.
                self.offers.hold(Offer {
                    vault: v,
                    batch,
                    offered_by: peer,
                    offered_at_ms: now_ms,
                });
                out.events.push(Event::VaultOffered { vault, by: peer });
                return;
            }
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
                match v.redeem_invite(&self.key, join.invite, &join.secret, now_ms) {
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
            self.offers.forget(&vault);
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
        let revived: Vec<DocId> = ingested.revived.keys().copied().collect();
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
        // Work a revocation had voided that stands again is news to every peer.
        for doc in revived {
            out.events.push(Event::DocChanged { vault, doc });
            self.offer(vault, doc, None, out);
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

    pub(super) fn check_ready(&mut self, id: SessionId, now_ms: u64, out: &mut Output) {
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

    pub(super) fn refuse(&mut self, id: SessionId, membership: &Membership, out: &mut Output) {
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

    pub(super) fn close_with(
        &mut self,
        id: SessionId,
        code: RefuseCode,
        reason: String,
        out: &mut Output,
    ) {
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

    pub(super) fn violation(&mut self, id: SessionId, error: &DecodeError, out: &mut Output) {
        self.close_with(
            id,
            RefuseCode::ProtocolViolation,
            format!("malformed message: {error}"),
            out,
        );
    }
}

fn sorted_hashes(mut hashes: Vec<Hash>) -> Vec<Hash> {
    hashes.sort();
    hashes.dedup();
    hashes
}

pub(super) fn entries_missing(v: &Vault, their_heads: &[Hash]) -> Vec<SignedEntry> {
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
