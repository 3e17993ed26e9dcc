//! The app's side of a running [`WebEngine`]: typed commands with replies, carried out by
//! the runtime between network events.

use futures::SinkExt;
use futures::channel::{mpsc, oneshot};
use libp2p::Multiaddr;
use nexus_core::node::{Node, Output};
use nexus_core::{DeviceId, InviteCode, VaultError, VaultId};
use thiserror::Error;

use super::idb::IdbError;
use super::runtime::{PendingConnect, WEB_CONNECT_TIMEOUT, WebEngine};
use super::tabs::TabMessage;
use crate::engine::EngineEvent;
use crate::engine::now_ms;
use crate::p2p::{device_of, split_peer};

/// Commands waiting for the runtime, at most (a caller beyond that waits its turn).
pub(super) const COMMANDS_BOUND: usize = 64;

/// Why a call to the browser engine failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WebError {
    /// IndexedDB failed.
    #[error(transparent)]
    Storage(#[from] IdbError),
    /// The vaults in IndexedDB could not be loaded.
    #[error("loading the vaults from IndexedDB: {0}")]
    Load(#[from] nexus_core::node::NodeLoadError<nexus_core::MemoryStoreError>),
    /// The peer table held in memory could not be read.
    #[error("reading the peer table: {0}")]
    PeerTable(#[from] nexus_core::MemoryStoreError),
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
    Edit(#[from] nexus_core::json::EditError),
    /// The runtime has stopped (closed, or the page is going away).
    #[error("the Nexus engine has stopped")]
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
    /// Times the runtime's loop woke for a deadline (the node's, the supervisor's, a
    /// pending `connect`'s) since it started: an idle tab wakes only for its timers.
    pub wakeups: u64,
}

type ReadFn = Box<dyn FnOnce(&Node)>;
type UpdateFn = Box<dyn FnOnce(&mut Node, u64) -> Result<Output, WebError>>;

/// What the app asks of the runtime; each carries its reply.
pub(crate) enum Command {
    Read(ReadFn),
    Update {
        update: UpdateFn,
        reply: oneshot::Sender<Result<(), WebError>>,
    },
    Connect {
        address: Multiaddr,
        reply: oneshot::Sender<Result<DeviceId, WebError>>,
    },
    Join {
        code: InviteCode,
        reply: oneshot::Sender<Result<VaultId, WebError>>,
    },
    Status(oneshot::Sender<WebStatus>),
    Events(mpsc::UnboundedSender<EngineEvent>),
    Close(oneshot::Sender<()>),
}

/// The app's side of a running [`WebEngine`]. Cheap to clone; every call waits for the
/// runtime to carry it out.
#[derive(Clone)]
pub struct WebHandle {
    device: DeviceId,
    commands: mpsc::Sender<Command>,
}

impl WebHandle {
    pub(super) fn new(device: DeviceId, commands: mpsc::Sender<Command>) -> Self {
        Self { device, commands }
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    async fn send(&self, command: Command) -> Result<(), WebError> {
        self.commands
            .clone()
            .send(command)
            .await
            .map_err(|_| WebError::Stopped)
    }

    /// Reads the node.
    pub async fn read<T: 'static>(
        &self,
        read: impl FnOnce(&Node) -> T + 'static,
    ) -> Result<T, WebError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Read(Box::new(move |node: &Node| {
            let _ = tx.send(read(node));
        })))
        .await?;
        rx.await.map_err(|_| WebError::Stopped)
    }

    /// Changes the node: `update` gets the node and the time (ms since the epoch) and
    /// returns a value and the node's output. Resolves once the output is committed to
    /// IndexedDB (and sent to peers); fails, having sent nothing, when the commit fails.
    pub async fn update<T: 'static>(
        &self,
        update: impl FnOnce(&mut Node, u64) -> Result<(T, Output), WebError> + 'static,
    ) -> Result<T, WebError> {
        let (value_tx, value_rx) = oneshot::channel();
        let (reply, done) = oneshot::channel();
        let update: UpdateFn = Box::new(move |node: &mut Node, now: u64| {
            let (value, out) = update(node, now)?;
            let _ = value_tx.send(value);
            Ok(out)
        });
        self.send(Command::Update { update, reply }).await?;
        done.await.map_err(|_| WebError::Stopped)??;
        value_rx.await.map_err(|_| WebError::Stopped)
    }

    /// Dials `address` and resolves once connected (or after [`WEB_CONNECT_TIMEOUT`]).
    /// The peer is remembered and redialled after network changes. WebSocket addresses
    /// (`/ip4/…/tcp/…/ws/p2p/…`), WebRTC-direct (`/ip4/…/udp/…/webrtc-direct/certhash/…`)
    /// and circuits through a relay (`…/p2p/<relay>/p2p-circuit/p2p/…`) work.
    pub async fn connect(&self, address: Multiaddr) -> Result<DeviceId, WebError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Connect { address, reply }).await?;
        rx.await.map_err(|_| WebError::Stopped)?
    }

    /// Tries an invite: dials its addresses and presents it to members until this device
    /// holds the vault (resolves with its id) or [`super::runtime::WEB_JOIN_TIMEOUT`] passes.
    pub async fn join(&self, code: InviteCode) -> Result<VaultId, WebError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Join { code, reply }).await?;
        rx.await.map_err(|_| WebError::Stopped)?
    }

    /// What the runtime is doing.
    pub async fn status(&self) -> Result<WebStatus, WebError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Status(reply)).await?;
        rx.await.map_err(|_| WebError::Stopped)
    }

    /// Events from now on.
    pub async fn events(&self) -> Result<mpsc::UnboundedReceiver<EngineEvent>, WebError> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Command::Events(tx)).await?;
        Ok(rx)
    }

    /// Stops the runtime: connections close, IndexedDB is closed. Everything already
    /// resolved is stored.
    pub async fn close(&self) -> Result<(), WebError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Close(reply)).await?;
        rx.await.map_err(|_| WebError::Stopped)
    }
}

impl WebEngine {
    /// Carries out one command from the app.
    pub(super) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Read(read) => read(&self.core.node),
            Command::Update { update, reply } => {
                let result = match update(&mut self.core.node, now_ms()) {
                    Ok(out) => self.take_output(out).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Connect { address, reply } => self.connect(address, reply).await,
            Command::Join { code, reply } => self.start_join(code, Some(reply)).await,
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Events(listener) => self.listeners.push(listener),
            Command::Close(reply) => {
                self.stopping = true;
                let _ = reply.send(());
            }
        }
    }

    async fn connect(
        &mut self,
        address: Multiaddr,
        reply: oneshot::Sender<Result<DeviceId, WebError>>,
    ) {
        let (_, target) = split_peer(&address);
        if let Some(device) = target.as_ref().and_then(device_of)
            && self.core.peering.is_connected(&device)
        {
            let _ = reply.send(Ok(device));
            return;
        }
        if !self.leader {
            // The leader tab holds the connections: hand it the address. It is also
            // stored as a peer record, so that a tab that becomes leader later (this one,
            // just after opening, before the lock is granted) dials it too.
            let Some(device) = target.as_ref().and_then(device_of) else {
                let _ = reply.send(Err(WebError::Connect {
                    address: address.to_string(),
                    reason: "the address must end in /p2p/<peer id>".into(),
                }));
                return;
            };
            let _ = self.connect_to(&address).await;
            if let Some(tabs) = &self.tabs {
                tabs.post(&TabMessage::Connect(address.to_string()));
            }
            let _ = reply.send(Ok(device));
            return;
        }
        match self.connect_to(&address).await {
            Ok(connection) => self.connects.push(PendingConnect {
                peer: target,
                connection,
                address,
                deadline_ms: now_ms() + WEB_CONNECT_TIMEOUT.as_millis() as u64,
                up: None,
                reply,
            }),
            Err(reason) => {
                let _ = reply.send(Err(WebError::Connect {
                    address: address.to_string(),
                    reason,
                }));
            }
        }
    }
}
