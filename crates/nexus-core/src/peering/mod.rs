//! The peering supervisor: which sessions to open and close, whom to dial and when.
//!
//! A [`Node`] syncs whatever sessions it is given; [`Peering`] decides them, the same
//! way on every target. It keeps one session per (peer, vault) for every vault this
//! device shares with a connected peer, and one per pending invite with every connected
//! device that is not a relay. When both sides open a session for the same pair at
//! once, the session opened by the smaller device id wins on both sides. A refused pair
//! waits out a cooldown; a peer that broke the protocol is banned for a while and hung
//! up on; a session that does not finish its handshake in time is refused. Known peers
//! are redialed with capped exponential backoff (jitter from the caller), at once when
//! the network comes back; a device found on the local network is dialed when found and
//! at most [`NEIGHBOUR_DIALS`] times in all; a circuit address is dialed once its relay's connection is
//! up. Relays are never hung up on: their connection holds this device's reservation.
//!
//! Like the node it is sans-IO: every input comes with the time and a random number
//! from the caller ([`At`]), the node it steers is passed in, and what to do comes back
//! as [`Actions`] (their doc gives the order to carry them out in). The engine sleeps
//! until the earlier of [`Peering::poll_timeout`] and [`Node::poll_timeout`], then hands
//! in [`Input::Tick`].
//!
//! ```
//! use nexus_core::peering::{At, Input, Peering, PeeringConfig};
//! use nexus_core::{ActorId, DeviceKey, Node, NodeConfig};
//!
//! let key = DeviceKey::from_secret_bytes(&[1; 32]);
//! let other = DeviceKey::from_secret_bytes(&[2; 32]).device_id();
//! let mut node = Node::new(key, ActorId::random(), NodeConfig::new());
//! let mut peering = Peering::new(node.device_id(), PeeringConfig::new());
//! let at = At { now_ms: 1_000, random: 7 };
//! // A known peer drops: it is redialed after a backoff.
//! let address = format!("/ip4/127.0.0.1/tcp/4001/p2p/{other}");
//! let _ = peering.handle(&mut node, at, Input::Dial { address });
//! let _ = peering.handle(&mut node, at, Input::Connected { device: other, dialed: None });
//! let _ = peering.handle(&mut node, at, Input::Disconnected { device: other });
//! let due = peering.poll_timeout().unwrap();
//! assert!(due > 1_000);
//! let actions = peering.handle(&mut node, At { now_ms: due, random: 7 }, Input::Tick);
//! assert_eq!(actions.dial[0].device, Some(other));
//! ```

mod address;
mod config;
mod dialing;
mod io;
mod joins;
mod sessions;
mod timers;

use std::collections::{BTreeMap, BTreeSet};

pub use address::AddressParts;
pub use config::PeeringConfig;
pub use io::{Actions, Dial, InboundId, Input, JoinId, JoinOutcome, Open, OpenId, PeeringEvent};

use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::invite_code::InviteCode;
use crate::node::{Node, SessionId};
use crate::peers::PeerRecord;

/// Devices found on the local network ([`Input::Discovered`]) kept to dial again; more
/// are dialed once and forgotten, so a LAN full of strangers costs a bounded table.
pub const MAX_NEIGHBOURS: usize = 64;

/// Dials in all of one device found on the local network until a connection comes up:
/// the first when found, the rest with backoff after failures.
pub const NEIGHBOUR_DIALS: u32 = 4;

/// A device found on the local network, not (yet) in the peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Neighbour {
    addresses: Vec<String>,
    failures: u32,
}

/// The time and a random number, from the caller, for one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Any random number (the redial jitter is drawn from it).
    pub random: u64,
}

/// What the supervisor knows of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionInfo {
    device: DeviceId,
    /// Known once the peer's first message named it, for an inbound session.
    vault: Option<VaultId>,
    /// The invite it presents, for a session that joins.
    join: Option<JoinId>,
    outbound: bool,
    opened_ms: u64,
    ready: bool,
}

struct PendingJoin {
    code: InviteCode,
    deadline_ms: u64,
    last_error: Option<String>,
    /// Reported joined in the last actions; forgotten once those were carried out (the
    /// next input), or tried again if their commit failed.
    joined: bool,
}

/// The peering supervisor of one device. See the module doc.
pub struct Peering {
    config: PeeringConfig,
    me: DeviceId,
    sessions: BTreeMap<SessionId, SessionInfo>,
    by_pair: BTreeMap<(DeviceId, VaultId), SessionId>,
    opening: BTreeMap<OpenId, (DeviceId, VaultId, Option<JoinId>)>,
    next_open: u64,
    cooldown: BTreeMap<(DeviceId, VaultId), u64>,
    /// Pairs whose session's stream just ended, until when they wait (forgotten when
    /// the connection itself comes or goes).
    paused: BTreeMap<(DeviceId, VaultId), u64>,
    banned: BTreeMap<DeviceId, u64>,
    hang_up: Vec<(DeviceId, u64)>,
    connected: BTreeSet<DeviceId>,
    relays: BTreeSet<DeviceId>,
    peers: BTreeMap<DeviceId, PeerRecord>,
    identified: BTreeMap<DeviceId, Vec<String>>,
    /// Devices found on the local network, dialed again after failures.
    neighbours: BTreeMap<DeviceId, Neighbour>,
    next_dial: BTreeMap<DeviceId, u64>,
    /// Circuit addresses to dial once their relay's connection is up.
    after_relay: Vec<(DeviceId, String)>,
    joins: BTreeMap<JoinId, PendingJoin>,
    online: bool,
    holds_connections: bool,
    next_discovery_ms: u64,
    /// Something changed that may call for new sessions.
    sessions_dirty: bool,
    /// When sessions dropped after a failed commit are opened again (the next tick, on
    /// the node the engine reloaded meanwhile).
    resync_at: Option<u64>,
}

impl std::fmt::Debug for Peering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peering")
            .field("me", &self.me)
            .field("sessions", &self.sessions.len())
            .field("connected", &self.connected.len())
            .field("peers", &self.peers.len())
            .field("joins", &self.joins.len())
            .finish_non_exhaustive()
    }
}

impl Peering {
    /// A supervisor for device `me` with no peers yet.
    pub fn new(me: DeviceId, config: PeeringConfig) -> Self {
        Self {
            config,
            me,
            sessions: BTreeMap::new(),
            by_pair: BTreeMap::new(),
            opening: BTreeMap::new(),
            next_open: 0,
            cooldown: BTreeMap::new(),
            paused: BTreeMap::new(),
            banned: BTreeMap::new(),
            hang_up: Vec::new(),
            connected: BTreeSet::new(),
            relays: BTreeSet::new(),
            peers: BTreeMap::new(),
            identified: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            next_dial: BTreeMap::new(),
            after_relay: Vec::new(),
            joins: BTreeMap::new(),
            online: true,
            holds_connections: config.holds_connections,
            next_discovery_ms: 0,
            sessions_dirty: false,
            resync_at: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PeeringConfig {
        &self.config
    }

    /// Takes in the peer table read from the store at start (nothing is dialed for it
    /// until the peers are known to be reachable: see [`Input::PeerRecords`]).
    pub fn with_peer_records(mut self, records: impl IntoIterator<Item = PeerRecord>) -> Self {
        self.peers
            .extend(records.into_iter().map(|r| (r.device, r)));
        self
    }

    /// Takes in one input and returns what to do about it.
    pub fn handle(&mut self, node: &mut Node, at: At, input: Input) -> Actions {
        let mut actions = Actions::default();
        if matches!(input, Input::StorageFailed) {
            // The vault a join reported was not stored: the join goes on.
            for join in self.joins.values_mut() {
                join.joined = false;
            }
        } else {
            // The previous actions were carried out, their joins answered.
            self.joins.retain(|_, j| !j.joined);
        }
        match input {
            Input::Tick => self.on_tick(node, at, &mut actions),
            Input::Work => {
                let out = node.work(at.now_ms);
                self.digest(node, at, out, &mut actions);
            }
            Input::NodeOutput(out) => {
                self.sessions_dirty = true;
                self.digest(node, at, out, &mut actions);
            }
            Input::Connected { device, dialed } => {
                self.on_connected(at, device, dialed, &mut actions)
            }
            Input::Disconnected { device } => self.on_disconnected(at, device),
            Input::DialFailed { device } => self.on_dial_failed(at, device, &mut actions),
            Input::DialNotStarted { device } => self.on_dial_failed(at, device, &mut actions),
            Input::Dial { address } => self.dial_address(&address, &mut actions),
            Input::Discovered { device, addresses } => {
                self.on_discovered(at, device, addresses, &mut actions)
            }
            Input::Relay { device } => {
                self.relays.insert(device);
            }
            Input::Identified { device, addresses } => {
                let mut addresses = addresses;
                addresses.truncate(crate::peers::MAX_ADDRESSES);
                self.identified.insert(device, addresses);
            }
            Input::Inbound { stream, device } => {
                self.on_inbound(node, at, stream, device, &mut actions)
            }
            Input::Opened { open } => self.on_opened(node, at, open, &mut actions),
            Input::OpenFailed { open, error } => self.on_open_failed(at, open, error, &mut actions),
            Input::Frame { session, bytes } => {
                self.on_frame(node, at, session, &bytes, &mut actions)
            }
            Input::StreamEnded { session } => self.on_stream_ended(node, at, session, &mut actions),
            Input::BadFrame { session, error } => {
                self.on_bad_frame(node, at, session, error, &mut actions)
            }
            Input::Join { id, code } => self.start_join(node, at, id, code, &mut actions),
            Input::Online(online) => self.on_online(at, online, &mut actions),
            Input::HoldConnections => self.on_hold_connections(at, &mut actions),
            Input::PeerRecords(records) => self.on_peer_records(at, records),
            Input::StorageFailed => {
                let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
                for session in sessions {
                    self.forget_session(node, session, &mut actions);
                }
                self.opening.clear();
                self.resync_at = Some(at.now_ms);
            }
        }
        if self.sessions_dirty {
            self.sessions_dirty = false;
            self.ensure_sessions(node, at, &mut actions);
        }
        actions
    }

    /// The earliest time (ms) at which [`Input::Tick`] has something to do for the
    /// supervisor itself: a redial, a cooldown or ban ending, a hang-up, a handshake or
    /// invite timing out, a rendezvous renewal, sessions to open again after a failed
    /// commit. `None` when nothing is scheduled. The
    /// node's own deadlines are [`Node::poll_timeout`]'s.
    pub fn poll_timeout(&self) -> Option<u64> {
        let redials = self
            .next_dial
            .iter()
            .filter(|(device, _)| self.may_dial() && !self.connected.contains(device))
            .map(|(_, at)| *at);
        let handshakes = self
            .sessions
            .values()
            .filter(|s| !s.ready)
            .map(|s| s.opened_ms + self.config.handshake_timeout_ms + 1);
        let discovery = self
            .relays
            .iter()
            .any(|r| self.connected.contains(r))
            .then_some(self.next_discovery_ms);
        redials
            .chain(self.cooldown.values().copied())
            .chain(self.paused.values().copied())
            .chain(self.hang_up.iter().map(|(_, at)| *at))
            .chain(handshakes)
            .chain(
                self.joins
                    .values()
                    .filter(|j| !j.joined)
                    .map(|j| j.deadline_ms),
            )
            .chain(discovery)
            .chain(self.resync_at)
            .min()
    }

    /// Connected devices (relays included).
    pub fn connected(&self) -> impl Iterator<Item = &DeviceId> {
        self.connected.iter()
    }

    /// Whether `device` is connected.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.connected.contains(device)
    }

    /// Whether `device` serves as a relay.
    pub fn is_relay(&self, device: &DeviceId) -> bool {
        self.relays.contains(device)
    }

    /// Relays known.
    pub fn relays(&self) -> impl Iterator<Item = &DeviceId> {
        self.relays.iter()
    }

    /// The peer table.
    pub fn peers(&self) -> &BTreeMap<DeviceId, PeerRecord> {
        &self.peers
    }

    /// Invites being tried.
    pub fn pending_joins(&self) -> usize {
        self.joins.values().filter(|j| !j.joined).count()
    }

    /// The inviters of the invites being tried that are not connected: looked up at the
    /// relays this device uses, so that an invite without a reachable address (made
    /// before the inviter's relay slot held) still finds its inviter there.
    pub fn unconnected_inviters(&self) -> Vec<DeviceId> {
        let mut inviters: Vec<DeviceId> = self
            .joins
            .values()
            .filter(|j| !j.joined && !self.connected.contains(&j.code.inviter))
            .map(|j| j.code.inviter)
            .collect();
        inviters.sort();
        inviters.dedup();
        inviters
    }

    /// Whether this instance holds the connections and the network is up.
    pub fn may_dial(&self) -> bool {
        self.online && self.holds_connections
    }

    /// Whether the network is up (as far as the target can tell).
    pub fn online(&self) -> bool {
        self.online
    }

    /// The session of a (peer, vault) pair.
    pub fn session_of(&self, device: &DeviceId, vault: &VaultId) -> Option<SessionId> {
        self.by_pair.get(&(*device, *vault)).copied()
    }

    /// The peer of a session.
    pub fn peer_of_session(&self, session: SessionId) -> Option<DeviceId> {
        self.sessions.get(&session).map(|s| s.device)
    }

    /// Sessions with `device` (any vault, handshake finished or not).
    pub fn sessions_with(&self, device: &DeviceId) -> usize {
        self.sessions
            .values()
            .filter(|s| s.device == *device)
            .count()
    }
}
