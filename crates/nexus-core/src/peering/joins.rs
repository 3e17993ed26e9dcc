//! Invites being tried: started, refused, finished, timed out.

use super::io::{Actions, JoinOutcome, PeeringEvent};
use super::{At, JoinId, Peering, PendingJoin};
use crate::ids::VaultId;
use crate::invite_code::InviteCode;
use crate::node::{CloseReason, Node};
use crate::protocol::RefuseCode;

impl Peering {
    pub(super) fn start_join(
        &mut self,
        node: &Node,
        at: At,
        id: JoinId,
        code: InviteCode,
        actions: &mut Actions,
    ) {
        if node.vault(&code.vault).is_some() {
            actions.events.push(PeeringEvent::JoinFinished {
                id,
                vault: code.vault,
                outcome: JoinOutcome::AlreadyMember,
            });
            return;
        }
        for address in &code.addresses {
            self.dial_address(address, actions);
        }
        if self.relays.iter().any(|r| self.connected.contains(r)) {
            // Look the inviter up at the relays now, not at the next round.
            actions.rendezvous = true;
        }
        self.joins.insert(
            id,
            PendingJoin {
                code,
                deadline_ms: at.now_ms + self.config.join_timeout_ms,
                last_error: None,
                joined: false,
            },
        );
        self.sessions_dirty = true;
    }

    /// A member refused the invite: its reason is what the join reports if nobody
    /// accepts; a member that judged the invite itself bad ends the join.
    pub(super) fn join_refused(
        &mut self,
        id: JoinId,
        vault: VaultId,
        reason: &CloseReason,
        actions: &mut Actions,
    ) {
        let Some(join) = self.joins.get_mut(&id) else {
            return;
        };
        join.last_error = Some(reason.reason.clone());
        if reason.code == RefuseCode::BadInvite {
            self.joins.remove(&id);
            actions.events.push(PeeringEvent::JoinFinished {
                id,
                vault,
                outcome: JoinOutcome::Failed(reason.reason.clone()),
            });
        }
    }

    pub(super) fn finish_joins_of(&mut self, vault: VaultId, actions: &mut Actions) {
        for (id, join) in &mut self.joins {
            if join.code.vault != vault || join.joined {
                continue;
            }
            join.joined = true;
            let id = *id;
            actions.events.push(PeeringEvent::JoinFinished {
                id,
                vault,
                outcome: JoinOutcome::Joined,
            });
        }
    }

    pub(super) fn expire_joins(&mut self, at: At, actions: &mut Actions) {
        let expired: Vec<JoinId> = self
            .joins
            .iter()
            .filter(|(_, j)| !j.joined && j.deadline_ms <= at.now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(join) = self.joins.remove(&id) else {
                continue;
            };
            let reason = join.last_error.unwrap_or_else(|| {
                "no member of the vault could be reached before the invite timed out".into()
            });
            actions.events.push(PeeringEvent::JoinFinished {
                id,
                vault: join.code.vault,
                outcome: JoinOutcome::Failed(reason),
            });
        }
    }
}
