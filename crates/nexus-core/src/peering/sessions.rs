//! Sessions: which to open, the tie-break when both sides open one, and what a closed
//! session means for its pair (cooldown, ban, hang-up, the invite it carried).

use super::io::{Actions, InboundId, Open, OpenId, PeeringEvent};
use super::{At, JoinId, Peering, SessionInfo};
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::node::{CloseReason, Event, Node, Output, SessionId};
use crate::protocol::{Message, RefuseCode};

impl Peering {
    /// Opens the sessions that should exist and do not: each vault shared with each
    /// connected peer, and each pending invite with its inviter (the one device the
    /// invite is shown to: never a stranger on the LAN, an inbound dialer or a relay).
    pub(super) fn ensure_sessions(&mut self, node: &Node, at: At, actions: &mut Actions) {
        self.cooldown.retain(|_, until| *until > at.now_ms);
        self.paused.retain(|_, until| *until > at.now_ms);
        let devices: Vec<DeviceId> = self.connected.iter().copied().collect();
        for device in devices {
            let mut wanted: Vec<(VaultId, Option<JoinId>)> = node
                .shared_vaults(&device)
                .into_iter()
                .map(|v| (v, None))
                .collect();
            for (id, join) in &self.joins {
                if join.code.inviter == device && node.vault(&join.code.vault).is_none() {
                    wanted.push((join.code.vault, Some(*id)));
                }
            }
            for (vault, join) in wanted {
                let pair = (device, vault);
                if self.by_pair.contains_key(&pair)
                    || self.cooldown.contains_key(&pair)
                    || self.paused.contains_key(&pair)
                    || self.opening.values().any(|(d, v, _)| (*d, *v) == pair)
                {
                    continue;
                }
                let id = OpenId(self.next_open);
                self.next_open += 1;
                self.opening.insert(id, (device, vault, join));
                actions.open.push(Open { id, device, vault });
            }
        }
    }

    pub(super) fn on_inbound(
        &mut self,
        node: &mut Node,
        at: At,
        stream: InboundId,
        device: DeviceId,
        actions: &mut Actions,
    ) {
        if self.is_banned(at, &device) {
            actions.reject_inbound.push(stream);
            return;
        }
        let session = node.accept_session(device);
        self.sessions.insert(
            session,
            SessionInfo {
                device,
                vault: None,
                join: None,
                outbound: false,
                opened_ms: at.now_ms,
                ready: false,
            },
        );
        actions.attach_inbound.push((stream, session));
    }

    pub(super) fn on_opened(
        &mut self,
        node: &mut Node,
        at: At,
        open: OpenId,
        actions: &mut Actions,
    ) {
        let Some((device, vault, join)) = self.opening.remove(&open) else {
            actions.discard_opened.push(open);
            return;
        };
        // The peer's own session got there first.
        let join_request = match join {
            Some(id) => match self.joins.get(&id) {
                Some(pending) if node.vault(&vault).is_none() => Some(pending.code.join_request()),
                _ => None,
            },
            None => None,
        };
        if self.by_pair.contains_key(&(device, vault)) || (join.is_some() && join_request.is_none())
        {
            actions.discard_opened.push(open);
            // The pair may still want a session of its own (a join that ended opened
            // this one; the vault is shared now).
            self.sessions_dirty = true;
            return;
        }
        let (session, out) = node.open_session(device, vault, true, join_request, at.now_ms);
        self.sessions.insert(
            session,
            SessionInfo {
                device,
                vault: Some(vault),
                join,
                outbound: true,
                opened_ms: at.now_ms,
                ready: false,
            },
        );
        self.by_pair.insert((device, vault), session);
        actions.attach_opened.push((open, session));
        self.digest(node, at, out, actions);
    }

    pub(super) fn on_open_failed(
        &mut self,
        at: At,
        open: OpenId,
        error: String,
        actions: &mut Actions,
    ) {
        let Some((device, vault, _)) = self.opening.remove(&open) else {
            return;
        };
        self.cooldown.insert(
            (device, vault),
            at.now_ms + self.config.open_failed_cooldown_ms,
        );
        actions.events.push(PeeringEvent::Problem(format!(
            "opening a sync stream to {device}: {error}"
        )));
    }

    pub(super) fn on_frame(
        &mut self,
        node: &mut Node,
        at: At,
        session: SessionId,
        bytes: &[u8],
        actions: &mut Actions,
    ) {
        let Some(info) = self.sessions.get(&session) else {
            return;
        };
        if info.vault.is_none() {
            // An inbound session: its first message names the vault.
            let device = info.device;
            if let Ok(Message::Hello { vault, .. }) = Message::decode(bytes) {
                if let Some(&other) = self.by_pair.get(&(device, vault))
                    && other != session
                {
                    // Against our own session for the pair, the session opened by the
                    // smaller device id wins (the peer decides the same); against an
                    // older session of the peer's, the newer one (the peer moved on).
                    let ours_wins =
                        self.sessions.get(&other).is_some_and(|s| s.outbound) && self.me < device;
                    if ours_wins {
                        self.forget_session(node, session, actions);
                        return;
                    }
                    self.forget_session(node, other, actions);
                }
                if let Some(info) = self.sessions.get_mut(&session) {
                    info.vault = Some(vault);
                }
                self.by_pair.insert((device, vault), session);
            }
        }
        let out = node.handle_message(session, bytes, at.now_ms);
        self.digest(node, at, out, actions);
    }

    /// A session's stream ended: the pair is opened again after a pause, a longer one
    /// when the session never finished its handshake (a peer that takes streams and
    /// drops them is not asked again at the speed of a round trip).
    pub(super) fn on_stream_ended(
        &mut self,
        node: &mut Node,
        at: At,
        session: SessionId,
        actions: &mut Actions,
    ) {
        let Some(info) = self.forget_session(node, session, actions) else {
            return;
        };
        if let Some(vault) = info.vault {
            let pause = if info.ready {
                self.config.reopen_after_ms
            } else {
                self.config.open_failed_cooldown_ms
            };
            self.paused.insert((info.device, vault), at.now_ms + pause);
        }
    }

    pub(super) fn on_bad_frame(
        &mut self,
        node: &mut Node,
        at: At,
        session: SessionId,
        error: String,
        actions: &mut Actions,
    ) {
        let Some(info) = self.forget_session(node, session, actions) else {
            return;
        };
        self.banned
            .insert(info.device, at.now_ms + self.config.ban_ms);
        actions.disconnect.push(info.device);
        actions.events.push(PeeringEvent::SessionRefused {
            peer: info.device,
            vault: info.vault,
            reason: CloseReason {
                code: RefuseCode::ProtocolViolation,
                reason: error,
                by_us: true,
            },
        });
    }

    /// Refuses the sessions whose handshake took too long.
    pub(super) fn close_stalled_handshakes(
        &mut self,
        node: &mut Node,
        at: At,
        actions: &mut Actions,
    ) {
        let timeout = self.config.handshake_timeout_ms;
        let stalled: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.ready && at.now_ms.saturating_sub(s.opened_ms) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for session in stalled {
            let reason = format!("the handshake did not finish within {} s", timeout / 1000);
            let refuse = Message::Refuse {
                code: RefuseCode::NotMember,
                reason: reason.clone(),
            };
            actions.out.transmits.push((session, refuse.encode()));
            let Some(info) = self.forget_session(node, session, actions) else {
                continue;
            };
            self.after_refusal(at, &info, true, RefuseCode::NotMember);
            actions.events.push(PeeringEvent::SessionRefused {
                peer: info.device,
                vault: info.vault,
                reason: CloseReason {
                    code: RefuseCode::NotMember,
                    reason,
                    by_us: true,
                },
            });
        }
    }

    /// Drops a session here and in the node; its stream is to be closed.
    pub(super) fn forget_session(
        &mut self,
        node: &mut Node,
        session: SessionId,
        actions: &mut Actions,
    ) -> Option<SessionInfo> {
        let info = self.sessions.remove(&session)?;
        self.unpair(session, &info);
        node.session_closed(session);
        actions.detach.push(session);
        Some(info)
    }

    fn unpair(&mut self, session: SessionId, info: &SessionInfo) {
        if let Some(vault) = info.vault
            && self.by_pair.get(&(info.device, vault)) == Some(&session)
        {
            self.by_pair.remove(&(info.device, vault));
        }
    }

    /// A refused pair cools down; a peer we refused is hung up on soon (banned too when
    /// it broke the protocol).
    fn after_refusal(&mut self, at: At, info: &SessionInfo, by_us: bool, code: RefuseCode) {
        if let Some(vault) = info.vault {
            self.cooldown.insert(
                (info.device, vault),
                at.now_ms + self.config.refused_cooldown_ms,
            );
        }
        if by_us {
            if code == RefuseCode::ProtocolViolation {
                self.banned
                    .insert(info.device, at.now_ms + self.config.ban_ms);
            }
            self.hang_up
                .push((info.device, at.now_ms + self.config.hang_up_after_ms));
        }
    }

    /// Takes a node output into account (closed sessions, events) and queues it.
    pub(super) fn digest(&mut self, node: &Node, at: At, mut out: Output, actions: &mut Actions) {
        // Rejections name their session, which may close in this same output.
        let closing: Vec<(SessionId, DeviceId)> = out
            .closed
            .iter()
            .filter_map(|(s, _)| Some((*s, self.sessions.get(s)?.device)))
            .collect();
        for (session, reason) in std::mem::take(&mut out.closed) {
            let Some(info) = self.sessions.remove(&session) else {
                continue;
            };
            self.unpair(session, &info);
            actions.detach.push(session);
            self.after_refusal(at, &info, reason.by_us, reason.code);
            if let (Some(join), Some(vault)) = (info.join, info.vault) {
                self.join_refused(join, vault, &reason, actions);
            }
            self.sessions_dirty = true;
            actions.events.push(PeeringEvent::SessionRefused {
                peer: info.device,
                vault: info.vault,
                reason,
            });
        }
        let mut events = Vec::with_capacity(out.events.len());
        for event in std::mem::take(&mut out.events) {
            match event {
                Event::MembershipChanged { .. } => {
                    self.sessions_dirty = true;
                    self.next_discovery_ms = at.now_ms; // a new member may wait at a relay
                    events.push(event);
                }
                Event::VaultJoined { vault } => {
                    self.sessions_dirty = true;
                    self.next_discovery_ms = at.now_ms; // register and look members up now
                    self.finish_joins_of(vault, actions);
                    events.push(event);
                }
                Event::SessionReady {
                    session,
                    vault,
                    peer,
                } => {
                    if let Some(info) = self.sessions.get_mut(&session) {
                        info.ready = true;
                    }
                    self.record_sync(node, at, peer, vault, actions);
                    events.push(event);
                }
                Event::Rejected { session, error } => {
                    let peer = self
                        .peer_of_session(session)
                        .or_else(|| closing.iter().find(|(s, _)| *s == session).map(|(_, d)| *d));
                    if let Some(peer) = peer {
                        actions.events.push(PeeringEvent::Rejected { peer, error });
                    }
                }
                other => events.push(other),
            }
        }
        out.events = events;
        actions.out.extend(out);
    }
}
