//! The native runtime's answers on the control socket: `status`, `dial`, `join`,
//! `accept`, `decline`.

use super::*;
use crate::views::OfferSummary;

impl NativeEngine {
    pub(super) fn on_control(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Status => {
                let _ = reply.send(Reply::Status(Box::new(self.status())));
            }
            Request::Dial { address } => {
                self.expect_offers_from(&address);
                self.dial_address(address);
                let _ = reply.send(Reply::Dialed);
            }
            Request::Join { code } => self.join(code, Some(reply)),
            Request::Accept { vault } => {
                let answer = match self.core.node.accept_offer(vault, now_ms()) {
                    Ok(out) => match self.take_output(out) {
                        Ok(()) => Reply::joined(vault, false),
                        Err(e) => Reply::Failed(e.to_string()),
                    },
                    Err(e) => Reply::Failed(e.to_string()),
                };
                let _ = reply.send(answer);
            }
            Request::Decline { vault } => {
                self.core.node.decline_offer(vault);
                let _ = reply.send(Reply::Status(Box::new(self.status())));
            }
        }
    }

    /// What `nexus status` shows.
    pub fn status(&self) -> Status {
        let me = self.core.node.device_id();
        let local = *self.swarm.local_peer_id();
        let sessions: Vec<(SessionId, DeviceId, Option<VaultId>, bool)> =
            self.core.node.sessions().collect();
        let vaults = self.core.node.vaults().map(|v| {
            let summary = VaultSummary::of(v, &me);
            let sessions = sessions
                .iter()
                .filter(|(_, _, vault, _)| *vault == Some(v.id()));
            VaultStatus {
                member: Some(summary.role.is_some()),
                sessions: sessions
                    .map(|&(_, device_id, _, syncing)| SessionStatus { device_id, syncing })
                    .collect(),
                ..VaultStatus::stored(summary, self.core.peering.peers().values())
            }
        });
        let peers = self.core.peering.peers().values().map(|r| PeerStatus {
            relay: Some(self.core.peering.is_relay(&r.device)),
            connected: self.core.peering.is_connected(&r.device),
            ..PeerStatus::stored(r)
        });
        let with_id = |a: &Multiaddr| with_local_peer(a, local);
        Status {
            running: true,
            device_id: me,
            home: Some(self.home.clone()),
            listening: self.listening.iter().map(with_id).collect(),
            connected: self.core.peering.connected().copied().collect(),
            vaults: vaults.collect(),
            peers: peers.collect(),
            offers: OfferSummary::all_of(&self.core.node),
        }
    }
}
