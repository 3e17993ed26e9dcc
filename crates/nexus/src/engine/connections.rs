//! The swarm's connection events, read the same way on every target: the supervisor
//! hears of connections coming and going and of failed dials, the app of devices
//! connecting; the target then does what only it does (reserve at a relay, answer a
//! pending `connect`, tell the other tabs).

use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use nexus_core::DeviceId;
use nexus_core::peering::{Actions, Input};

use super::EngineEvent;
use super::core::Core;
use crate::p2p::{device_of, split_peer};

/// What a connection event meant, for the target's own part. (A desktop reads only
/// which peer; a browser answers pending `connect`s with the rest.)
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) enum Connection {
    /// A connection to a device came up (`first`: the first one to it).
    Up {
        peer: PeerId,
        device: DeviceId,
        connection: ConnectionId,
        first: bool,
        /// The address this side dialed (without `/p2p/<peer>`), if it dialed.
        dialed: Option<Multiaddr>,
    },
    /// The last connection to a device went down.
    Down { peer: PeerId },
    /// A dial failed.
    Failed {
        peer: Option<PeerId>,
        connection: ConnectionId,
        reason: String,
    },
}

/// The supervisor's actions to carry out, what to report, and what happened.
pub(crate) struct ConnectionNews {
    pub(crate) actions: Actions,
    pub(crate) events: Vec<EngineEvent>,
    /// `None` when the target has nothing more to do (a banned peer was hung up on).
    pub(crate) connection: Option<Connection>,
}

impl Core {
    /// Reads a connection event (`None` for any other event). A peer that is not a Nexus
    /// device (not an Ed25519 key) is hung up on.
    pub(crate) fn connection_news<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        event: &SwarmEvent<B::ToSwarm>,
    ) -> Option<ConnectionNews> {
        let mut events = Vec::new();
        let (actions, connection) = match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let Some(device) = device_of(peer_id) else {
                    let _ = swarm.disconnect_peer_id(*peer_id);
                    return None;
                };
                let first = !self.peering.is_connected(&device);
                let dialed = endpoint
                    .is_dialer()
                    .then(|| split_peer(endpoint.get_remote_address()).0);
                let actions = self.input(Input::Connected {
                    device,
                    dialed: dialed.as_ref().map(Multiaddr::to_string),
                });
                if !self.peering.is_connected(&device) {
                    // Banned: the supervisor hangs up.
                    (actions, None)
                } else {
                    if first {
                        events.push(EngineEvent::Connected(device));
                    }
                    let up = Connection::Up {
                        peer: *peer_id,
                        device,
                        connection: *connection_id,
                        first,
                        dialed,
                    };
                    (actions, Some(up))
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                let device = device_of(peer_id)?;
                if self.peering.is_connected(&device) {
                    events.push(EngineEvent::Disconnected(device));
                }
                let actions = self.input(Input::Disconnected { device });
                (actions, Some(Connection::Down { peer: *peer_id }))
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                let reason = error.to_string();
                events.push(EngineEvent::Problem(format!(
                    "cannot reach {}: {reason}",
                    peer_id.map_or_else(|| "a peer".to_owned(), |p| p.to_string())
                )));
                let actions = match peer_id.as_ref().and_then(device_of) {
                    Some(device) => self.input(Input::DialFailed { device }),
                    None => Actions::default(),
                };
                let failed = Connection::Failed {
                    peer: *peer_id,
                    connection: *connection_id,
                    reason,
                };
                (actions, Some(failed))
            }
            _ => return None,
        };
        Some(ConnectionNews {
            actions,
            events,
            connection,
        })
    }
}
