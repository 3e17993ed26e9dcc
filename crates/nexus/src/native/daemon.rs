//! The native peer runtime: one [`nexus_core::Node`] on a SQLite store, driven by a
//! libp2p swarm on tokio.
//!
//! Every `/nexus/sync/1` stream is one session of the node (one vault with one peer).
//! Frames read from streams go to the node; what the node returns is carried out in its
//! order: commit the batch, then send, then close, then report events. Sessions open for
//! every vault this device shares with a connected peer, and for pending invites. Known
//! peers are redialled with capped exponential backoff and jitter. Writes made to the same
//! database by another process (a `nexus` command next to the daemon) are noticed through
//! SQLite's `data_version` within [`POLL_INTERVAL`] and offered to peers like local ones.
//!
//! A local control socket (`nexus.sock` in the home, [`super::control_socket`]) answers
//! `status`, `dial` and `join` requests from the command line. Members who are offline get
//! changes through a relay's mailbox ([`mailbox`]).

mod mailbox;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, rendezvous};
use nexus_core::node::{CloseReason, Event, Node, NodeConfig, Output, SessionId};
use nexus_core::peers::{Backoff, PeerRecord};
use nexus_core::protocol::{Message, RefuseCode};
use nexus_core::{ActorId, DeviceId, DeviceKey, InviteCode, Storage, Vault, VaultId};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::control_socket::{CONTROL_SOCKET, ControlRequest, bind_control, serve_control};
use super::sqlite::{SqliteError, SqliteStore};
use super::swarm::{PeerBehaviour, PeerBehaviourEvent, SwarmError, build_swarm_with_certificate};
use super::webrtc_watch::{Remedy, WebRtcWatch, is_webrtc_direct};
use crate::control::{PeerStatus, Reply, Request, SessionStatus, Status, VaultStatus};
use crate::frames::{FrameError, read_frame, write_frame};
use crate::p2p::{SYNC_PROTOCOL, device_of, peer_of, relay_of, relay_part, split_peer};
use crate::views::VaultSummary;

/// How often the node ticks and the database is checked for other processes' writes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a session refused by a peer (or by us) waits before it is tried again.
const REFUSED_COOLDOWN_MS: u64 = 30_000;
/// How long a peer that broke the protocol is kept away.
const BAN_MS: u64 = 60_000;
/// How long shutdown waits for bundles still being left at a relay.
const SHUTDOWN_GRACE_MS: u64 = 3_000;
/// How long an invite is tried before `join` gives up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How the peer runs.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start (and remember).
    pub dial: Vec<Multiaddr>,
    /// Relays (each address ending in `/p2p/<relay id>`): this peer reserves a slot at
    /// each, so others can reach it through the relay's circuit, and meets the members of
    /// its vaults at the relay's rendezvous point.
    pub relays: Vec<Multiaddr>,
    /// Whether to find peers on the local network.
    pub mdns: bool,
    /// The node's timing.
    pub node: NodeConfig,
    /// Whether to serve the control socket (one daemon per home).
    pub control_socket: bool,
    /// How long a session may take to finish its handshake before it is closed. A
    /// stranger's session waits for membership entries that may prove it a member; one
    /// that never sends them is cut off after this.
    pub handshake_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            dial: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            node: NodeConfig::new(),
            control_socket: true,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// What the runtime reports as it goes (the daemon logs these).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// Listening on an address (with `/p2p/<DeviceId>` appended).
    Listening(Multiaddr),
    /// A connection to a device came up.
    Connected(DeviceId),
    /// The last connection to a device went down.
    Disconnected(DeviceId),
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
        /// The reason.
        reason: CloseReason,
    },
    /// A document changed because of a peer.
    DocChanged {
        /// The vault.
        vault: VaultId,
        /// The document.
        doc: nexus_core::DocId,
        /// Its heads now.
        heads: Vec<nexus_core::ChangeHash>,
    },
    /// The vault's membership changed.
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
    /// Changes were left at a relay for members who are offline.
    MailboxLeft {
        /// The vault.
        vault: VaultId,
        /// Changes in the bundle.
        changes: usize,
        /// Encrypted bytes left.
        bytes: usize,
    },
    /// Bundles left by other members were taken from a relay's mailbox.
    MailboxPickedUp {
        /// The vault.
        vault: VaultId,
        /// Bundles opened.
        bundles: usize,
        /// Changes they carried (some may have been known already).
        changes: usize,
    },
    /// Something went wrong that the runtime recovered from.
    Problem(String),
}

/// Why the runtime could not start or had to stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The swarm could not be built.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] SqliteError),
    /// The vaults could not be loaded.
    #[error("loading the vaults: {0}")]
    Load(String),
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The runtime stopped before it could answer.
    #[error("the peer runtime has stopped")]
    Stopped,
    /// A local edit failed.
    #[error("editing: {0}")]
    Edit(String),
    /// Another daemon already serves this home.
    #[error("a daemon is already running on this home (control socket {0})")]
    AlreadyRunning(PathBuf),
    /// The control socket could not be set up.
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

enum Internal {
    Frame(SessionId, Vec<u8>),
    Closed(SessionId),
    /// The peer sent something that is not a frame (an oversized length).
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
    Deposited(Box<mailbox::Deposited>),
    Fetched(Box<mailbox::Fetched>),
}

struct Link {
    peer: PeerId,
    device: DeviceId,
    vault: Option<VaultId>,
    joining: bool,
    /// Opened by us (the peer's own sessions name their vault in their first frame).
    outbound: bool,
    opened_ms: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: tokio::task::JoinHandle<()>,
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
    reply: Option<oneshot::Sender<Reply>>,
}

type Command = Box<dyn FnOnce(&mut NativePeer) + Send>;

/// Talks to a running [`NativePeer`] from elsewhere in the program: local edits made
/// through it are committed, then offered to every connected peer at once.
#[derive(Clone)]
pub struct PeerHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl PeerHandle {
    /// Edits a document: one signed change, committed to the database before this
    /// returns, then sent to the peers that sync the vault.
    pub async fn change<F>(
        &self,
        vault: VaultId,
        doc: nexus_core::DocId,
        edit: F,
    ) -> Result<(), PeerError>
    where
        F: FnOnce(
                &mut nexus_core::automerge::transaction::Transaction<'_>,
            ) -> Result<(), nexus_core::automerge::AutomergeError>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let command: Command = Box::new(move |peer: &mut NativePeer| {
            let result = match peer.node.change(vault, doc, edit) {
                Ok(out) => peer.carry_out(out),
                Err(e) => Err(PeerError::Edit(e.to_string())),
            };
            let _ = tx.send(result);
        });
        self.commands
            .send(command)
            .map_err(|_| PeerError::Stopped)?;
        rx.await.map_err(|_| PeerError::Stopped)?
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn jitter() -> u64 {
    nexus_core::random_bytes::<8>().map_or(0, u64::from_le_bytes)
}

/// A running native peer. Build with [`NativePeer::start`], then drive with
/// [`NativePeer::run`].
pub struct NativePeer {
    home: PathBuf,
    node: Node,
    store: SqliteStore,
    swarm: Swarm<PeerBehaviour>,
    control: libp2p_stream::Control,
    incoming: libp2p_stream::IncomingStreams,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events: Option<mpsc::UnboundedSender<PeerEvent>>,
    links: HashMap<SessionId, Link>,
    by_pair: HashMap<(PeerId, VaultId), SessionId>,
    opening: HashSet<(PeerId, VaultId)>,
    cooldown: HashMap<(PeerId, VaultId), u64>,
    banned: HashMap<PeerId, u64>,
    disconnect_at: Vec<(PeerId, u64)>,
    connected: HashSet<PeerId>,
    identified: HashMap<PeerId, Vec<Multiaddr>>,
    peers: BTreeMap<DeviceId, PeerRecord>,
    next_dial: HashMap<PeerId, u64>,
    listening: Vec<Multiaddr>,
    joins: Vec<PendingJoin>,
    data_version: i64,
    backoff: Backoff,
    control_path: Option<PathBuf>,
    handshake_timeout_ms: u64,
    /// Relays we use: their peer id and address.
    relays: HashMap<PeerId, Multiaddr>,
    /// Relays at which a reservation was asked for.
    reserved: HashSet<PeerId>,
    /// Relays at which this peer has a circuit address to register.
    registrable: HashSet<PeerId>,
    last_discovery_ms: u64,
    /// Circuit addresses to dial once the connection to their relay is up.
    after_relay: Vec<(PeerId, Multiaddr)>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands_rx: mpsc::UnboundedReceiver<Command>,
    mailboxes: mailbox::Mailboxes,
    webrtc: WebRtcWatch,
}

/// How often members look each other up again at the relays' rendezvous points.
const DISCOVERY_INTERVAL_MS: u64 = 30_000;

impl NativePeer {
    /// Opens the store in `home`, builds the swarm and starts listening. Call inside a
    /// tokio runtime. `events`, if given, receives what happens.
    pub async fn start(
        home: &Path,
        key: DeviceKey,
        config: PeerConfig,
        events: Option<mpsc::UnboundedSender<PeerEvent>>,
    ) -> Result<Self, PeerError> {
        let store = SqliteStore::open(&home.join("nexus.db"))?;
        let node = Node::load(&store, key.clone(), ActorId::random(), config.node)
            .map_err(|e| PeerError::Load(e.to_string()))?;
        // The WebRTC-direct certificate lives in the home so browsers can keep dialing the
        // same address.
        let certificate = super::swarm::load_or_create_certificate(&home.join("webrtc.pem"))
            .map_err(|e| PeerError::Load(e.to_string()))?;
        let mut swarm = build_swarm_with_certificate(&key, config.mdns, Some(&certificate)).await?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(SYNC_PROTOCOL)
            .map_err(|_| PeerError::Load("the sync protocol was registered twice".into()))?;
        let mut webrtc = WebRtcWatch::default();
        for address in &config.listen {
            let listener = swarm
                .listen_on(address.clone())
                .map_err(|e| PeerError::Listen {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
            webrtc.on_listen(listener, address);
        }
        let (records, unreadable) = PeerRecord::load_all(&store)?;
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let data_version = store.data_version()?;
        let mut peer = Self {
            home: home.to_owned(),
            node,
            store,
            swarm,
            control,
            incoming,
            internal_tx,
            internal_rx,
            events,
            links: HashMap::new(),
            by_pair: HashMap::new(),
            opening: HashSet::new(),
            cooldown: HashMap::new(),
            banned: HashMap::new(),
            disconnect_at: Vec::new(),
            connected: HashSet::new(),
            identified: HashMap::new(),
            peers: records.into_iter().map(|r| (r.device, r)).collect(),
            next_dial: HashMap::new(),
            listening: Vec::new(),
            joins: Vec::new(),
            data_version,
            backoff: Backoff::new(),
            control_path: None,
            handshake_timeout_ms: config.handshake_timeout.as_millis() as u64,
            relays: HashMap::new(),
            reserved: HashSet::new(),
            registrable: HashSet::new(),
            last_discovery_ms: 0,
            after_relay: Vec::new(),
            commands_tx,
            commands_rx,
            mailboxes: mailbox::Mailboxes::default(),
            webrtc,
        };
        peer.init_mailboxes();
        for address in &config.relays {
            match split_peer(address) {
                (_, Some(relay)) => {
                    peer.relays.insert(relay, address.clone());
                    peer.dial_address(address.clone());
                }
                (_, None) => {
                    return Err(PeerError::Listen {
                        address: address.clone(),
                        reason: "a relay address must end in /p2p/<relay id>".into(),
                    });
                }
            }
        }
        if unreadable > 0 {
            peer.emit(PeerEvent::Problem(format!(
                "{unreadable} unreadable peer records skipped"
            )));
        }
        for address in &config.dial {
            peer.dial_address(address.clone());
        }
        if config.control_socket {
            peer.control_path = Some(home.join(CONTROL_SOCKET));
        }
        Ok(peer)
    }

    /// A handle for local edits while the peer runs.
    pub fn handle(&self) -> PeerHandle {
        PeerHandle {
            commands: self.commands_tx.clone(),
        }
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.node.device_id()
    }

    /// The node (vaults, documents, sessions).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Tries an invite: dials its addresses and presents it to members until this device
    /// holds the vault or [`JOIN_TIMEOUT`] passes. `reply` hears the outcome.
    pub fn join(&mut self, code: InviteCode, reply: Option<oneshot::Sender<Reply>>) {
        if self.node.vault(&code.vault).is_some() {
            if let Some(reply) = reply {
                let _ = reply.send(Reply::joined(code.vault, true));
            }
            return;
        }
        for address in &code.addresses {
            match address.parse::<Multiaddr>() {
                Ok(address) => self.dial_address(address),
                Err(e) => self.emit(PeerEvent::Problem(format!(
                    "invite address `{address}` is not a multiaddr: {e}"
                ))),
            }
        }
        self.joins.push(PendingJoin {
            code,
            deadline_ms: now_ms() + JOIN_TIMEOUT.as_millis() as u64,
            last_error: None,
            reply,
        });
        self.ensure_sessions();
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), PeerError> {
        let (control_tx, mut control_rx) = mpsc::unbounded_channel::<ControlRequest>();
        let listener = match self.control_path.clone() {
            Some(path) => Some(bind_control(&path)?),
            None => None,
        };
        if let Some(listener) = listener {
            crate::rt::spawn(serve_control(listener, control_tx));
        }
        let mut ticker = crate::rt::Ticker::new(POLL_INTERVAL);
        let mut last_ensure = 0u64;
        // After the shutdown signal: until when bundles still being left are waited for.
        let mut stopping: Option<u64> = None;
        tokio::pin!(shutdown);
        loop {
            if let Some(deadline) = stopping
                && (!self.mailboxes.busy() || now_ms() >= deadline)
            {
                break;
            }
            tokio::select! {
                () = &mut shutdown, if stopping.is_none() => {
                    let now = now_ms();
                    self.poll_store(now);
                    self.mailbox_round(now);
                    stopping = Some(now + SHUTDOWN_GRACE_MS);
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                Some((peer, stream)) = self.incoming.next() => self.on_inbound(peer, stream),
                Some((request, reply)) = control_rx.recv() => self.on_control(request, reply),
                Some(command) = self.commands_rx.recv() => command(&mut self),
                () = ticker.tick() => {
                    let now = now_ms();
                    self.poll_store(now);
                    let out = self.node.tick(now);
                    // A failed commit is reported and recovered from inside.
                    let _ = self.carry_out(out);
                    // Work a config with `verify_slice` left for later (each call makes
                    // progress, so this ends).
                    while self.node.has_work() {
                        let out = self.node.work(now);
                        let _ = self.carry_out(out);
                    }
                    self.redial(now);
                    self.reopen_webrtc_listeners();
                    self.finish_joins(now);
                    self.disconnect_due(now);
                    self.close_stalled_handshakes(now);
                    if now.saturating_sub(last_ensure) >= 1_000 && stopping.is_none() {
                        last_ensure = now;
                        self.ensure_sessions();
                        self.mailbox_round(now);
                    }
                    if now.saturating_sub(self.last_discovery_ms) >= DISCOVERY_INTERVAL_MS {
                        self.last_discovery_ms = now;
                        self.rendezvous_round();
                    }
                }
            }
        }
        if let Some(path) = &self.control_path {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    fn emit(&self, event: PeerEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    // ---- the swarm ----------------------------------------------------------------------

    fn dial_address(&mut self, address: Multiaddr) {
        let (bare, peer) = split_peer(&address);
        if let Some(peer) = peer {
            if peer == *self.swarm.local_peer_id() {
                return;
            }
            if let Some(device) = device_of(&peer) {
                let record = self
                    .peers
                    .entry(device)
                    .or_insert_with(|| PeerRecord::new(device));
                record.add_address(&bare.to_string());
                let batch = record.to_batch();
                self.commit_quietly(batch);
            }
            self.swarm.add_peer_address(peer, bare);
        }
        // Through a relay: the relay connection must be up first, or the dial fails and
        // waits out a backoff.
        if let Some(relay) = relay_of(&address)
            && !self.connected.contains(&relay)
        {
            let _ = self.swarm.dial(relay_part(&address));
            if !self.after_relay.iter().any(|(_, a)| *a == address) {
                self.after_relay.push((relay, address));
            }
            return;
        }
        if let Err(e) = self.swarm.dial(address.clone()) {
            self.emit(PeerEvent::Problem(format!("dialing {address}: {e}")));
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<PeerBehaviourEvent>) {
        match &event {
            SwarmEvent::ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            } => self.webrtc.on_established(*connection_id, endpoint),
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.webrtc.on_closed(*connection_id)
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                self.listening.retain(|a| !addresses.contains(a));
                self.webrtc.on_listener_closed(*listener_id)
            }
            SwarmEvent::IncomingConnection { connection_id, .. }
            | SwarmEvent::Dialing { connection_id, .. } => self.webrtc.on_attempt(*connection_id),
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                self.webrtc.on_listen_addr(listener_id, &address);
                let relayed = address.iter().any(|p| matches!(p, Protocol::P2pCircuit));
                let local = *self.swarm.local_peer_id();
                let full = if address.iter().last() == Some(Protocol::P2p(local)) {
                    address.clone()
                } else {
                    address.clone().with(Protocol::P2p(local))
                };
                if relayed {
                    // A reservation at a relay: others reach us at this address, so it is
                    // what we register at the relay's rendezvous point.
                    self.swarm.add_external_address(address.clone());
                    let relay = address.iter().find_map(|p| match p {
                        Protocol::P2p(peer) if self.relays.contains_key(&peer) => Some(peer),
                        _ => None,
                    });
                    if let Some(relay) = relay {
                        self.registrable.insert(relay);
                        self.register_at(relay);
                    }
                }
                self.listening.push(address);
                self.emit(PeerEvent::Listening(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
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
                    // Not an Ed25519 peer, so not a Nexus device.
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                self.next_dial.remove(&peer_id);
                if let Some(record) = self.peers.get_mut(&device) {
                    record.failures = 0;
                    record.last_seen_ms = now_ms();
                    if endpoint.is_dialer() {
                        let (bare, _) = split_peer(endpoint.get_remote_address());
                        record.add_address(&bare.to_string());
                    }
                    let batch = record.to_batch();
                    self.commit_quietly(batch);
                }
                if self.connected.insert(peer_id) {
                    self.emit(PeerEvent::Connected(device));
                }
                let (now_dialable, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.after_relay)
                        .into_iter()
                        .partition(|(relay, _)| *relay == peer_id);
                self.after_relay = waiting;
                for (_, address) in now_dialable {
                    if let Err(e) = self.swarm.dial(address.clone()) {
                        self.emit(PeerEvent::Problem(format!("dialing {address}: {e}")));
                    }
                }
                if let Some(address) = self.relays.get(&peer_id).cloned()
                    && self.reserved.insert(peer_id)
                {
                    if let Err(e) = self.swarm.listen_on(address.with(Protocol::P2pCircuit)) {
                        self.emit(PeerEvent::Problem(format!(
                            "reserving a slot at relay {peer_id}: {e}"
                        )));
                    }
                    self.discover_at(peer_id);
                    self.mailboxes.fetch_soon();
                }
                self.ensure_sessions();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.connected.remove(&peer_id) => {
                if let Some(device) = device_of(&peer_id) {
                    self.emit(PeerEvent::Disconnected(device));
                }
                // A relay's reservation ends with the connection; ask again on reconnect.
                self.reserved.remove(&peer_id);
                self.registrable.remove(&peer_id);
                self.schedule_redial(peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id: Some(peer_id),
                error,
            } => {
                if let Some(device) = device_of(&peer_id)
                    && let Some(record) = self.peers.get_mut(&device)
                {
                    record.failures = record.failures.saturating_add(1);
                    let batch = record.to_batch();
                    self.commit_quietly(batch);
                }
                self.emit(PeerEvent::Problem(format!(
                    "cannot reach {peer_id}: {error}"
                )));
                // Only a WebRTC-direct handshake that went wrong (not an address the
                // transport refused outright) can leave a socket stuck.
                if let DialError::Transport(attempts) = &error
                    && attempts.iter().any(|(address, error)| {
                        is_webrtc_direct(address)
                            && matches!(error, libp2p::TransportError::Other(_))
                    })
                {
                    for listener in self.webrtc.on_dial_failure(connection_id) {
                        self.swarm.remove_listener(listener);
                    }
                }
                self.schedule_redial(peer_id);
            }
            SwarmEvent::IncomingConnectionError {
                connection_id,
                local_addr,
                send_back_addr,
                error,
                ..
            } => {
                self.emit(PeerEvent::Problem(format!(
                    "incoming connection from {send_back_addr} on {local_addr} failed: {error}"
                )));
                match self.webrtc.on_incoming_failure(connection_id, &local_addr) {
                    Remedy::Restart(listener) => {
                        self.swarm.remove_listener(listener);
                    }
                    Remedy::KeepBusy => self.emit(PeerEvent::Problem(format!(
                        "{send_back_addr} may not reach {local_addr} again until no \
                         WebRTC-direct connection is up and the listener restarts"
                    ))),
                    Remedy::None => {}
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let addresses: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)))
                    .take(nexus_core::peers::MAX_ADDRESSES)
                    .collect();
                for address in &addresses {
                    self.swarm.add_peer_address(peer_id, address.clone());
                }
                self.identified.insert(peer_id, addresses);
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered { registrations, .. },
            )) => {
                let me = *self.swarm.local_peer_id();
                for registration in registrations {
                    let peer = registration.record.peer_id();
                    if peer == me || self.connected.contains(&peer) {
                        continue;
                    }
                    let addresses = registration.record.addresses().to_vec();
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addresses)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Rendezvous(
                rendezvous::client::Event::RegisterFailed { error, .. },
            )) => {
                self.emit(PeerEvent::Problem(format!(
                    "registering at a rendezvous point failed: {error:?}"
                )));
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    self.swarm.add_peer_address(peer, address.clone());
                    if !self.connected.contains(&peer) {
                        let _ = self.swarm.dial(address.with(Protocol::P2p(peer)));
                    }
                }
            }
            _ => {}
        }
    }

    /// Registers every vault's rendezvous name at `relay`.
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
                self.emit(PeerEvent::Problem(format!(
                    "registering at relay {relay}: {e}"
                )));
                return;
            }
        }
    }

    /// Looks up the members of every vault at `relay`, and by device the members that
    /// are not connected (those approved by DeviceId cannot register under the vault's
    /// name before they hold it).
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

    /// Registers again and looks members up again at every connected relay (new vaults,
    /// members that came online).
    fn rendezvous_round(&mut self) {
        let relays: Vec<PeerId> = self
            .relays
            .keys()
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

    /// Listens again on WebRTC-direct addresses closed by [`WebRtcWatch`].
    fn reopen_webrtc_listeners(&mut self) {
        for (address, attempts_left) in self.webrtc.take_reopen() {
            match self.swarm.listen_on(address.clone()) {
                Ok(listener) => self.webrtc.on_listen(listener, &address),
                Err(e) => {
                    if !self.webrtc.retry_later(address.clone(), attempts_left) {
                        self.emit(PeerEvent::Problem(format!(
                            "cannot listen on {address} again: {e}"
                        )));
                    }
                }
            }
        }
    }

    fn schedule_redial(&mut self, peer: PeerId) {
        let Some(device) = device_of(&peer) else {
            return;
        };
        let Some(record) = self.peers.get(&device) else {
            return;
        };
        if record.addresses.is_empty() {
            return;
        }
        let delay = self.backoff.delay_ms(record.failures.max(1), jitter());
        self.next_dial.insert(peer, now_ms() + delay);
    }

    fn redial(&mut self, now: u64) {
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
                !ready.contains(id)
                    && now.saturating_sub(link.opened_ms) > self.handshake_timeout_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for session in stalled {
            let Some(link) = self.links.get(&session) else {
                continue;
            };
            let (peer, device, vault) = (link.peer, link.device, link.vault);
            let reason = format!(
                "the handshake did not finish within {} s",
                self.handshake_timeout_ms / 1000
            );
            let refuse = Message::Refuse {
                code: RefuseCode::NotMember,
                reason: reason.clone(),
            };
            let _ = link.tx.send(refuse.encode());
            self.drop_link(session);
            self.node.session_closed(session);
            if let Some(vault) = vault {
                self.cooldown
                    .insert((peer, vault), now + REFUSED_COOLDOWN_MS);
            }
            self.disconnect_at.push((peer, now + 500));
            self.emit(PeerEvent::SessionRefused {
                peer: device,
                reason: CloseReason {
                    code: RefuseCode::NotMember,
                    reason,
                    by_us: true,
                },
            });
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
            let still_used = self.links.values().any(|l| l.peer == peer);
            if !still_used {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    // ---- sessions -----------------------------------------------------------------------

    /// Opens the sessions that should exist and do not: each vault shared with each
    /// connected peer, and each pending invite with each connected peer.
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
            for join in &self.joins {
                if self.node.vault(&join.code.vault).is_none() {
                    wanted.push((join.code.vault, Some(join.code.clone())));
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
                    let _ = tx.send(message);
                });
            }
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Frame(session, bytes) => self.on_frame(session, bytes),
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
                self.emit(PeerEvent::SessionRefused {
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
                    return; // the peer's own session got there first
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
                // A failed commit is reported and recovered from inside.
                let _ = self.carry_out(out);
            }
            Internal::Deposited(done) => self.on_deposited(*done),
            Internal::Fetched(fetched) => self.on_fetched(*fetched),
            Internal::OpenFailed { peer, vault, error } => {
                self.opening.remove(&(peer, vault));
                self.cooldown
                    .insert((peer, vault), now_ms() + REFUSED_COOLDOWN_MS / 10);
                self.emit(PeerEvent::Problem(format!(
                    "opening a sync stream to {peer}: {error}"
                )));
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
        // The peer may be answering something another process just wrote (an invite made
        // with `nexus invite create`): take that in first.
        self.poll_store(now_ms());
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
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let internal = self.internal_tx.clone();
        let reader = tokio::spawn(async move {
            loop {
                match read_frame(&mut read).await {
                    Ok(Some(bytes)) => {
                        if internal.send(Internal::Frame(session, bytes)).is_err() {
                            return;
                        }
                    }
                    Err(e @ FrameError::TooLong { .. }) => {
                        let _ = internal.send(Internal::BadFrame(session, e.to_string()));
                        return;
                    }
                    Ok(None) | Err(_) => {
                        let _ = internal.send(Internal::Closed(session));
                        return;
                    }
                }
            }
        });
        crate::rt::spawn(async move {
            while let Some(bytes) = rx.recv().await {
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

    /// Forgets a session's link (its stream closes once queued frames are written).
    /// Returns whether it existed.
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

    fn on_frame(&mut self, session: SessionId, bytes: Vec<u8>) {
        let Some(link) = self.links.get(&session) else {
            return;
        };
        if link.vault.is_none() {
            // An inbound session: its first message names the vault. If both sides opened
            // a session for it at once, keep the one opened by the smaller device id.
            let peer = link.peer;
            if let Ok(Message::Hello { vault, .. }) = Message::decode(&bytes) {
                if let Some(&other) = self.by_pair.get(&(peer, vault))
                    && other != session
                {
                    // Against our own session for the pair, the smaller id's session wins;
                    // against an older session of the peer's, the newer one (the peer has
                    // moved on from the old one).
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
        // A failed commit is reported and recovered from inside.
        let _ = self.carry_out(out);
    }

    /// Carries out a node output, in order: commit, send, close, report. Fails (having
    /// sent nothing) when the commit fails.
    fn carry_out(&mut self, out: Output) -> Result<(), PeerError> {
        if !out.batch.is_empty()
            && let Err(e) = self.store.commit(out.batch)
        {
            // Nothing of this output may reach a peer: it was not stored. Start over from
            // what the store holds; peers resync on their next sessions.
            self.emit(PeerEvent::Problem(format!(
                "storage failed ({e}); dropping sessions and reloading from disk"
            )));
            self.reload_from_store();
            return Err(PeerError::Storage(e));
        }
        for (session, bytes) in out.transmits {
            if let Some(link) = self.links.get(&session) {
                let _ = link.tx.send(bytes);
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
                            // A member judged the invite itself: no use asking others.
                            join.deadline_ms = 0;
                        }
                    }
                }
            }
            if reason.by_us {
                if reason.code == RefuseCode::ProtocolViolation {
                    self.banned.insert(peer, now_ms() + BAN_MS);
                }
                // Let the refusal reach the peer, then hang up if nothing else is shared.
                self.disconnect_at.push((peer, now_ms() + 500));
            }
            self.emit(PeerEvent::SessionRefused {
                peer: device,
                reason,
            });
        }
        for event in out.events {
            match event {
                Event::DocChanged { vault, doc } => {
                    let heads = self
                        .node
                        .vault(&vault)
                        .and_then(|v| v.document(&doc))
                        .map(|d| d.heads())
                        .unwrap_or_default();
                    self.emit(PeerEvent::DocChanged { vault, doc, heads });
                }
                Event::MembershipChanged { vault } => {
                    membership_changed = true;
                    self.last_discovery_ms = 0; // a new member may wait at a relay
                    self.emit(PeerEvent::MembershipChanged(vault));
                }
                Event::VaultJoined { vault } => {
                    membership_changed = true;
                    self.last_discovery_ms = 0; // register and look members up now
                    self.emit(PeerEvent::VaultJoined(vault));
                    for join in self.joins.iter_mut().filter(|j| j.code.vault == vault) {
                        if let Some(reply) = join.reply.take() {
                            let _ = reply.send(Reply::joined(vault, false));
                        }
                    }
                    self.joins.retain(|j| j.code.vault != vault);
                }
                Event::SessionReady { vault, peer, .. } => {
                    self.record_sync(peer, vault);
                    self.emit(PeerEvent::SessionReady { vault, peer });
                }
                Event::Rejected { session, error } => {
                    let peer = self.links.get(&session).map(|l| l.device);
                    if let Some(peer) = peer {
                        self.emit(PeerEvent::Rejected {
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

    /// Remembers a peer we synced with: its addresses and when.
    fn record_sync(&mut self, device: DeviceId, vault: VaultId) {
        let now = now_ms();
        let record = self
            .peers
            .entry(device)
            .or_insert_with(|| PeerRecord::new(device));
        record.last_seen_ms = now;
        let fingerprint = self.node.fingerprint(&vault).unwrap_or_default();
        record.last_synced.insert(vault, (now, fingerprint));
        if let Some(peer) = peer_of(&device)
            && let Some(addresses) = self.identified.get(&peer)
        {
            for address in addresses.iter().rev() {
                record.add_address(&address.to_string());
            }
        }
        let batch = record.to_batch();
        self.commit_quietly(batch);
    }

    fn commit_quietly(&mut self, batch: nexus_core::Batch) {
        if let Err(e) = self.store.commit(batch) {
            self.emit(PeerEvent::Problem(format!("saving the peer table: {e}")));
        }
    }

    /// After a failed commit: drops every session and takes the vaults as the store has
    /// them; peers resync on their next sessions.
    fn reload_from_store(&mut self) {
        let sessions: Vec<SessionId> = self.links.keys().copied().collect();
        for session in sessions {
            self.drop_link(session);
            self.node.session_closed(session);
        }
        // With no sessions left, the refresh only updates the node.
        drop(self.refresh_vaults(now_ms()));
    }

    /// Loads every vault from the store into the node (keeping its sessions); returns
    /// what the node wants done about what changed.
    fn refresh_vaults(&mut self, now: u64) -> Vec<Output> {
        let vaults = match Vault::list(&self.store) {
            Ok(vaults) => vaults,
            Err(e) => {
                self.emit(PeerEvent::Problem(format!("listing vaults: {e}")));
                return Vec::new();
            }
        };
        let mut outputs = Vec::new();
        for id in vaults {
            match Vault::load(&self.store, id, self.node.actor().clone()) {
                Ok(vault) => outputs.push(self.node.refresh_vault(vault, now)),
                Err(e) => self.emit(PeerEvent::Problem(format!("reloading vault {id}: {e}"))),
            }
        }
        outputs
    }

    /// Takes in what other processes wrote to the database. (SQLite's `data_version`
    /// moves only for other connections' commits, never for ours.)
    fn poll_store(&mut self, now: u64) {
        let version = match self.store.data_version() {
            Ok(version) => version,
            Err(e) => {
                self.emit(PeerEvent::Problem(format!("reading the database: {e}")));
                return;
            }
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        for out in self.refresh_vaults(now) {
            // A failed commit is reported and recovered from inside.
            let _ = self.carry_out(out);
        }
        // Peers added by `nexus peer add`.
        if let Ok((records, _)) = PeerRecord::load_all(&self.store) {
            for record in records {
                let known = self.peers.contains_key(&record.device);
                if !known && let Some(peer) = peer_of(&record.device) {
                    self.peers.insert(record.device, record);
                    self.next_dial.insert(peer, now);
                }
            }
        }
    }

    fn finish_joins(&mut self, now: u64) {
        for join in &mut self.joins {
            if join.deadline_ms <= now
                && let Some(reply) = join.reply.take()
            {
                let reason = join
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no member of the vault could be reached".into());
                let vault = join.code.vault;
                let _ = reply.send(Reply::Failed(format!(
                    "joining vault {vault} failed: {reason}"
                )));
            }
        }
        self.joins.retain(|j| j.deadline_ms > now);
    }

    // ---- the control socket -------------------------------------------------------------

    fn on_control(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Status => {
                let _ = reply.send(Reply::Status(Box::new(self.status())));
            }
            Request::Dial { address } => {
                self.dial_address(address);
                let _ = reply.send(Reply::Dialed);
            }
            Request::Join { code } => self.join(code, Some(reply)),
        }
    }

    /// What `nexus status` shows.
    pub fn status(&self) -> Status {
        let me = self.node.device_id();
        let local = *self.swarm.local_peer_id();
        let sessions: Vec<(SessionId, DeviceId, Option<VaultId>, bool)> =
            self.node.sessions().collect();
        let vaults = self.node.vaults().map(|v| {
            let summary = VaultSummary::of(v, &me);
            let sessions = sessions
                .iter()
                .filter(|(_, _, vault, _)| *vault == Some(v.id()));
            VaultStatus {
                member: Some(summary.role.is_some()),
                sessions: sessions
                    .map(|&(_, device_id, _, syncing)| SessionStatus { device_id, syncing })
                    .collect(),
                ..VaultStatus::stored(summary, self.peers.values())
            }
        });
        let peers = self.peers.values().map(|r| {
            let peer = peer_of(&r.device);
            PeerStatus {
                relay: Some(peer.is_some_and(|p| self.relays.contains_key(&p))),
                connected: peer.is_some_and(|p| self.connected.contains(&p)),
                ..PeerStatus::stored(r)
            }
        });
        let with_id = |a: &Multiaddr| {
            if a.iter().last() == Some(Protocol::P2p(local)) {
                a.clone()
            } else {
                a.clone().with(Protocol::P2p(local))
            }
        };
        Status {
            running: true,
            device_id: me,
            home: Some(self.home.clone()),
            listening: self.listening.iter().map(with_id).collect(),
            connected: self.connected.iter().filter_map(device_of).collect(),
            vaults: vaults.collect(),
            peers: peers.collect(),
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: the shutdown future for [`NativePeer::run`]
/// in a program that runs until it is told to stop.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}
