//! The browser peer runtime: one [`nexus_core::Node`] under its
//! [`nexus_core::peering::Peering`] supervisor, on an [`IdbStore`], driven by the browser
//! swarm on the page's event loop.
//!
//! The policy (which sessions, whom to dial, when) is the core's, shared with the native
//! runtime; what the supervisor asks is carried out in its order (commit to IndexedDB and
//! wait for the transaction to complete, then send, then close, then report), so nothing
//! a peer hears about can be lost by a reload. What is the browser's own lives here: a
//! browser only dials (native peers and relays over WebSocket or WebRTC-direct, other
//! browsers through a relay's circuit); a peer that announces the relay hop protocol is
//! used as a relay (a slot is reserved there and the vaults' members are met at its
//! rendezvous point); the tabs of a profile are one device, whose leader tab holds the
//! connections; the browser says when the network comes back (`online`); opening reads
//! IndexedDB a slice at a time.
//!
//! The app talks to the runtime through a [`WebHandle`]: each call is a command the
//! runtime carries out between network events, so the node is never touched from two
//! places. The loop sleeps until the node's or the supervisor's next deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use nexus_core::node::{Node, NodeConfig, NodeLoader, Output};
use nexus_core::peering::{Actions, Input, JoinId, JoinOutcome, Peering, PeeringConfig};
use nexus_core::peers::PeerRecord;
use nexus_core::{ActorId, DeviceId, DeviceKey, InviteCode, Touched, VaultId};
use wasm_bindgen::closure::Closure;

mod page;
mod swarm_events;
mod target;

use super::handle::Command;
pub use super::handle::{WebError, WebHandle, WebPeerStatus, WebStatus};
use super::idb::IdbStore;
use super::online::{navigator_online, watch_online};
use super::swarm::{WebBehaviour, WebBehaviourEvent, build_web_swarm};
use super::tabs::{TabMessage, Tabs};
use crate::engine::connections::Connection;
use crate::engine::core::{Core, Delivery, Inbox, with_local_peer};
use crate::engine::reservations::Reservations;
use crate::engine::run::Target;
use crate::engine::{EngineEvent, now_ms};
use crate::p2p::{RELAY_HOP_PROTOCOL, device_of, split_peer};

/// Failed reads of another tab's commit in a row before they are given up (the tab then
/// shows what it has until it reloads, and says so).
const MAX_TAB_READ_FAILURES: u32 = 3;
/// How soon a failed read of another tab's commit is tried again.
const TAB_READ_RETRY_MS: u64 = 100;
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
/// How long `join` tries an invite.
pub const WEB_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `connect` waits for the connection, and at a relay for this browser's slot.
pub const WEB_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often registrations and lookups at relays are renewed: a browser reaches other
/// devices only through relays, so a member that just registered is worth finding sooner
/// than on a desktop.
const DISCOVERY_INTERVAL_MS: u64 = 10_000;

/// The browser's supervisor settings: a tab holds no connections until it leads.
fn peering_config() -> PeeringConfig {
    PeeringConfig::new()
        .with_discovery_interval_ms(DISCOVERY_INTERVAL_MS)
        .with_join_timeout_ms(WEB_JOIN_TIMEOUT.as_millis() as u64)
        .with_connections_held(false)
}

/// What reaches the loop from the page: the network coming and going, other tabs.
pub(crate) enum Internal {
    Online(bool),
    Tab(TabMessage),
    Leader,
}

pub(super) struct PendingConnect {
    pub(super) peer: Option<PeerId>,
    /// The direct dial's connection, whose failure fails the connect (a circuit's is
    /// matched by `peer`).
    pub(super) connection: Option<ConnectionId>,
    pub(super) address: Multiaddr,
    pub(super) deadline_ms: u64,
    /// The connection is up: the device, waiting for identify to tell whether it is a
    /// relay, and then (a relay) for this browser's slot there.
    pub(super) up: Option<(PeerId, DeviceId)>,
    pub(super) reply: oneshot::Sender<Result<DeviceId, WebError>>,
}

/// Builds the node from what IndexedDB holds, [`LOAD_SLICE_MS`] of documents at a time,
/// giving the page a turn in between. Each open (each tab) writes with its own
/// Automerge actor.
async fn load_node(store: &IdbStore, key: DeviceKey, config: NodeConfig) -> Result<Node, WebError> {
    let cache = store.cache();
    let mut loader = NodeLoader::new(cache, key, ActorId::random(), config)?;
    loop {
        let started = now_ms();
        while now_ms().saturating_sub(started) < LOAD_SLICE_MS {
            if loader.step(cache, 8)? {
                return Ok(loader.finish(cache)?);
            }
        }
        crate::rt::yield_to_page().await;
    }
}

/// A running browser peer; the app holds a [`WebHandle`] to it.
pub struct WebEngine {
    pub(super) core: Core,
    pub(super) store: IdbStore,
    pub(super) swarm: Swarm<WebBehaviour>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    commands_rx: mpsc::Receiver<Command>,
    pub(super) listeners: Vec<mpsc::UnboundedSender<EngineEvent>>,
    /// The address each connection we dialled went to.
    dialled: HashMap<PeerId, Multiaddr>,
    pub(super) joins: HashMap<JoinId, Option<oneshot::Sender<Result<VaultId, WebError>>>>,
    next_join: u64,
    pub(super) connects: Vec<PendingConnect>,
    /// Slots asked for and held at relays.
    reservations: Reservations,
    pub(super) reachable_at: Vec<Multiaddr>,
    pub(super) stopping: bool,
    _online_listeners: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    /// This tab's part in the profile's tab coordination.
    pub(super) tabs: Option<Tabs>,
    /// Whether this tab holds the network connections.
    pub(super) leader: bool,
    /// What other tabs committed and this tab has not read back yet.
    from_other_tabs: Vec<Touched>,
    /// Failed attempts in a row at reading what other tabs committed.
    tab_read_failures: u32,
    /// What the leader tab last reported as connected (in follower tabs).
    pub(super) leader_peers: BTreeSet<DeviceId>,
    /// Times the loop woke for a deadline so far.
    pub(super) wakeups: u64,
    /// Dials that could not start since `connect` last looked.
    dial_errors: Vec<(Vec<String>, String)>,
}

impl WebEngine {
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
        let (records, _unreadable) = PeerRecord::load_all(store.cache())?;
        let peering = Peering::new(key.device_id(), peering_config()).with_peer_records(records);
        let swarm = build_web_swarm(&key).map_err(WebError::Network)?;
        let control = swarm.behaviour().stream.new_control();
        let (core, inbox) =
            Core::new(node, peering, control).map_err(|e| WebError::Network(e.to_string()))?;
        let (commands_tx, commands_rx) = mpsc::channel(super::handle::COMMANDS_BOUND);
        let online_listeners = watch_online(&internal_tx);
        if !has_locks {
            // Without Web Locks there is no way to agree on a leader: this tab leads.
            let _ = internal_tx.unbounded_send(Internal::Leader);
        }
        let online = navigator_online();
        let device = core.node.device_id();
        let mut peer = Self {
            core,
            store,
            swarm,
            internal_rx,
            commands_rx,
            listeners: Vec::new(),
            dialled: HashMap::new(),
            joins: HashMap::new(),
            next_join: 0,
            connects: Vec::new(),
            reservations: Reservations::default(),
            reachable_at: Vec::new(),
            stopping: false,
            _online_listeners: online_listeners,
            tabs: Some(tabs),
            leader: false,
            from_other_tabs: Vec::new(),
            tab_read_failures: 0,
            leader_peers: BTreeSet::new(),
            wakeups: 0,
            dial_errors: Vec::new(),
        };
        if !online {
            peer.input(Input::Online(false)).await;
        }
        crate::rt::spawn(peer.run(inbox));
        Ok(WebHandle::new(device, commands_tx))
    }

    async fn run(mut self, mut inbox: Inbox) {
        crate::engine::run::run(&mut self, &mut inbox).await;
        self.core.links.clear();
        for (_, reply) in self.joins.drain() {
            if let Some(reply) = reply {
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

    pub(super) fn emit(&mut self, event: EngineEvent) {
        self.listeners
            .retain(|listener| listener.unbounded_send(event.clone()).is_ok());
    }

    // ---- carrying out what the core decides ---------------------------------------------

    /// Hands one input to the supervisor and carries out what follows.
    pub(super) async fn input(&mut self, input: Input) {
        let actions = self.core.input(input);
        // A failed commit is reported and recovered from inside.
        let _ = self.carry_out(actions).await;
    }

    /// Carries out the output of a node operation called here (an edit, a read-back).
    /// Fails, having sent nothing, when the commit fails.
    pub(super) async fn take_output(&mut self, out: Output) -> Result<(), WebError> {
        let actions = self.core.input(Input::NodeOutput(out));
        self.carry_out(actions).await
    }

    /// Carries out the supervisor's actions in their documented order: commit (and wait
    /// for IndexedDB to complete), tell the other tabs, then streams, dials, reports.
    /// When the commit fails nothing is sent and the node starts over from what
    /// IndexedDB holds.
    async fn carry_out(&mut self, mut actions: Actions) -> Result<(), WebError> {
        let mut again = Vec::new();
        for _ in 0..8 {
            let batch = std::mem::take(&mut actions.out.batch);
            let touched = Touched::of(&batch);
            if !batch.is_empty()
                && let Err(e) = self.store.commit(batch).await
            {
                self.emit(EngineEvent::Problem(format!(
                    "IndexedDB failed ({e}); dropping sessions and reloading"
                )));
                if let Err(e) = self.core.reload(actions, self.store.cache()) {
                    self.emit(EngineEvent::Problem(format!(
                        "reloading from IndexedDB failed: {e}"
                    )));
                }
                return Err(WebError::Storage(e));
            }
            if !touched.is_empty()
                && let Some(tabs) = &self.tabs
            {
                tabs.post(&TabMessage::Changed(touched));
            }
            let finished = self.core.after_commit(actions, &mut self.swarm);
            if !finished.peer_records.is_empty() {
                self.commit_quietly(finished.peer_records).await;
            }
            for event in finished.events {
                self.emit(event);
            }
            for (id, vault, outcome) in finished.joins {
                if let Some(Some(reply)) = self.joins.remove(&id) {
                    let _ = reply.send(match outcome {
                        JoinOutcome::Joined | JoinOutcome::AlreadyMember => Ok(vault),
                        JoinOutcome::Failed(reason) => Err(WebError::Join(reason)),
                    });
                }
            }
            if finished.rendezvous {
                self.rendezvous_round();
            }
            again.extend(finished.again);
            self.dial_errors.extend(finished.dial_errors);
            // Dials that could not start are retried after a backoff: handing them in
            // only schedules, so this ends at once.
            let Some(input) = again.pop() else {
                break;
            };
            actions = self.core.input(input);
        }
        Ok(())
    }

    async fn commit_quietly(&mut self, batch: nexus_core::Batch) {
        if let Err(e) = self.store.commit(batch).await {
            self.emit(EngineEvent::Problem(format!("saving a peer record: {e}")));
        }
    }

    /// Dials `address` for [`WebHandle::connect`]: through the supervisor when the
    /// address names its device (remembered, a circuit through its relay first),
    /// directly otherwise. Returns the connection of a direct dial. Vaults the named
    /// device offers are taken in without asking (see [`Node::expect_offers_from`]).
    pub(crate) async fn connect_to(
        &mut self,
        address: &Multiaddr,
    ) -> Result<Option<ConnectionId>, String> {
        match split_peer(address) {
            (_, Some(target)) if target == *self.swarm.local_peer_id() => {
                Err("that is this device's own address".into())
            }
            (_, Some(target)) => {
                // The person named this device: the vaults it offers are expected.
                if let Some(device) = device_of(&target) {
                    self.core.node.expect_offers_from(device);
                }
                self.dial_errors.clear();
                self.input(Input::Dial {
                    address: address.to_string(),
                })
                .await;
                // A dial that could not even start fails the connect at once.
                match std::mem::take(&mut self.dial_errors).pop() {
                    Some((_, problem)) if self.leader => Err(problem),
                    _ => Ok(None),
                }
            }
            (_, None) => {
                let opts = DialOpts::from(address.clone());
                let connection = opts.connection_id();
                self.swarm.dial(opts).map_err(|e| e.to_string())?;
                Ok(Some(connection))
            }
        }
    }

    /// What the runtime is doing.
    pub(crate) fn status(&self) -> WebStatus {
        let peering = &self.core.peering;
        let ready: Vec<(DeviceId, VaultId)> = self
            .core
            .node
            .sessions()
            .filter_map(|(_, peer, vault, ready)| vault.filter(|_| ready).map(|v| (peer, v)))
            .collect();
        let mut devices: Vec<DeviceId> = peering.peers().keys().copied().collect();
        devices.extend(peering.connected().copied());
        devices.extend(self.leader_peers.iter().copied());
        devices.sort();
        devices.dedup();
        let peers = devices
            .into_iter()
            .map(|device| WebPeerStatus {
                device,
                connected: if self.leader {
                    peering.is_connected(&device)
                } else {
                    self.leader_peers.contains(&device)
                },
                relay: peering.is_relay(&device),
                syncing: ready
                    .iter()
                    .filter(|(d, _)| *d == device)
                    .map(|(_, v)| *v)
                    .collect(),
            })
            .collect();
        WebStatus {
            device: self.core.node.device_id(),
            online: peering.online(),
            leader: self.leader,
            peers,
            reachable_at: self.reachable_at.clone(),
            joining: peering.pending_joins(),
            wakeups: self.wakeups,
        }
    }
}

/// Whether a browser can dial `address`: WebSocket or WebRTC-direct, not through a
/// circuit (those are found at the relay).
fn browser_dialable(address: &Multiaddr) -> bool {
    let mut transport = false;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2pCircuit => return false,
            Protocol::Ws(_) | Protocol::Wss(_) | Protocol::WebRTCDirect => transport = true,
            _ => {}
        }
    }
    transport
}
