//! What [`super::Input::Tick`] does: the node's timers, then the supervisor's deadlines.

use super::io::Actions;
use super::{At, Peering};
use crate::node::Node;

impl Peering {
    pub(super) fn on_tick(&mut self, node: &mut Node, at: At, actions: &mut Actions) {
        let out = node.tick(at.now_ms);
        self.digest(node, at, out, actions);
        self.redial_due(at, actions);
        self.expire_joins(at, actions);
        self.hang_up_due(at, actions);
        self.close_stalled_handshakes(node, at, actions);
        self.banned.retain(|_, until| *until > at.now_ms);
        if self.resync_at.is_some_and(|when| when <= at.now_ms) {
            self.resync_at = None;
            self.sessions_dirty = true;
        }
        if self
            .cooldown
            .values()
            .chain(self.paused.values())
            .any(|until| *until <= at.now_ms)
        {
            self.sessions_dirty = true;
        }
        if self.next_discovery_ms <= at.now_ms
            && self.relays.iter().any(|r| self.connected.contains(r))
        {
            self.next_discovery_ms = at.now_ms + self.config.discovery_interval_ms;
            actions.rendezvous = true;
        }
    }
}
