//! The browser peer runtime: one [`nexus_core::Node`] on an [`IdbStore`], driven by the
//! browser swarm on the page's event loop.
//!
//! It follows the native runtime's rules: every `/nexus/sync/1` stream is one session of
//! the node; what the node returns is carried out in order (commit to IndexedDB and wait
//! for the transaction to complete, then send, then close, then report), so nothing a
//! peer hears about can be lost by a reload. A browser only dials: it reaches native
//! peers and relays over WebSocket or WebRTC-direct, and other browsers through a relay's
//! circuit. A peer that announces the relay hop protocol is used as a relay: the browser
//! reserves a slot there and meets its vaults' members at the relay's rendezvous point.
//! Peers it was connected to are redialled with capped exponential backoff, and at once
//! when the browser reports that the network is back (`online`).
//!
//! The app talks to the runtime through a [`WebHandle`]: each call is a command the
//! runtime carries out between network events, so the node is never touched from two
//! places.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{AbortHandle, Abortable, LocalBoxFuture};
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, rendezvous};
use nexus_core::node::{CloseReason, Event, Node, NodeConfig, NodeLoader, Output, SessionId};
use nexus_core::peers::{Backoff, PeerRecord};
use nexus_core::protocol::{Message, RefuseCode};
use nexus_core::{
    ActorId, DeviceId, DeviceKey, DocId, InviteCode, Touched, Vault, VaultError, VaultId,
};
use thiserror::Error;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use super::idb::{IdbError, IdbStore};
use super::swarm::{WebBehaviour, WebBehaviourEvent, build_web_swarm};
use super::tabs::{TabMessage, Tabs};
use crate::frames::{FrameError, read_frame, write_frame};
use crate::p2p::{RELAY_HOP_PROTOCOL, SYNC_PROTOCOL, device_of, peer_of, relay_part, split_peer};

/// How often the node ticks (retries, reconciliation, handshake timeouts).
const TICK: Duration = Duration::from_millis(100);
/// Failed reads of another tab's commit in a row before they are given up (the tab then
/// shows what it has until it reloads, and says so).
const MAX_TAB_READ_FAILURES: u32 = 3;
/// Signatures of a big snapshot checked per turn of the page's event loop (about 10 ms
/// of work in a release build), so that a fresh tab receiving a big document stays
/// responsive.
pub const WEB_VERIFY_SLICE: usize = 500;
/// Most changes a tab takes in one snapshot (about 35 ms to load in a release build on
/// a slow machine). Loading a snapshot cannot be cut up, so a bigger document reaches a
/// fresh tab as a snapshot of its first changes and the rest as changes, which are
/// checked and applied [`WEB_VERIFY_SLICE`] at a time.
pub const WEB_SNAPSHOT_MAX_CHANGES: usize = 4096;
/// How long opening reads documents before it lets the page run (ms): a profile with
/// thousands of documents opens over several turns of the event loop, not one freeze.
const LOAD_SLICE_MS: u64 = 30;
/// How long a refused session waits before it is tried again.
const REFUSED_COOLDOWN_MS: u64 = 30_000;
/// How long a peer that broke the protocol is kept away.
const BAN_MS: u64 = 60_000;
/// How long a session may take to finish its handshake.
const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// How long `join` tries an invite.
pub const WEB_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `connect` waits for the connection.
pub const WEB_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often registrations and lookups at relays are renewed.
const DISCOVERY_INTERVAL_MS: u64 = 10_000;

/// What the browser runtime reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebEvent {
    /// A connection to a device (or relay) came up.
    Connected(DeviceId),
    /// The last connection to a device went down.
    Disconnected(DeviceId),
    /// A relay holds a slot for this browser: others can reach it there.
    Reachable(Multiaddr),
    /// A vault session finished its handshake.
    SessionReady {
        /// The vault.
        vault: VaultId,
        /// The peer.
        peer: DeviceId,
    },
    /// A session ended with a refusal (either side).
    SessionRefused {
        /// The peer.
        peer: DeviceId,
        /// Why.
        reason: CloseReason,
    },
    /// A document changed because of a peer.
    DocChanged {
        /// The vault.
        vault: VaultId,
        /// The document.
        doc: DocId,
    },
    /// The vault's membership changed (through a peer or here).
    MembershipChanged(VaultId),
    /// This device now holds a vault it did not have.
    VaultJoined(VaultId),
    /// A peer's changes were rejected.
    Rejected {
        /// The peer.
        peer: DeviceId,
        /// Why.
        error: String,
    },
    /// The browser went offline (`false`) or came back (`true`).
    Online(bool),
    /// This tab now holds the profile's network connections (the previous leader tab
    /// closed, or this is the first tab).
    Leader,
    /// Something went wrong that the runtime recovered from.
    Problem(String),
}

/// Why a browser peer call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WebError {
    /// IndexedDB failed.
    #[error(transparent)]
    Storage(#[from] IdbError),
    /// The vaults in IndexedDB could not be loaded.
    #[error("loading the vaults from IndexedDB: {0}")]
    Load(String),
    /// The swarm could not be built.
    #[error("setting up the network: {0}")]
    Network(String),
    /// A vault operation was refused (unknown vault, not an admin, …).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// An address could not be dialled or the connection failed.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// No member accepted the invite in time.
    #[error("joining the vault failed: {0}")]
    Join(String),
    /// A document edit could not be applied.
    #[error("the edit was refused: {0}")]
    Edit(String),
    /// The runtime has stopped (closed, or the page is going away).
    #[error("the Nexus peer has stopped")]
    Stopped,
}

/// One row of [`WebStatus::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPeerStatus {
    /// The device.
    pub device: DeviceId,
    /// Whether it is connected now.
    pub connected: bool,
    /// Whether it serves as a relay.
    pub relay: bool,
    /// Vaults with a session past its handshake.
    pub syncing: Vec<VaultId>,
}

/// What the runtime is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebStatus {
    /// This device.
    pub device: DeviceId,
    /// Whether the browser says it is online.
    pub online: bool,
    /// Whether this tab holds the profile's connections (otherwise another tab does, and
    /// `connected` below is what that tab reported).
    pub leader: bool,
    /// Known peers.
    pub peers: Vec<WebPeerStatus>,
    /// Addresses at relays where this browser can be reached.
    pub reachable_at: Vec<Multiaddr>,
    /// Invites being tried.
    pub joining: usize,
}

type Command = Box<dyn for<'a> FnOnce(&'a mut WebPeer) -> LocalBoxFuture<'a, ()>>;

enum Internal {
    Frame(SessionId, Vec<u8>),
    Closed(SessionId),
    BadFrame(SessionId, String),
    Opened {
        peer: PeerId,
        vault: VaultId,
        join: Option<Box<InviteCode>>,
        stream: libp2p::Stream,
    },
    OpenFailed {
        peer: PeerId,
        vault: VaultId,
        error: String,
    },
    Online(bool),
    Tab(TabMessage),
    Leader,
}

struct Link {
    peer: PeerId,
    device: DeviceId,
    vault: Option<VaultId>,
    joining: bool,
    outbound: bool,
    opened_ms: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct PendingJoin {
    code: InviteCode,
    deadline_ms: u64,
    last_error: Option<String>,
    reply: Option<oneshot::Sender<Result<VaultId, WebError>>>,
}

struct PendingConnect {
    peer: Option<PeerId>,
    /// The direct dial's connection, whose failure fails the connect (a circuit's is
    /// matched by `peer`).
    connection: Option<ConnectionId>,
    address: Multiaddr,
    deadline_ms: u64,
    reply: oneshot::Sender<Result<DeviceId, WebError>>,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Builds the node from what IndexedDB holds, [`LOAD_SLICE_MS`] of documents at a time,
/// giving the page a turn in between. Each open (each tab) writes with its own
/// Automerge actor.
async fn load_node(store: &IdbStore, key: DeviceKey, config: NodeConfig) -> Result<Node, WebError> {
    let failed = |e: nexus_core::node::NodeLoadError<_>| WebError::Load(e.to_string());
    let cache = store.cache();
    let mut loader = NodeLoader::new(cache, key, ActorId::random(), config).map_err(failed)?;
    loop {
        let started = now_ms();
        while now_ms().saturating_sub(started) < LOAD_SLICE_MS {
            if loader.step(cache, 8).map_err(failed)? {
                return loader.finish(cache).map_err(failed);
            }
        }
        crate::rt::yield_to_page().await;
    }
}

fn jitter() -> u64 {
    nexus_core::random_bytes::<8>().map_or(0, u64::from_le_bytes)
}

/// A running browser peer; the app holds a [`WebHandle`] to it.
pub struct WebPeer {
    node: Node,
    store: IdbStore,
    swarm: Swarm<WebBehaviour>,
    control: libp2p_stream::Control,
    incoming: futures::stream::Fuse<libp2p_stream::IncomingStreams>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    listeners: Vec<mpsc::UnboundedSender<WebEvent>>,
    links: HashMap<SessionId, Link>,
    by_pair: HashMap<(PeerId, VaultId), SessionId>,
    opening: HashSet<(PeerId, VaultId)>,
    cooldown: HashMap<(PeerId, VaultId), u64>,
    banned: HashMap<PeerId, u64>,
    disconnect_at: Vec<(PeerId, u64)>,
    connected: HashSet<PeerId>,
    /// The address each connection we dialled went to.
    dialled: HashMap<PeerId, Multiaddr>,
    peers: BTreeMap<DeviceId, PeerRecord>,
    next_dial: HashMap<PeerId, u64>,
    joins: Vec<PendingJoin>,
    connects: Vec<PendingConnect>,
    backoff: Backoff,
    relays: HashSet<PeerId>,
    reserved: HashSet<PeerId>,
    registrable: HashSet<PeerId>,
    reachable_at: Vec<Multiaddr>,
    after_relay: Vec<(PeerId, Multiaddr)>,
    last_discovery_ms: u64,
    online: bool,
    stopping: bool,
    _online_listeners: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    /// This tab's part in the profile's tab coordination.
    tabs: Option<Tabs>,
    /// Whether this tab holds the network connections.
    leader: bool,
    /// What other tabs committed and this tab has not read back yet.
    from_other_tabs: Vec<Touched>,
    /// Failed attempts in a row at reading what other tabs committed.
    tab_read_failures: u32,
    /// What the leader tab last reported as connected (in follower tabs).
    leader_peers: BTreeSet<DeviceId>,
}

/// The app's side of a running [`WebPeer`]. Cheap to clone; every call waits for the
/// runtime to carry it out.
#[derive(Clone)]
pub struct WebHandle {
    device: DeviceId,
    commands: mpsc::UnboundedSender<Command>,
}

impl WebPeer {
    /// Opens (or creates) the IndexedDB database `name`, loads its device key and vaults,
    /// builds the swarm and starts the runtime on the page's event loop.
    /// A `config` without a [`NodeConfig::verify_slice`] gets [`WEB_VERIFY_SLICE`], and
    /// one without a [`NodeConfig::snapshot_max_changes`] gets
    /// [`WEB_SNAPSHOT_MAX_CHANGES`].
    pub async fn start(name: &str, mut config: NodeConfig) -> Result<WebHandle, WebError> {
        if config.verify_slice == 0 {
            config.verify_slice = WEB_VERIFY_SLICE;
        }
        if config.snapshot_max_changes == 0 {
            config.snapshot_max_changes = WEB_SNAPSHOT_MAX_CHANGES;
        }
        // The tab channel is joined before IndexedDB is read: what other tabs commit
        // meanwhile waits in the queue (taken in twice if the read saw it too, which
        // changes nothing) instead of being missed.
        let (internal_tx, internal_rx) = mpsc::unbounded();
        let (tabs, has_locks) = {
            let messages = internal_tx.clone();
            let leader = internal_tx.clone();
            Tabs::join(
                name,
                move |message| {
                    let _ = messages.unbounded_send(Internal::Tab(message));
                },
                move || {
                    let _ = leader.unbounded_send(Internal::Leader);
                },
            )
        };
        let mut store = IdbStore::open(name).await?;
        let key = store.load_or_create_device_key().await?;
        let node = load_node(&store, key.clone(), config).await?;
        let (records, _unreadable) =
            PeerRecord::load_all(store.cache()).map_err(|e| WebError::Load(e.to_string()))?;
        let swarm = build_web_swarm(&key).map_err(WebError::Network)?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(SYNC_PROTOCOL)
            .map_err(|_| WebError::Network("the sync protocol was registered twice".into()))?;
        let (commands_tx, commands_rx) = mpsc::unbounded();
        let online_listeners = watch_online(&internal_tx);
        if !has_locks {
            // Without Web Locks there is no way to agree on a leader: this tab leads.
            let _ = internal_tx.unbounded_send(Internal::Leader);
        }
        let online = navigator_online();
        let device = node.device_id();
        let peer = Self {
            node,
            store,
            swarm,
            control,
            incoming: incoming.fuse(),
            internal_tx,
            internal_rx,
            listeners: Vec::new(),
            links: HashMap::new(),
            by_pair: HashMap::new(),
            opening: HashSet::new(),
            cooldown: HashMap::new(),
            banned: HashMap::new(),
            disconnect_at: Vec::new(),
            connected: HashSet::new(),
            dialled: HashMap::new(),
            peers: records.into_iter().map(|r| (r.device, r)).collect(),
            next_dial: HashMap::new(),
            joins: Vec::new(),
            connects: Vec::new(),
            backoff: Backoff::new(),
            relays: HashSet::new(),
            reserved: HashSet::new(),
            registrable: HashSet::new(),
            reachable_at: Vec::new(),
            after_relay: Vec::new(),
            last_discovery_ms: 0,
            online,
            stopping: false,
            _online_listeners: online_listeners,
            tabs: Some(tabs),
            leader: false,
            from_other_tabs: Vec::new(),
            tab_read_failures: 0,
            leader_peers: BTreeSet::new(),
        };
        crate::rt::spawn(peer.run(commands_rx));
        Ok(WebHandle {
            device,
            commands: commands_tx,
        })
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut ticker = crate::rt::Ticker::new(TICK);
        let mut last_ensure = 0u64;
        while !self.stopping {
            // Pending node work (a big snapshot being checked) runs one slice per turn of
            // the event loop, between network events and the page's own work.
            let mut work = if self.node.has_work() {
                crate::rt::yield_to_page().boxed_local().fuse()
            } else {
                futures::future::Fuse::terminated()
            };
            futures::select! {
                () = work => {
                    let out = self.node.work(now_ms());
                    let _ = self.carry_out(out).await;
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                internal = self.internal_rx.select_next_some() => self.on_internal(internal).await,
                incoming = self.incoming.next() => {
                    if let Some((peer, stream)) = incoming {
                        self.on_inbound(peer, stream);
                    }
                }
                command = commands.next() => match command {
                    Some(command) => command(&mut self).await,
                    // Every handle is gone: nobody can use this peer any more.
                    None => self.stopping = true,
                },
                () = ticker.tick().fuse() => {
                    if !self.from_other_tabs.is_empty() {
                        self.read_other_tabs_changes().await;
                    }
                    let now = now_ms();
                    let out = self.node.tick(now);
                    let _ = self.carry_out(out).await;
                    self.redial(now);
                    self.finish_joins_and_connects(now);
                    self.disconnect_due(now);
                    self.close_stalled_handshakes(now);
                    if now.saturating_sub(last_ensure) >= 1_000 {
                        last_ensure = now;
                        self.ensure_sessions();
                    }
                    if now.saturating_sub(self.last_discovery_ms) >= DISCOVERY_INTERVAL_MS {
                        self.last_discovery_ms = now;
                        self.rendezvous_round();
                    }
                }
            }
        }
        self.links.clear();
        for join in self.joins.drain(..) {
            if let Some(reply) = join.reply {
                let _ = reply.send(Err(WebError::Stopped));
            }
        }
        for connect in self.connects.drain(..) {
            let _ = connect.reply.send(Err(WebError::Stopped));
        }
        // Hands leadership to the next tab.
        self.tabs = None;
        self.store.close();
    }

    fn emit(&mut self, event: WebEvent) {
        self.listeners
            .retain(|listener| listener.unbounded_send(event.clone()).is_ok());
    }

    // ---- the swarm ----------------------------------------------------------------------

    /// Dials `address` (through its relay first, for a circuit address). Returns the
    /// connection of a direct dial.
    fn dial_address(&mut self, address: Multiaddr) -> Result<Option<ConnectionId>, String> {
        let (bare, peer) = split_peer(&address);
        if let Some(peer) = peer {
            if peer == *self.swarm.local_peer_id() {
                return Err("that is this device's own address".into());
            }
            if let Some(device) = device_of(&peer) {
                let record = self
                    .peers
                    .entry(device)
                    .or_insert_with(|| PeerRecord::new(device));
                record.add_address(&bare.to_string());
            }
            self.swarm.add_peer_address(peer, bare);
        }
        if let Some(relay) = crate::p2p::relay_of(&address)
            && !self.connected.contains(&relay)
        {
            // The relay connection must be up before the circuit can be dialled.
            self.swarm
                .dial(relay_part(&address))
                .map_err(|e| e.to_string())?;
            if !self.after_relay.iter().any(|(_, a)| *a == address) {
                self.after_relay.push((relay, address));
            }
            return Ok(None);
        }
        let opts = DialOpts::from(address);
        let connection = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| e.to_string())?;
        Ok(Some(connection))
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<WebBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. }
                if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
            {
                self.swarm.add_external_address(address.clone());
                let relay = address.iter().find_map(|p| match p {
                    Protocol::P2p(peer) if self.relays.contains(&peer) => Some(peer),
                    _ => None,
                });
                if let Some(relay) = relay {
                    self.registrable.insert(relay);
                    self.register_at(relay);
                }
                let local = *self.swarm.local_peer_id();
                let full = if address.iter().last() == Some(Protocol::P2p(local)) {
                    address
                } else {
                    address.with(Protocol::P2p(local))
                };
                self.reachable_at.push(full.clone());
                self.emit(WebEvent::Reachable(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.reachable_at
                    .retain(|a| !a.to_string().starts_with(&address.to_string()));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if self
                    .banned
                    .get(&peer_id)
                    .is_some_and(|until| *until > now_ms())
                {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let Some(device) = device_of(&peer_id) else {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                self.next_dial.remove(&peer_id);
                if endpoint.is_dialer() {
                    let (bare, _) = split_peer(endpoint.get_remote_address());
                    if !bare.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                        self.dialled.insert(peer_id, bare.clone());
                    }
                    let record = self
                        .peers
                        .entry(device)
                        .or_insert_with(|| PeerRecord::new(device));
                    record.add_address(&bare.to_string());
                }
                if let Some(record) = self.peers.get_mut(&device) {
                    record.failures = 0;
                    record.last_seen_ms = now_ms();
                    let batch = record.to_batch();
                    self.commit_quietly(batch).await;
                }
                if self.connected.insert(peer_id) {
                    self.emit(WebEvent::Connected(device));
                    self.tell_tabs_peers();
                }
                let (now_dialable, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.after_relay)
                        .into_iter()
                        .partition(|(relay, _)| *relay == peer_id);
                self.after_relay = waiting;
                for (_, address) in now_dialable {
                    if let Err(e) = self.swarm.dial(address.clone()) {
                        self.emit(WebEvent::Problem(format!("dialing {address}: {e}")));
                    }
                }
                let connects = std::mem::take(&mut self.connects);
                for connect in connects {
                    let ours = match (connect.peer, connect.connection) {
                        (Some(p), _) => p == peer_id,
                        (None, Some(c)) => c == connection_id,
                        (None, None) => true,
                    };
                    if ours {
                        let _ = connect.reply.send(Ok(device));
                    } else {
                        self.connects.push(connect);
                    }
                }
                self.ensure_sessions();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.connected.remove(&peer_id) => {
                if let Some(device) = device_of(&peer_id) {
                    self.emit(WebEvent::Disconnected(device));
                }
                self.tell_tabs_peers();
                if self.reserved.remove(&peer_id) {
                    let prefix = format!("/p2p/{peer_id}/p2p-circuit");
                    self.reachable_at
                        .retain(|a| !a.to_string().contains(&prefix));
                }
                self.registrable.remove(&peer_id);
                self.schedule_redial(peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                let reason = error.to_string();
                if let Some(peer_id) = peer_id {
                    if let Some(device) = device_of(&peer_id)
                        && let Some(record) = self.peers.get_mut(&device)
                    {
                        record.failures = record.failures.saturating_add(1);
                        let batch = record.to_batch();
                        self.commit_quietly(batch).await;
                    }
                    self.schedule_redial(peer_id);
                }
                let connects = std::mem::take(&mut self.connects);
                for connect in connects {
                    if connect.connection == Some(connection_id)
                        || (peer_id.is_some() && connect.peer == peer_id)
                    {
                        let _ = connect.reply.send(Err(WebError::Connect {
                            address: connect.address.to_string(),
                            reason: reason.clone(),
                        }));
                    } else {
                        self.connects.push(connect);
                    }
                }
                self.emit(WebEvent::Problem(format!(
                    "cannot reach {}: {reason}",
                    peer_id.map_or_else(|| "a peer".to_owned(), |p| p.to_string())
                )));
            }
            SwarmEvent::Behaviour(WebBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let is_relay = info
                    .protocols
                    .iter()
                    .any(|p| p.as_ref() == RELAY_HOP_PROTOCOL);
                if is_relay && self.relays.insert(peer_id) {
                    self.use_relay(peer_id);
                }
            }
            SwarmEvent::Behaviour(WebBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered { registrations, .. },
            )) => {
                let me = *self.swarm.local_peer_id();
                for registration in registrations {
                    let peer = registration.record.peer_id();
                    if peer == me || self.connected.contains(&peer) {
                        continue;
                    }
                    // A browser can only dial through circuits and browser transports.
                    let addresses: Vec<Multiaddr> = registration
                        .record
                        .addresses()
                        .iter()
                        .filter(|a| a.iter().any(|p| matches!(p, Protocol::P2pCircuit)))
                        .cloned()
                        .collect();
                    if addresses.is_empty() {
                        continue;
                    }
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addresses)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            SwarmEvent::Behaviour(WebBehaviourEvent::Rendezvous(
                rendezvous::client::Event::RegisterFailed { error, .. },
            )) => {
                self.emit(WebEvent::Problem(format!(
                    "registering at a rendezvous point failed: {error:?}"
                )));
            }
            _ => {}
        }
    }

    /// Reserves a slot at a relay this browser dialled, and meets members there.
    fn use_relay(&mut self, relay: PeerId) {
        if !self.reserved.contains(&relay)
            && let Some(address) = self.dialled.get(&relay).cloned()
        {
            let circuit = address
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit) {
                Ok(_) => {
                    self.reserved.insert(relay);
                }
                Err(e) => self.emit(WebEvent::Problem(format!(
                    "reserving a slot at relay {relay}: {e}"
                ))),
            }
        }
        self.discover_at(relay);
    }

    fn register_at(&mut self, relay: PeerId) {
        let mine = Vault::device_rendezvous_namespace(&self.node.device_id());
        let namespaces: Vec<String> = std::iter::once(mine)
            .chain(self.node.vaults().map(Vault::rendezvous_namespace))
            .collect();
        for namespace in namespaces {
            let Ok(namespace) = rendezvous::Namespace::new(namespace) else {
                continue;
            };
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .rendezvous
                .register(namespace, relay, None)
            {
                self.emit(WebEvent::Problem(format!(
                    "registering at relay {relay}: {e}"
                )));
                return;
            }
        }
    }

    fn discover_at(&mut self, relay: PeerId) {
        let me = self.node.device_id();
        let mut namespaces: Vec<String> = self
            .node
            .vaults()
            .map(Vault::rendezvous_namespace)
            .collect();
        let mut unconnected: Vec<DeviceId> = self
            .node
            .vaults()
            .filter(|v| v.membership().is_member(&me))
            .flat_map(|v| v.membership().members().keys().copied().collect::<Vec<_>>())
            .filter(|d| *d != me)
            .filter(|d| peer_of(d).is_none_or(|p| !self.connected.contains(&p)))
            .collect();
        unconnected.sort();
        unconnected.dedup();
        namespaces.extend(unconnected.iter().map(Vault::device_rendezvous_namespace));
        for namespace in namespaces {
            if let Ok(namespace) = rendezvous::Namespace::new(namespace) {
                self.swarm
                    .behaviour_mut()
                    .rendezvous
                    .discover(Some(namespace), None, None, relay);
            }
        }
    }

    fn rendezvous_round(&mut self) {
        let relays: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|r| self.connected.contains(r))
            .copied()
            .collect();
        for relay in relays {
            if self.registrable.contains(&relay) {
                self.register_at(relay);
            }
            self.discover_at(relay);
        }
    }

    fn schedule_redial(&mut self, peer: PeerId) {
        let Some(record) = device_of(&peer).and_then(|d| self.peers.get(&d)) else {
            return;
        };
        if record.addresses.is_empty() {
            return;
        }
        let delay = self.backoff.delay_ms(record.failures.max(1), jitter());
        self.next_dial.insert(peer, now_ms() + delay);
    }

    fn redial(&mut self, now: u64) {
        if !self.online || !self.leader {
            return; // the `online` event (or leadership) redials everything at once
        }
        let due: Vec<PeerId> = self
            .next_dial
            .iter()
            .filter(|(peer, at)| **at <= now && !self.connected.contains(peer))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.next_dial.remove(&peer);
            let Some(record) = device_of(&peer).and_then(|d| self.peers.get(&d)) else {
                continue;
            };
            let addresses: Vec<Multiaddr> = record
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addresses)
                .build();
            if self.swarm.dial(opts).is_err() {
                self.schedule_redial(peer);
            }
        }
    }

    fn close_stalled_handshakes(&mut self, now: u64) {
        let ready: HashSet<SessionId> = self
            .node
            .sessions()
            .filter(|(_, _, _, ready)| *ready)
            .map(|(id, ..)| id)
            .collect();
        let stalled: Vec<SessionId> = self
            .links
            .iter()
            .filter(|(id, link)| {
                !ready.contains(id) && now.saturating_sub(link.opened_ms) > HANDSHAKE_TIMEOUT_MS
            })
            .map(|(id, _)| *id)
            .collect();
        for session in stalled {
            let Some(link) = self.links.get(&session) else {
                continue;
            };
            let (peer, vault) = (link.peer, link.vault);
            let refuse = Message::Refuse {
                code: RefuseCode::NotMember,
                reason: "the handshake did not finish in time".into(),
            };
            let _ = link.tx.unbounded_send(refuse.encode());
            self.drop_link(session);
            self.node.session_closed(session);
            if let Some(vault) = vault {
                self.cooldown
                    .insert((peer, vault), now + REFUSED_COOLDOWN_MS);
            }
            self.disconnect_at.push((peer, now + 500));
        }
    }

    fn disconnect_due(&mut self, now: u64) {
        let due: Vec<PeerId> = self
            .disconnect_at
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        self.disconnect_at.retain(|(_, at)| *at > now);
        for peer in due {
            let in_use = self.links.values().any(|l| l.peer == peer) || self.relays.contains(&peer);
            if !in_use {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn finish_joins_and_connects(&mut self, now: u64) {
        let (expired, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.joins)
            .into_iter()
            .partition(|j| j.deadline_ms <= now);
        self.joins = pending;
        for join in expired {
            if let Some(reply) = join.reply {
                let reason = join.last_error.unwrap_or_else(|| {
                    "no member of the vault could be reached before the invite timed out".into()
                });
                let _ = reply.send(Err(WebError::Join(reason)));
            }
        }
        let (expired, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.connects)
            .into_iter()
            .partition(|c| c.deadline_ms <= now);
        self.connects = pending;
        for connect in expired {
            let _ = connect.reply.send(Err(WebError::Connect {
                address: connect.address.to_string(),
                reason: format!("no connection within {} s", WEB_CONNECT_TIMEOUT.as_secs()),
            }));
        }
    }

    // ---- sessions -----------------------------------------------------------------------

    fn ensure_sessions(&mut self) {
        let now = now_ms();
        self.cooldown.retain(|_, until| *until > now);
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        for peer in peers {
            let Some(device) = device_of(&peer) else {
                continue;
            };
            let mut wanted: Vec<(VaultId, Option<InviteCode>)> = self
                .node
                .shared_vaults(&device)
                .into_iter()
                .map(|v| (v, None))
                .collect();
            if !self.relays.contains(&peer) {
                for join in &self.joins {
                    if self.node.vault(&join.code.vault).is_none() {
                        wanted.push((join.code.vault, Some(join.code.clone())));
                    }
                }
            }
            for (vault, join) in wanted {
                let pair = (peer, vault);
                if self.by_pair.contains_key(&pair)
                    || self.opening.contains(&pair)
                    || self.cooldown.contains_key(&pair)
                {
                    continue;
                }
                self.opening.insert(pair);
                let mut control = self.control.clone();
                let tx = self.internal_tx.clone();
                crate::rt::spawn(async move {
                    let message = match control.open_stream(peer, SYNC_PROTOCOL).await {
                        Ok(stream) => Internal::Opened {
                            peer,
                            vault,
                            join: join.map(Box::new),
                            stream,
                        },
                        Err(e) => Internal::OpenFailed {
                            peer,
                            vault,
                            error: e.to_string(),
                        },
                    };
                    let _ = tx.unbounded_send(message);
                });
            }
        }
    }

    async fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Frame(session, bytes) => self.on_frame(session, bytes).await,
            Internal::Closed(session) => {
                if self.drop_link(session) {
                    self.node.session_closed(session);
                }
            }
            Internal::BadFrame(session, error) => {
                let Some(link) = self.links.get(&session) else {
                    return;
                };
                let (peer, device) = (link.peer, link.device);
                self.drop_link(session);
                self.node.session_closed(session);
                self.banned.insert(peer, now_ms() + BAN_MS);
                let _ = self.swarm.disconnect_peer_id(peer);
                self.emit(WebEvent::SessionRefused {
                    peer: device,
                    reason: CloseReason {
                        code: RefuseCode::ProtocolViolation,
                        reason: error,
                        by_us: true,
                    },
                });
            }
            Internal::Opened {
                peer,
                vault,
                join,
                stream,
            } => {
                self.opening.remove(&(peer, vault));
                let Some(device) = device_of(&peer) else {
                    return;
                };
                if self.by_pair.contains_key(&(peer, vault)) {
                    return;
                }
                let joining = join.is_some();
                let (session, out) = self.node.open_session(
                    device,
                    vault,
                    true,
                    join.map(|c| c.join_request()),
                    now_ms(),
                );
                self.attach(session, peer, device, Some(vault), joining, stream);
                self.by_pair.insert((peer, vault), session);
                let _ = self.carry_out(out).await;
            }
            Internal::OpenFailed { peer, vault, error } => {
                self.opening.remove(&(peer, vault));
                self.cooldown
                    .insert((peer, vault), now_ms() + REFUSED_COOLDOWN_MS / 10);
                self.emit(WebEvent::Problem(format!(
                    "opening a sync stream to {peer}: {error}"
                )));
            }
            Internal::Leader => self.become_leader().await,
            // Taken in at once, not at the next tick (up to 100 ms later): another tab's
            // edit shows here as soon as IndexedDB has it.
            Internal::Tab(TabMessage::Changed(touched)) => {
                self.from_other_tabs.extend(touched);
                self.read_other_tabs_changes().await;
            }
            Internal::Tab(TabMessage::Peers(peers)) => {
                self.leader_peers = peers.iter().filter_map(|p| p.parse().ok()).collect();
            }
            Internal::Tab(TabMessage::Connect(address)) if self.leader => {
                match address.parse::<Multiaddr>() {
                    Ok(address) => {
                        if let Err(e) = self.dial_address(address) {
                            self.emit(WebEvent::Problem(format!("dialing for another tab: {e}")));
                        }
                    }
                    Err(e) => self.emit(WebEvent::Problem(format!(
                        "another tab asked to dial `{address}`: {e}"
                    ))),
                }
            }
            Internal::Tab(TabMessage::Join(code)) if self.leader => match code.parse() {
                Ok(code) => self.start_join(code, None),
                Err(e) => self.emit(WebEvent::Problem(format!(
                    "another tab's invite code is unreadable: {e}"
                ))),
            },
            Internal::Tab(_) => {}
            Internal::Online(online) => {
                self.online = online;
                self.emit(WebEvent::Online(online));
                if online {
                    // The network is back: try every known peer now, not after backoff.
                    let now = now_ms();
                    let known: Vec<PeerId> = self
                        .peers
                        .values_mut()
                        .map(|r| {
                            r.failures = 0;
                            r.device
                        })
                        .filter_map(|d| peer_of(&d))
                        .collect();
                    for peer in known {
                        self.next_dial.insert(peer, now);
                    }
                    self.redial(now);
                }
            }
        }
    }

    fn on_inbound(&mut self, peer: PeerId, stream: libp2p::Stream) {
        let banned = self
            .banned
            .get(&peer)
            .is_some_and(|until| *until > now_ms());
        let Some(device) = device_of(&peer).filter(|_| !banned) else {
            drop(stream);
            return;
        };
        let session = self.node.accept_session(device);
        self.attach(session, peer, device, None, false, stream);
    }

    fn attach(
        &mut self,
        session: SessionId,
        peer: PeerId,
        device: DeviceId,
        vault: Option<VaultId>,
        joining: bool,
        stream: libp2p::Stream,
    ) {
        let (mut read, mut write) = stream.split();
        let (tx, mut rx) = mpsc::unbounded::<Vec<u8>>();
        let internal = self.internal_tx.clone();
        let (reader, registration) = AbortHandle::new_pair();
        let read_loop = async move {
            loop {
                match read_frame(&mut read).await {
                    Ok(Some(bytes)) => {
                        if internal
                            .unbounded_send(Internal::Frame(session, bytes))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e @ FrameError::TooLong { .. }) => {
                        let _ = internal.unbounded_send(Internal::BadFrame(session, e.to_string()));
                        return;
                    }
                    Ok(None) | Err(_) => {
                        let _ = internal.unbounded_send(Internal::Closed(session));
                        return;
                    }
                }
            }
        };
        crate::rt::spawn(Abortable::new(read_loop, registration).map(|_| ()));
        crate::rt::spawn(async move {
            while let Some(bytes) = rx.next().await {
                if write_frame(&mut write, &bytes).await.is_err() {
                    return;
                }
            }
            let _ = write.close().await;
        });
        self.links.insert(
            session,
            Link {
                peer,
                device,
                vault,
                joining,
                outbound: vault.is_some(),
                opened_ms: now_ms(),
                tx,
                reader,
            },
        );
    }

    fn drop_link(&mut self, session: SessionId) -> bool {
        let Some(link) = self.links.remove(&session) else {
            return false;
        };
        if let Some(vault) = link.vault
            && self.by_pair.get(&(link.peer, vault)) == Some(&session)
        {
            self.by_pair.remove(&(link.peer, vault));
        }
        true
    }

    async fn on_frame(&mut self, session: SessionId, bytes: Vec<u8>) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        if link.vault.is_none() {
            let peer = link.peer;
            if let Ok(Message::Hello { vault, .. }) = Message::decode(&bytes) {
                if let Some(&other) = self.by_pair.get(&(peer, vault))
                    && other != session
                {
                    let ours_wins = self.links.get(&other).is_some_and(|l| l.outbound)
                        && self.node.device_id() < link.device;
                    if ours_wins {
                        self.drop_link(session);
                        self.node.session_closed(session);
                        return;
                    }
                    self.drop_link(other);
                    self.node.session_closed(other);
                }
                if let Some(link) = self.links.get_mut(&session) {
                    link.vault = Some(vault);
                }
                self.by_pair.insert((peer, vault), session);
            }
        }
        let out = self.node.handle_message(session, &bytes, now_ms());
        let _ = self.carry_out(out).await;
    }

    /// Carries out a node output: commit (and wait for IndexedDB to complete), send,
    /// close, report. When the commit fails nothing is sent and the node starts over from
    /// what IndexedDB holds.
    async fn carry_out(&mut self, out: Output) -> Result<(), WebError> {
        let touched = Touched::of(&out.batch);
        if !out.batch.is_empty()
            && let Err(e) = self.store.commit(out.batch).await
        {
            self.emit(WebEvent::Problem(format!(
                "IndexedDB failed ({e}); dropping sessions and reloading"
            )));
            self.reload_from_store();
            return Err(WebError::Storage(e));
        }
        if !touched.is_empty()
            && let Some(tabs) = &self.tabs
        {
            tabs.post(&TabMessage::Changed(touched));
        }
        for (session, bytes) in out.transmits {
            if let Some(link) = self.links.get(&session) {
                let _ = link.tx.unbounded_send(bytes);
            }
        }
        let mut membership_changed = false;
        for (session, reason) in out.closed {
            let Some(link) = self.links.get(&session) else {
                continue;
            };
            let (peer, device, vault, joining) = (link.peer, link.device, link.vault, link.joining);
            self.drop_link(session);
            if let Some(vault) = vault {
                self.cooldown
                    .insert((peer, vault), now_ms() + REFUSED_COOLDOWN_MS);
                if joining {
                    for join in self.joins.iter_mut().filter(|j| j.code.vault == vault) {
                        join.last_error = Some(reason.reason.clone());
                        if reason.code == RefuseCode::BadInvite {
                            join.deadline_ms = 0;
                        }
                    }
                }
            }
            if reason.by_us {
                if reason.code == RefuseCode::ProtocolViolation {
                    self.banned.insert(peer, now_ms() + BAN_MS);
                }
                self.disconnect_at.push((peer, now_ms() + 500));
            }
            self.emit(WebEvent::SessionRefused {
                peer: device,
                reason,
            });
        }
        for event in out.events {
            match event {
                Event::DocChanged { vault, doc } => {
                    self.emit(WebEvent::DocChanged { vault, doc });
                }
                Event::MembershipChanged { vault } => {
                    membership_changed = true;
                    self.last_discovery_ms = 0;
                    self.emit(WebEvent::MembershipChanged(vault));
                }
                Event::VaultJoined { vault } => {
                    membership_changed = true;
                    self.last_discovery_ms = 0;
                    self.emit(WebEvent::VaultJoined(vault));
                    for join in self.joins.iter_mut().filter(|j| j.code.vault == vault) {
                        if let Some(reply) = join.reply.take() {
                            let _ = reply.send(Ok(vault));
                        }
                    }
                    self.joins.retain(|j| j.code.vault != vault);
                }
                Event::SessionReady { vault, peer, .. } => {
                    self.record_sync(peer, vault).await;
                    self.emit(WebEvent::SessionReady { vault, peer });
                }
                Event::Rejected { session, error } => {
                    if let Some(peer) = self.links.get(&session).map(|l| l.device) {
                        self.emit(WebEvent::Rejected {
                            peer,
                            error: error.to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        if membership_changed {
            self.ensure_sessions();
        }
        Ok(())
    }

    async fn record_sync(&mut self, device: DeviceId, vault: VaultId) {
        let fingerprint = self.node.fingerprint(&vault).unwrap_or_default();
        let record = self
            .peers
            .entry(device)
            .or_insert_with(|| PeerRecord::new(device));
        let now = now_ms();
        record.last_seen_ms = now;
        record.last_synced.insert(vault, (now, fingerprint));
        let batch = record.to_batch();
        self.commit_quietly(batch).await;
    }

    async fn commit_quietly(&mut self, batch: nexus_core::Batch) {
        if let Err(e) = self.store.commit(batch).await {
            self.emit(WebEvent::Problem(format!("saving a peer record: {e}")));
        }
    }

    fn reload_from_store(&mut self) {
        let sessions: Vec<SessionId> = self.links.keys().copied().collect();
        for session in sessions {
            self.drop_link(session);
            self.node.session_closed(session);
        }
        match Node::load(
            self.store.cache(),
            self.node.key().clone(),
            self.node.actor().clone(),
            NodeConfig::new(),
        ) {
            Ok(node) => self.node = node,
            Err(e) => self.emit(WebEvent::Problem(format!(
                "reloading from IndexedDB failed: {e}"
            ))),
        }
    }

    /// This tab got the leader lock: it takes over the connections, starting with every
    /// peer the profile knows (the previous leader's records included).
    async fn become_leader(&mut self) {
        self.leader = true;
        self.leader_peers.clear();
        match self.store.reload_peers().await {
            Ok(()) => match PeerRecord::load_all(self.store.cache()) {
                Ok((records, _)) => {
                    for record in records {
                        self.peers.insert(record.device, record);
                    }
                }
                Err(e) => self.emit(WebEvent::Problem(format!("reading peer records: {e}"))),
            },
            Err(e) => self.emit(WebEvent::Problem(format!("reading peer records: {e}"))),
        }
        let now = now_ms();
        let known: Vec<PeerId> = self.peers.keys().filter_map(peer_of).collect();
        for peer in known {
            self.next_dial.insert(peer, now);
        }
        // Invites a follower was waiting on are tried here now.
        let codes: Vec<InviteCode> = self.joins.iter().map(|j| j.code.clone()).collect();
        for code in codes {
            self.dial_invite_addresses(&code);
        }
        self.emit(WebEvent::Leader);
        self.tell_tabs_peers();
        self.redial(now);
    }

    fn tell_tabs_peers(&self) {
        if self.leader
            && let Some(tabs) = &self.tabs
        {
            let peers = self
                .connected
                .iter()
                .filter_map(device_of)
                .map(|d| d.to_string())
                .collect();
            tabs.post(&TabMessage::Peers(peers));
        }
    }

    /// Reads back what other tabs committed (only the records their batches touched,
    /// widened where this tab lacks what they build on) and takes it in: new changes are
    /// offered to peers at once, the app hears of each document that moved.
    async fn read_other_tabs_changes(&mut self) {
        let pending = std::mem::take(&mut self.from_other_tabs);
        for (i, touched) in pending.iter().enumerate() {
            let read = self.node.what_to_read(touched);
            if let Err(e) = self.take_in_from_store(&read).await {
                // Kept, as whole vaults, for the next tick: a missed commit would leave
                // this tab behind until it reloads.
                self.tab_read_failures += 1;
                self.emit(WebEvent::Problem(format!(
                    "reading another tab's changes (attempt {}): {e}",
                    self.tab_read_failures
                )));
                if self.tab_read_failures < MAX_TAB_READ_FAILURES {
                    let rest = pending[i..].iter().map(|t| Touched {
                        membership: true,
                        ..t.clone()
                    });
                    self.from_other_tabs.splice(0..0, rest);
                }
                return;
            }
            // A change whose parents this tab never read (a message it missed) waits
            // for them: its document is read again whole.
            let again = self.node.what_to_read(&Touched {
                membership: false,
                whole: BTreeSet::new(),
                ..read
            });
            if !again.whole.is_empty() {
                let again = Touched {
                    changes: BTreeMap::new(),
                    ..again
                };
                if let Err(e) = self.take_in_from_store(&again).await {
                    self.emit(WebEvent::Problem(format!(
                        "reading another tab's documents again: {e}"
                    )));
                }
            }
        }
        self.tab_read_failures = 0;
        self.ensure_sessions();
    }

    /// Reads `read` back from IndexedDB and takes it in.
    async fn take_in_from_store(&mut self, read: &Touched) -> Result<(), String> {
        self.store
            .reload_touched(std::slice::from_ref(read))
            .await
            .map_err(|e| e.to_string())?;
        let out = self
            .node
            .take_in_stored(self.store.cache(), read, now_ms())
            .map_err(|e| format!("vault {}: {e}", read.vault))?;
        let _ = self.carry_out(out).await;
        Ok(())
    }

    fn dial_invite_addresses(&mut self, code: &InviteCode) {
        for address in &code.addresses {
            match address.parse::<Multiaddr>() {
                Ok(address) => {
                    if let Err(e) = self.dial_address(address) {
                        self.emit(WebEvent::Problem(format!("invite address: {e}")));
                    }
                }
                Err(e) => self.emit(WebEvent::Problem(format!(
                    "invite address `{address}` is not a multiaddr: {e}"
                ))),
            }
        }
    }

    /// Starts trying an invite (the leader dials its addresses; a follower asks the
    /// leader). `reply` hears the outcome.
    fn start_join(
        &mut self,
        code: InviteCode,
        reply: Option<oneshot::Sender<Result<VaultId, WebError>>>,
    ) {
        if self.node.vault(&code.vault).is_some() {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(code.vault));
            }
            return;
        }
        if self.leader {
            self.dial_invite_addresses(&code);
        } else if let Some(tabs) = &self.tabs {
            tabs.post(&TabMessage::Join(code.to_string()));
        }
        self.joins.push(PendingJoin {
            code,
            deadline_ms: now_ms() + WEB_JOIN_TIMEOUT.as_millis() as u64,
            last_error: None,
            reply,
        });
        self.ensure_sessions();
    }

    fn status(&self) -> WebStatus {
        let ready: Vec<(DeviceId, VaultId)> = self
            .node
            .sessions()
            .filter_map(|(_, peer, vault, ready)| vault.filter(|_| ready).map(|v| (peer, v)))
            .collect();
        let mut devices: Vec<DeviceId> = self.peers.keys().copied().collect();
        devices.extend(self.connected.iter().filter_map(device_of));
        devices.extend(self.leader_peers.iter().copied());
        devices.sort();
        devices.dedup();
        let peers = devices
            .into_iter()
            .map(|device| {
                let peer = peer_of(&device);
                WebPeerStatus {
                    device,
                    connected: if self.leader {
                        peer.is_some_and(|p| self.connected.contains(&p))
                    } else {
                        self.leader_peers.contains(&device)
                    },
                    relay: peer.is_some_and(|p| self.relays.contains(&p)),
                    syncing: ready
                        .iter()
                        .filter(|(d, _)| *d == device)
                        .map(|(_, v)| *v)
                        .collect(),
                }
            })
            .collect();
        WebStatus {
            device: self.node.device_id(),
            online: self.online,
            leader: self.leader,
            peers,
            reachable_at: self.reachable_at.clone(),
            joining: self.joins.len(),
        }
    }
}

/// The vaults whose records a batch writes (peer records and the device key name none).
/// Listens for the browser's `online` and `offline` events. The closures must live as
/// long as the peer.
fn watch_online(
    internal: &mpsc::UnboundedSender<Internal>,
) -> Vec<Closure<dyn FnMut(web_sys::Event)>> {
    let Ok(target) = js_sys::global().dyn_into::<web_sys::EventTarget>() else {
        return Vec::new();
    };
    let mut closures = Vec::new();
    for (name, online) in [("online", true), ("offline", false)] {
        let internal = internal.clone();
        let closure: Closure<dyn FnMut(web_sys::Event)> = Closure::new(move |_: web_sys::Event| {
            let _ = internal.unbounded_send(Internal::Online(online));
        });
        if target
            .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
            .is_ok()
        {
            closures.push(closure);
        }
    }
    closures
}

/// What `navigator.onLine` says (true when it cannot be read).
fn navigator_online() -> bool {
    let global = js_sys::global();
    if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        return window.navigator().on_line();
    }
    if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        return worker.navigator().on_line();
    }
    true
}

impl WebHandle {
    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    fn send(&self, command: Command) -> Result<(), WebError> {
        self.commands
            .unbounded_send(command)
            .map_err(|_| WebError::Stopped)
    }

    /// Reads the node.
    pub async fn read<T: 'static>(
        &self,
        read: impl FnOnce(&Node) -> T + 'static,
    ) -> Result<T, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            let _ = tx.send(read(&peer.node));
            async {}.boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)
    }

    /// Changes the node: `update` gets the node and the time (ms since the epoch) and
    /// returns a value and the node's output. Resolves once the output is committed to
    /// IndexedDB (and sent to peers); fails, having sent nothing, when the commit fails.
    pub async fn update<T: 'static>(
        &self,
        update: impl FnOnce(&mut Node, u64) -> Result<(T, Output), WebError> + 'static,
    ) -> Result<T, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            async move {
                let result = match update(&mut peer.node, now_ms()) {
                    Ok((value, out)) => {
                        let vaults_before = peer.node.vaults().count();
                        let carried = peer.carry_out(out).await.map(|()| value);
                        if peer.node.vaults().count() != vaults_before {
                            // A new vault: register its name at relays now.
                            peer.last_discovery_ms = 0;
                        }
                        peer.ensure_sessions();
                        carried
                    }
                    Err(e) => Err(e),
                };
                let _ = tx.send(result);
            }
            .boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)?
    }

    /// Dials `address` and resolves once connected (or after [`WEB_CONNECT_TIMEOUT`]).
    /// The peer is remembered and redialled after network changes. WebSocket addresses
    /// (`/ip4/…/tcp/…/ws/p2p/…`), WebRTC-direct (`/ip4/…/udp/…/webrtc-direct/certhash/…`)
    /// and circuits through a relay (`…/p2p/<relay>/p2p-circuit/p2p/…`) work.
    pub async fn connect(&self, address: Multiaddr) -> Result<DeviceId, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            async move {
                let (_, target) = split_peer(&address);
                if let Some(target) = target
                    && peer.connected.contains(&target)
                    && let Some(device) = device_of(&target)
                {
                    let _ = tx.send(Ok(device));
                    return;
                }
                if !peer.leader {
                    // The leader tab holds the connections: hand it the address. It is
                    // also stored as a peer record, so that a tab that becomes leader
                    // later (this one, just after opening, before the lock is granted)
                    // dials it too.
                    let Some(device) = target.as_ref().and_then(device_of) else {
                        let _ = tx.send(Err(WebError::Connect {
                            address: address.to_string(),
                            reason: "the address must end in /p2p/<peer id>".into(),
                        }));
                        return;
                    };
                    let (bare, _) = split_peer(&address);
                    let record = peer
                        .peers
                        .entry(device)
                        .or_insert_with(|| PeerRecord::new(device));
                    record.add_address(&bare.to_string());
                    let batch = record.to_batch();
                    peer.commit_quietly(batch).await;
                    if let Some(tabs) = &peer.tabs {
                        tabs.post(&TabMessage::Connect(address.to_string()));
                    }
                    let _ = tx.send(Ok(device));
                    return;
                }
                match peer.dial_address(address.clone()) {
                    Ok(connection) => peer.connects.push(PendingConnect {
                        peer: target,
                        connection,
                        address,
                        deadline_ms: now_ms() + WEB_CONNECT_TIMEOUT.as_millis() as u64,
                        reply: tx,
                    }),
                    Err(reason) => {
                        let _ = tx.send(Err(WebError::Connect {
                            address: address.to_string(),
                            reason,
                        }));
                    }
                }
            }
            .boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)?
    }

    /// Tries an invite: dials its addresses and presents it to members until this device
    /// holds the vault (resolves with its id) or [`WEB_JOIN_TIMEOUT`] passes.
    pub async fn join(&self, code: InviteCode) -> Result<VaultId, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            peer.start_join(code, Some(tx));
            async {}.boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)?
    }

    /// What the runtime is doing.
    pub async fn status(&self) -> Result<WebStatus, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            let _ = tx.send(peer.status());
            async {}.boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)
    }

    /// Events from now on.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<WebEvent>, WebError> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Box::new(move |peer: &mut WebPeer| {
            peer.listeners.push(tx);
            async {}.boxed_local()
        }))?;
        Ok(rx)
    }

    /// Stops the runtime: connections close, IndexedDB is closed. Everything already
    /// resolved is stored.
    pub async fn close(&self) -> Result<(), WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move |peer: &mut WebPeer| {
            peer.stopping = true;
            let _ = tx.send(());
            async {}.boxed_local()
        }))?;
        rx.await.map_err(|_| WebError::Stopped)
    }
}
