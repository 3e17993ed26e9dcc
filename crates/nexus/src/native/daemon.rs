//! The native engine of this device: one [`nexus_core::Node`] on a SQLite store, driven by a
//! libp2p swarm on tokio.
//!
//! Every `/nexus/sync/2` stream is one session of the node (one vault with one peer).
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
mod status;
mod store;
mod swarm_events;
mod target;

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
pub struct NativeConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start (and remember). The vaults these devices offer (by
    /// approving this one) are taken in without asking; others wait as offers.
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

impl Default for NativeConfig {
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

/// Why the runtime could not start or had to stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NativeError {
    /// The swarm could not be built.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] SqliteError),
    /// The vaults could not be loaded.
    #[error("loading the vaults: {0}")]
    Load(Box<nexus_core::node::NodeLoadError<SqliteError>>),
    /// The WebRTC-direct certificate in the home could not be read or made.
    #[error(transparent)]
    Certificate(#[from] super::swarm::CertificateError),
    /// The sync protocol was already taken on this swarm.
    #[error("the sync protocol was registered twice on one swarm")]
    ProtocolTaken,
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The runtime stopped before it could answer.
    #[error("the engine has stopped")]
    Stopped,
    /// The runtime refused a request (an offer that is not waiting, say).
    #[error("refused: {0}")]
    Refused(String),
    /// A local edit failed.
    #[error("editing: {0}")]
    Edit(Box<nexus_core::VaultError>),
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
        reply: oneshot::Sender<Result<(), NativeError>>,
    },
    /// A control-socket request made in the same process.
    Control {
        request: Request,
        reply: oneshot::Sender<Reply>,
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

/// Talks to a running [`NativeEngine`] from elsewhere in the program: local edits made
/// through it are committed, then offered to every connected peer at once.
#[derive(Clone)]
pub struct NativeHandle {
    commands: mpsc::Sender<Command>,
}

impl NativeHandle {
    /// Edits a document: one signed change, committed to the database before this
    /// returns, then sent to the peers that sync the vault.
    pub async fn change<F>(
        &self,
        vault: VaultId,
        doc: nexus_core::DocId,
        edit: F,
    ) -> Result<(), NativeError>
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
            .map_err(|_| NativeError::Stopped)?;
        rx.await.map_err(|_| NativeError::Stopped)?
    }

    /// Asks the running peer what the control socket asks (`status`, `accept` an offered
    /// vault, …), from the same process.
    pub async fn ask(&self, request: Request) -> Result<Reply, NativeError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Control { request, reply })
            .await
            .map_err(|_| NativeError::Stopped)?;
        rx.await.map_err(|_| NativeError::Stopped)
    }

    /// Takes in a vault offered to this device ([`EngineEvent::VaultOffered`]); resolves
    /// once it is stored.
    pub async fn accept_offer(&self, vault: VaultId) -> Result<(), NativeError> {
        match self.ask(Request::Accept { vault }).await? {
            Reply::Joined(_) => Ok(()),
            Reply::Failed(why) => Err(NativeError::Refused(why)),
            other => Err(NativeError::Refused(format!("unexpected answer {other:?}"))),
        }
    }
}

/// A running native peer. Build with [`NativeEngine::start`], then drive with
/// [`NativeEngine::run`].
pub struct NativeEngine {
    home: PathBuf,
    core: Core,
    store: SqliteStore,
    swarm: Swarm<PeerBehaviour>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
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

impl NativeEngine {
    /// Opens the store in `home`, builds the swarm and starts listening. Call inside a
    /// tokio runtime. `events`, if given, receives what happens.
    pub async fn start(
        home: &Path,
        key: DeviceKey,
        config: NativeConfig,
        events: Option<mpsc::UnboundedSender<EngineEvent>>,
    ) -> Result<Self, NativeError> {
        let store = SqliteStore::open(&home.join("nexus.db"))?;
        let node = Node::load(&store, key.clone(), ActorId::random(), config.node)
            .map_err(|e| NativeError::Load(Box::new(e)))?;
        // The WebRTC-direct certificate lives in the home so browsers can keep dialing the
        // same address.
        let certificate = super::swarm::load_or_create_certificate(&home.join("webrtc.pem"))?;
        let mut swarm = build_swarm_with_certificate(&key, config.mdns, Some(&certificate)).await?;
        let control = swarm.behaviour().stream.new_control();
        let mut webrtc = WebRtcWatch::default();
        for address in &config.listen {
            let listener = swarm
                .listen_on(address.clone())
                .map_err(|e| NativeError::Listen {
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
            Core::new(node, peering, control).map_err(|_| NativeError::ProtocolTaken)?;
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
                    return Err(NativeError::Listen {
                        address: address.clone(),
                        reason: "a relay address must end in /p2p/<relay id>".into(),
                    });
                }
            }
        }
        if unreadable > 0 {
            peer.emit(EngineEvent::Problem(format!(
                "{unreadable} unreadable peer records skipped"
            )));
        }
        for address in &config.dial {
            peer.expect_offers_from(address);
            peer.dial_address(address.clone());
        }
        if config.control_socket {
            peer.control_path = Some(home.join(CONTROL_SOCKET));
        }
        Ok(peer)
    }

    /// A handle for local edits while the peer runs.
    pub fn handle(&self) -> NativeHandle {
        NativeHandle {
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

    /// A device the person told this one to dial: the vaults it offers (approvals by id)
    /// are taken in without asking.
    fn expect_offers_from(&mut self, address: &Multiaddr) {
        if let (_, Some(peer)) = split_peer(address)
            && let Some(device) = device_of(&peer)
        {
            self.core.node.expect_offers_from(device);
        }
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
    ) -> Result<(), NativeError> {
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

    fn emit(&self, event: EngineEvent) {
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
                    Err(e) => Err(NativeError::Edit(Box::new(e))),
                };
                let _ = reply.send(result);
            }
            Command::Control { request, reply } => self.on_control(request, reply),
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Deposited(done) => self.on_deposited(*done),
            Internal::Fetched(fetched) => self.on_fetched(*fetched),
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
    fn take_output(&mut self, out: Output) -> Result<(), NativeError> {
        let actions = self.core.input(Input::NodeOutput(out));
        self.carry_out(actions)
    }

    /// Carries out the supervisor's actions in their documented order. Fails (having
    /// sent nothing) when the commit fails.
    fn carry_out(&mut self, mut actions: Actions) -> Result<(), NativeError> {
        let batch = std::mem::take(&mut actions.out.batch);
        if !batch.is_empty()
            && let Err(e) = self.store.commit(batch)
        {
            // Nothing of this output may reach a peer: it was not stored. Start over from
            // what the store holds; peers resync on their next sessions.
            self.emit(EngineEvent::Problem(format!(
                "storage failed ({e}); dropping sessions and reloading from disk"
            )));
            if let Err(e) = self.core.reload(actions, &self.store) {
                self.emit(EngineEvent::Problem(format!(
                    "reloading from disk failed: {e}"
                )));
            }
            return Err(NativeError::Storage(e));
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
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: the shutdown future for [`NativeEngine::run`]
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
