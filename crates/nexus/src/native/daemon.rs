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

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns};
use nexus_core::node::{Node, NodeConfig, Output, SessionId};
use nexus_core::peering::{Actions, Input, JoinId, JoinOutcome, Peering, PeeringConfig};
use nexus_core::peers::PeerRecord;
use nexus_core::{ActorId, DeviceId, DeviceKey, InviteCode, Storage, Vault, VaultId};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::control_socket::{CONTROL_SOCKET, ControlRequest, bind_control, serve_control};
use super::sqlite::{SqliteError, SqliteStore};
use super::swarm::{PeerBehaviour, PeerBehaviourEvent, SwarmError, build_swarm_with_certificate};
use super::webrtc_watch::{Remedy, WebRtcWatch, is_webrtc_direct};
use crate::control::{PeerStatus, Reply, Request, SessionStatus, Status, VaultStatus};
use crate::engine::EngineEvent;
use crate::engine::connections::Connection;
use crate::engine::core::{Core, Delivery, Inbox, with_local_peer};
use crate::engine::now_ms;
use crate::engine::reservations::Reservations;
use crate::p2p::{device_of, split_peer};
use crate::views::VaultSummary;

/// How often the database is checked for other processes' writes (the node and the
/// supervisor wake the loop at their own deadlines).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
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

/// What the runtime reports as it goes: the engine's events, the same on every target.
pub type PeerEvent = EngineEvent;

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

/// Native-only news for the loop: the mailbox's network round trips.
pub(crate) enum Internal {
    Deposited(Box<mailbox::Deposited>),
    Fetched(Box<mailbox::Fetched>),
}

/// A request to the running peer, with its reply.
pub(crate) enum Command {
    Change {
        vault: VaultId,
        doc: nexus_core::DocId,
        edit: Box<dyn EditFn>,
        reply: oneshot::Sender<Result<(), PeerError>>,
    },
}

/// A local edit carried to the running peer.
pub(crate) trait EditFn:
    FnOnce(
        &mut nexus_core::automerge::transaction::Transaction<'_>,
    ) -> Result<(), nexus_core::automerge::AutomergeError>
    + Send
{
}

impl<F> EditFn for F where
    F: FnOnce(
            &mut nexus_core::automerge::transaction::Transaction<'_>,
        ) -> Result<(), nexus_core::automerge::AutomergeError>
        + Send
{
}

/// Commands waiting for the loop, at most (a caller beyond that waits its turn).
const COMMANDS_BOUND: usize = 64;

/// Talks to a running [`NativePeer`] from elsewhere in the program: local edits made
/// through it are committed, then offered to every connected peer at once.
#[derive(Clone)]
pub struct PeerHandle {
    commands: mpsc::Sender<Command>,
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
        let (reply, rx) = oneshot::channel();
        let command = Command::Change {
            vault,
            doc,
            edit: Box::new(edit),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| PeerError::Stopped)?;
        rx.await.map_err(|_| PeerError::Stopped)?
    }
}

/// A running native peer. Build with [`NativePeer::start`], then drive with
/// [`NativePeer::run`].
pub struct NativePeer {
    home: PathBuf,
    core: Core,
    store: SqliteStore,
    swarm: Swarm<PeerBehaviour>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events: Option<mpsc::UnboundedSender<PeerEvent>>,
    listening: Vec<Multiaddr>,
    joins: HashMap<JoinId, Option<oneshot::Sender<Reply>>>,
    next_join: u64,
    data_version: i64,
    control_path: Option<PathBuf>,
    /// Relays we use: their peer id and address.
    relays: HashMap<PeerId, Multiaddr>,
    /// Slots asked for and held at relays.
    reservations: Reservations,
    commands_tx: mpsc::Sender<Command>,
    commands_rx: mpsc::Receiver<Command>,
    mailboxes: mailbox::Mailboxes,
    webrtc: WebRtcWatch,
    /// Times the loop woke for a deadline (the node's or the supervisor's).
    wakeups: Arc<AtomicU64>,
    /// The session streams' news, until the loop runs.
    inbox: Option<Inbox>,
    /// Requests from the control socket, once it is served.
    control_rx: Option<mpsc::UnboundedReceiver<ControlRequest>>,
    /// Resolves when the daemon is to stop.
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// After the shutdown signal: until when bundles still being left are waited for.
    stopping_at: Option<u64>,
    /// When the store is next looked at for other processes' commits.
    store_poll: crate::rt::Ticker,
    last_mailbox_round: u64,
}

/// What reaches the native engine from its own side.
pub(crate) enum NativeEvent {
    Shutdown,
    Swarm(Box<SwarmEvent<PeerBehaviourEvent>>),
    Internal(Internal),
    Control(Request, oneshot::Sender<Reply>),
    Command(Command),
    StorePoll,
}

impl crate::engine::run::Target for NativePeer {
    type Event = NativeEvent;

    async fn next_event(&mut self) -> NativeEvent {
        let shutdown = async {
            match self.shutdown.as_mut() {
                Some(shutdown) => shutdown.await,
                None => std::future::pending().await,
            }
        };
        let control = async {
            match self.control_rx.as_mut() {
                Some(control) => control.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown => NativeEvent::Shutdown,
            event = self.swarm.select_next_some() => NativeEvent::Swarm(Box::new(event)),
            Some(internal) = self.internal_rx.recv() => NativeEvent::Internal(internal),
            Some((request, reply)) = control => NativeEvent::Control(request, reply),
            Some(command) = self.commands_rx.recv() => NativeEvent::Command(command),
            () = self.store_poll.tick() => NativeEvent::StorePoll,
        }
    }

    async fn on_event(&mut self, event: NativeEvent) {
        match event {
            NativeEvent::Shutdown => {
                self.shutdown = None;
                let now = now_ms();
                self.poll_store(now);
                self.mailbox_round(now);
                self.stopping_at = Some(now + SHUTDOWN_GRACE_MS);
            }
            NativeEvent::Swarm(event) => self.on_swarm_event(*event),
            NativeEvent::Internal(internal) => self.on_internal(internal),
            NativeEvent::Control(request, reply) => self.on_control(request, reply),
            NativeEvent::Command(command) => self.on_command(command),
            NativeEvent::StorePoll => {
                // SQLite tells other processes' commits only when asked.
                let now = now_ms();
                self.poll_store(now);
                self.reopen_webrtc_listeners();
                if now.saturating_sub(self.last_mailbox_round) >= 1_000
                    && self.stopping_at.is_none()
                {
                    self.last_mailbox_round = now;
                    self.mailbox_round(now);
                }
            }
        }
    }

    async fn input(&mut self, input: Input) {
        NativePeer::input(self, input);
    }

    async fn deliver(&mut self, delivery: Delivery) {
        if matches!(delivery, Delivery::Inbound(..)) {
            // The peer may be answering something another process just wrote (an invite
            // made with `nexus invite create`): take that in first.
            self.poll_store(now_ms());
        }
        if let Some(input) = self.core.take(delivery) {
            NativePeer::input(self, input);
        }
    }

    fn has_work(&self) -> bool {
        self.core.node.has_work()
    }

    fn deadline(&self) -> Option<u64> {
        [self.core.deadline(), self.stopping_at]
            .into_iter()
            .flatten()
            .min()
    }

    async fn on_deadline(&mut self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        NativePeer::input(self, Input::Tick);
    }

    fn stopping(&self) -> bool {
        self.stopping_at
            .is_some_and(|deadline| !self.mailboxes.busy() || now_ms() >= deadline)
    }
}

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
        let control = swarm.behaviour().stream.new_control();
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
        let peering = Peering::new(
            key.device_id(),
            PeeringConfig::new()
                .with_handshake_timeout_ms(config.handshake_timeout.as_millis() as u64)
                .with_join_timeout_ms(JOIN_TIMEOUT.as_millis() as u64),
        )
        .with_peer_records(records);
        let (core, inbox) =
            Core::new(node, peering, control).map_err(|e| PeerError::Load(e.to_string()))?;
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_BOUND);
        let data_version = store.data_version()?;
        let mut peer = Self {
            home: home.to_owned(),
            core,
            store,
            swarm,
            internal_tx,
            internal_rx,
            events,
            listening: Vec::new(),
            joins: HashMap::new(),
            next_join: 0,
            data_version,
            control_path: None,
            relays: HashMap::new(),
            reservations: Reservations::default(),
            commands_tx,
            commands_rx,
            mailboxes: mailbox::Mailboxes::default(),
            webrtc,
            wakeups: Arc::default(),
            inbox: Some(inbox),
            control_rx: None,
            shutdown: None,
            stopping_at: None,
            store_poll: crate::rt::Ticker::new(POLL_INTERVAL),
            last_mailbox_round: 0,
        };
        peer.init_mailboxes();
        for address in &config.relays {
            match split_peer(address) {
                (_, Some(relay)) => {
                    peer.relays.insert(relay, address.clone());
                    if let Some(device) = device_of(&relay) {
                        peer.input(Input::Relay { device });
                    }
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
        self.core.node.device_id()
    }

    /// The node (vaults, documents, sessions).
    pub fn node(&self) -> &Node {
        &self.core.node
    }

    /// Counts the times the running loop wakes for a deadline of the node or the
    /// supervisor (not for network events, commands or the store's poll): an idle
    /// device wakes only for its timers.
    pub fn wakeup_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.wakeups)
    }

    /// Tries an invite: dials its addresses and presents it to members until this device
    /// holds the vault or [`JOIN_TIMEOUT`] passes. `reply` hears the outcome.
    pub fn join(&mut self, code: InviteCode, reply: Option<oneshot::Sender<Reply>>) {
        let id = JoinId(self.next_join);
        self.next_join += 1;
        self.joins.insert(id, reply);
        self.input(Input::Join { id, code });
    }

    /// Runs until `shutdown` resolves (then waits up to a few seconds for bundles still
    /// being left at a relay).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), PeerError> {
        let (control_tx, control_rx) = mpsc::unbounded_channel::<ControlRequest>();
        let listener = match self.control_path.clone() {
            Some(path) => Some(bind_control(&path)?),
            None => None,
        };
        if let Some(listener) = listener {
            crate::rt::spawn(serve_control(listener, control_tx));
        }
        self.control_rx = Some(control_rx);
        self.shutdown = Some(Box::pin(shutdown));
        if let Some(mut inbox) = self.inbox.take() {
            crate::engine::run::run(&mut self, &mut inbox).await;
        }
        self.core.links.clear();
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

    fn is_connected(&self, peer: &PeerId) -> bool {
        self.core.is_connected(peer)
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Change {
                vault,
                doc,
                edit,
                reply,
            } => {
                let result = match self.core.node.change(vault, doc, edit) {
                    Ok(out) => self.take_output(out),
                    Err(e) => Err(PeerError::Edit(e.to_string())),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Deposited(done) => self.on_deposited(*done),
            Internal::Fetched(fetched) => self.on_fetched(*fetched),
        }
    }

    // ---- the swarm ----------------------------------------------------------------------

    /// Dials `address` (remembered in the peer table; a circuit through its relay first).
    fn dial_address(&mut self, address: Multiaddr) {
        self.input(Input::Dial {
            address: address.to_string(),
        });
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
            // Only a WebRTC-direct handshake that went wrong (not an address the transport
            // refused outright) can leave a socket stuck.
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error: DialError::Transport(attempts),
                ..
            } if attempts.iter().any(|(address, error)| {
                is_webrtc_direct(address) && matches!(error, libp2p::TransportError::Other(_))
            }) =>
            {
                for listener in self.webrtc.on_dial_failure(*connection_id) {
                    self.swarm.remove_listener(listener);
                }
            }
            _ => {}
        }
        if let Some(news) = self.core.connection_news(&mut self.swarm, &event) {
            let _ = self.carry_out(news.actions);
            for event in news.events {
                self.emit(event);
            }
            match news.connection {
                Some(Connection::Up { peer, .. }) => self.on_connected(peer),
                Some(Connection::Down { peer }) => {
                    // A relay's reservation ends with the connection; ask again on
                    // reconnect.
                    self.reservations.lost(&peer);
                }
                Some(Connection::Failed { .. }) | None => {}
            }
            return;
        }
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                self.webrtc.on_listen_addr(listener_id, &address);
                let relayed = address.iter().any(|p| matches!(p, Protocol::P2pCircuit));
                let full = with_local_peer(&address, *self.swarm.local_peer_id());
                if relayed {
                    // A reservation at a relay: others reach us at this address, so it is
                    // what we register at the relay's rendezvous point.
                    self.swarm.add_external_address(address.clone());
                    if let Some(relay) = self.reservations.confirmed(&address) {
                        self.register_at(relay);
                    }
                }
                self.listening.push(address);
                self.emit(PeerEvent::Listening(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening.retain(|a| *a != address);
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
                if let Some(device) = device_of(&peer_id) {
                    let addresses = addresses.iter().map(Multiaddr::to_string).collect();
                    self.input(Input::Identified { device, addresses });
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Rendezvous(event)) => {
                if let Some(problem) = self
                    .core
                    .on_rendezvous_event(&mut self.swarm, event, |_| true)
                {
                    self.emit(problem);
                }
            }
            SwarmEvent::Behaviour(PeerBehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    self.swarm.add_peer_address(peer, address.clone());
                    if !self.is_connected(&peer) {
                        let _ = self.swarm.dial(address.with(Protocol::P2p(peer)));
                    }
                }
            }
            _ => {}
        }
    }

    // ---- rendezvous and listeners ---------------------------------------------------------

    /// A connection came up: at a relay this device uses, a slot is reserved, the
    /// vaults' members are looked up and the mailbox is read soon.
    fn on_connected(&mut self, peer: PeerId) {
        if let Some(address) = self.relays.get(&peer).cloned()
            && self.reservations.ask(peer)
        {
            if let Err(e) = self.swarm.listen_on(address.with(Protocol::P2pCircuit)) {
                self.emit(PeerEvent::Problem(format!(
                    "reserving a slot at relay {peer}: {e}"
                )));
            }
            self.discover_at(peer);
            self.mailboxes.fetch_soon();
        }
    }

    /// Registers every vault's rendezvous name at `relay`.
    fn register_at(&mut self, relay: PeerId) {
        if let Err(problem) = self
            .core
            .register_at(&mut self.swarm.behaviour_mut().rendezvous, relay)
        {
            self.emit(PeerEvent::Problem(problem));
        }
    }

    fn discover_at(&mut self, relay: PeerId) {
        self.core
            .discover_at(&mut self.swarm.behaviour_mut().rendezvous, relay);
    }

    fn rendezvous_round(&mut self) {
        let problems = self.core.rendezvous_round(
            &mut self.swarm.behaviour_mut().rendezvous,
            self.reservations.registrable(),
        );
        for problem in problems {
            self.emit(PeerEvent::Problem(problem));
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

    // ---- carrying out what the core decides ---------------------------------------------

    /// Hands one input to the supervisor and carries out what follows.
    fn input(&mut self, input: Input) {
        let actions = self.core.input(input);
        // A failed commit is reported and recovered from inside.
        let _ = self.carry_out(actions);
    }

    /// Carries out the output of a node operation called here (an edit, a bundle).
    /// Fails, having sent nothing, when the commit fails.
    fn take_output(&mut self, out: Output) -> Result<(), PeerError> {
        let actions = self.core.input(Input::NodeOutput(out));
        self.carry_out(actions)
    }

    /// Carries out the supervisor's actions in their documented order. Fails (having
    /// sent nothing) when the commit fails.
    fn carry_out(&mut self, mut actions: Actions) -> Result<(), PeerError> {
        let batch = std::mem::take(&mut actions.out.batch);
        if !batch.is_empty()
            && let Err(e) = self.store.commit(batch)
        {
            // Nothing of this output may reach a peer: it was not stored. Start over from
            // what the store holds; peers resync on their next sessions.
            self.emit(PeerEvent::Problem(format!(
                "storage failed ({e}); dropping sessions and reloading from disk"
            )));
            if let Err(e) = self.core.reload(actions, &self.store) {
                self.emit(PeerEvent::Problem(format!(
                    "reloading from disk failed: {e}"
                )));
            }
            return Err(PeerError::Storage(e));
        }
        let finished = self.core.after_commit(actions, &mut self.swarm);
        if !finished.peer_records.is_empty() {
            self.commit_quietly(finished.peer_records);
        }
        for event in finished.events {
            self.emit(event);
        }
        for (id, vault, outcome) in finished.joins {
            let Some(Some(reply)) = self.joins.remove(&id) else {
                continue;
            };
            let answer = match outcome {
                JoinOutcome::Joined => Reply::joined(vault, false),
                JoinOutcome::AlreadyMember => Reply::joined(vault, true),
                JoinOutcome::Failed(reason) => {
                    Reply::Failed(format!("joining vault {vault} failed: {reason}"))
                }
            };
            let _ = reply.send(answer);
        }
        if finished.rendezvous {
            self.rendezvous_round();
        }
        for input in finished.again {
            self.input(input);
        }
        Ok(())
    }

    // ---- the store ----------------------------------------------------------------------

    fn commit_quietly(&mut self, batch: nexus_core::Batch) {
        if let Err(e) = self.store.commit(batch) {
            self.emit(PeerEvent::Problem(format!("saving the peer table: {e}")));
        }
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
            match Vault::load(&self.store, id, self.core.node.actor().clone()) {
                Ok(vault) => outputs.push(self.core.node.refresh_vault(vault, now)),
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
            let _ = self.take_output(out);
        }
        // Peers added by `nexus peer add`.
        if let Ok((records, _)) = PeerRecord::load_all(&self.store) {
            self.input(Input::PeerRecords(records));
        }
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
