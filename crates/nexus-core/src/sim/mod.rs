//! A deterministic network simulator for devices that run a [`Node`] under a
//! [`Peering`] supervisor, as the engines do: seeded partitions, drops, duplicates,
//! reorders and restarts, with byte and round counters.
//!
//! Everything is driven by one seed, so a failing run replays exactly:
//! `cargo run --release -p nexus-core --example simulate -- --seeds 42..43`.
//!
//! A [`Network`] holds devices (a [`Node`], its [`Peering`] and its [`MemoryStore`]), the
//! links between them and the messages in flight. A link coming up is a connection for
//! both supervisors, which then open sessions exactly as on a real network (both at
//! once, so the tie-break runs); the streams they open, attach, discard and close are
//! carried out here. [`Network::step`] lets time pass, jumping from deadline to deadline
//! ([`Peering::poll_timeout`], [`Node::poll_timeout`], messages due);
//! [`Network::run_until_quiescent`] delivers in synchronous rounds (every message in
//! flight is one round; answers go to the next) and counts rounds and bytes, which is how
//! traffic is measured. [`run_seed`] plays a whole random scenario and checks the
//! invariants after the network heals.

mod fixture;
mod hostile;
mod rng;
mod scenario;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::ActorId;

pub use fixture::{approval_chain, membership_fixture_digest};
pub use hostile::HostileActs;
pub use rng::Rng;
pub use scenario::{Report, Scenario, run_seed};

use crate::identity::{DeviceId, DeviceKey};
use crate::ids::VaultId;
use crate::invite_code::InviteCode;
use crate::node::{Event, Node, NodeConfig, Output, SessionId};
use crate::peering::{Actions, At, InboundId, Input, JoinId, OpenId, Peering, PeeringConfig};
use crate::peers::PeerRecord;
use crate::protocol::JoinRequest;
use crate::storage::{MemoryStore, Storage};

/// The supervisor's timing in the simulator: the engines' rules on a compressed clock,
/// so that cooldowns and handshake timeouts run out within a scenario.
pub const SIM_PEERING: PeeringConfig = PeeringConfig {
    refused_cooldown_ms: 3_000,
    open_failed_cooldown_ms: 300,
    reopen_after_ms: 100,
    ban_ms: 6_000,
    handshake_timeout_ms: 5_000,
    join_timeout_ms: 600_000,
    discovery_interval_ms: 30_000,
    hang_up_after_ms: 500,
    backoff: crate::peers::Backoff {
        base_ms: 1_000,
        cap_ms: 300_000,
    },
    holds_connections: true,
};

/// Fault rates while the network misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Largest extra delay in milliseconds (messages overtake each other).
    pub max_delay_ms: u64,
}

impl Faults {
    /// A perfect network: no loss, no duplicates, in-order delivery.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay_ms: 0,
    };
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
}

#[derive(Debug)]
struct Packet {
    deliver_at: u64,
    seq: u64,
    to: usize,
    session: SessionId,
    /// `None`: the sender closed the stream (after what it sent before).
    bytes: Option<Vec<u8>>,
}

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    /// Its node.
    pub node: Node,
    /// Its peering supervisor.
    pub peering: Peering,
    /// Its durable store.
    pub store: MemoryStore,
    /// Whether its person accepts every vault offered to it (by an approval by id).
    pub accepts_offers: bool,
    key: DeviceKey,
    actor_seed: u8,
}

/// Simulated devices, links and messages in flight.
#[derive(Debug)]
pub struct Network {
    /// The devices.
    pub devices: Vec<Device>,
    /// Current time.
    pub now_ms: u64,
    /// Faults applied to messages sent from now on.
    pub faults: Faults,
    /// Counters since the last reset.
    pub traffic: Traffic,
    /// Sessions refused so far, by either side (each side counts its own view).
    pub refusals: Vec<(usize, crate::node::CloseReason)>,
    rng: Rng,
    config: NodeConfig,
    peering_config: PeeringConfig,
    /// Links that are up, as (low index, high index).
    links: BTreeSet<(usize, usize)>,
    /// (device, session) to (peer device, peer session).
    routes: BTreeMap<(usize, SessionId), (usize, SessionId)>,
    /// Streams being opened: (acceptor, its inbound id) to (opener, its open id).
    accepting: BTreeMap<(usize, InboundId), (usize, OpenId)>,
    /// Streams accepted, waiting for the opener to attach: (opener, open id) to
    /// (acceptor, its session).
    accepted: BTreeMap<(usize, OpenId), (usize, SessionId)>,
    next_stream: u64,
    next_join: u64,
    in_flight: Vec<Packet>,
    seq: u64,
    /// Inputs waiting to be handed to devices (what one device's actions cause at another).
    inputs: VecDeque<(usize, Input)>,
    /// Wake-ups of each device's supervisor so far (ticks handed in).
    pub wakeups: Vec<u64>,
    /// Print every delivered message to stderr (`NEXUS_SIM_TRACE=1`).
    pub trace: bool,
}

impl Network {
    /// `n` devices with deterministic keys from `seed`, on [`SIM_PEERING`].
    pub fn new(n: usize, seed: u64, config: NodeConfig) -> Self {
        Self::with_peering(n, seed, config, SIM_PEERING)
    }

    /// `n` devices with deterministic keys from `seed` and the given supervisor timing.
    pub fn with_peering(n: usize, seed: u64, config: NodeConfig, peering: PeeringConfig) -> Self {
        let mut rng = Rng::new(seed);
        let devices = (0..n)
            .map(|i| {
                let key = DeviceKey::from_secret_bytes(&rng.bytes());
                Device {
                    node: Node::new(key.clone(), actor(i as u8, 0), config),
                    peering: Peering::new(key.device_id(), peering),
                    store: MemoryStore::new(),
                    accepts_offers: true,
                    key,
                    actor_seed: 0,
                }
            })
            .collect();
        Self {
            devices,
            now_ms: 1_000_000,
            faults: Faults::NONE,
            traffic: Traffic::default(),
            refusals: Vec::new(),
            rng,
            config,
            peering_config: peering,
            links: BTreeSet::new(),
            routes: BTreeMap::new(),
            accepting: BTreeMap::new(),
            accepted: BTreeMap::new(),
            next_stream: 0,
            next_join: 0,
            in_flight: Vec::new(),
            seq: 0,
            inputs: VecDeque::new(),
            wakeups: vec![0; n],
            trace: std::env::var_os("NEXUS_SIM_TRACE").is_some(),
        }
    }

    /// The random generator driving this network.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Device `i`'s id.
    pub fn id(&self, i: usize) -> DeviceId {
        self.devices[i].key.device_id()
    }

    fn index_of(&self, device: &DeviceId) -> Option<usize> {
        self.devices
            .iter()
            .position(|d| d.key.device_id() == *device)
    }

    /// Carries out the output of a node operation called by hand (a local edit, an
    /// invite, a refreshed vault), through the device's supervisor as an engine does.
    pub fn apply_output(&mut self, from: usize, out: Output) {
        self.input(from, Input::NodeOutput(out));
    }

    /// Device `i` tries an invite made by device `inviter` (the code a person would
    /// paste).
    pub fn join(
        &mut self,
        i: usize,
        inviter: usize,
        vault: VaultId,
        request: JoinRequest,
    ) -> JoinId {
        let id = JoinId(self.next_join);
        self.next_join += 1;
        let code = InviteCode {
            vault,
            invite: request.invite,
            secret: request.secret,
            expires_at_ms: u64::MAX,
            inviter: self.devices[inviter].key.device_id(),
            addresses: Vec::new(),
        };
        self.input(i, Input::Join { id, code });
        id
    }

    /// Hands `input` to device `i` and carries out everything that follows, at every
    /// device, until nothing is left (bounded).
    pub fn input(&mut self, i: usize, input: Input) {
        self.inputs.push_back((i, input));
        for _ in 0..1_000_000 {
            let Some((i, input)) = self.inputs.pop_front() else {
                return;
            };
            let at = At {
                now_ms: self.now_ms,
                random: self.rng.next_u64(),
            };
            let device = &mut self.devices[i];
            let actions = device.peering.handle(&mut device.node, at, input);
            self.carry_out(i, actions);
        }
        panic!("the simulated devices keep causing each other inputs");
    }

    /// Carries out one device's actions in the documented order.
    fn carry_out(&mut self, from: usize, actions: Actions) {
        let mut batch = actions.out.batch;
        batch.extend(actions.peer_records);
        if let Err(e) = self.devices[from].store.commit(batch) {
            // The in-memory store has no limit; a failure here is a simulator bug.
            panic!("device {from}: commit failed: {e}");
        }
        for stream in actions.reject_inbound {
            if let Some((opener, open)) = self.accepting.remove(&(from, stream)) {
                let error = "refused".to_owned();
                self.inputs
                    .push_back((opener, Input::OpenFailed { open, error }));
            }
        }
        for (stream, session) in actions.attach_inbound {
            if let Some((opener, open)) = self.accepting.remove(&(from, stream)) {
                self.accepted.insert((opener, open), (from, session));
                self.inputs.push_back((opener, Input::Opened { open }));
            }
        }
        for (open, session) in actions.attach_opened {
            if let Some((acceptor, theirs)) = self.accepted.remove(&(from, open)) {
                self.routes.insert((from, session), (acceptor, theirs));
                self.routes.insert((acceptor, theirs), (from, session));
            }
        }
        for open in actions.discard_opened {
            if let Some((acceptor, theirs)) = self.accepted.remove(&(from, open)) {
                self.inputs
                    .push_back((acceptor, Input::StreamEnded { session: theirs }));
            }
        }
        for (session, bytes) in actions.out.transmits {
            self.send(from, session, Some(bytes));
        }
        for session in actions.detach {
            self.send(from, session, None);
            self.routes.remove(&(from, session));
        }
        for device in actions.disconnect {
            if let Some(j) = self.index_of(&device) {
                self.disconnect(from, j);
            }
        }
        for open in actions.open {
            let linked = self
                .index_of(&open.device)
                .filter(|&j| self.is_connected(from, j));
            match linked {
                Some(j) => {
                    let stream = InboundId(self.next_stream);
                    self.next_stream += 1;
                    self.accepting.insert((j, stream), (from, open.id));
                    let device = self.id(from);
                    self.inputs
                        .push_back((j, Input::Inbound { stream, device }));
                }
                None => {
                    let error = "no connection".to_owned();
                    self.inputs.push_back((
                        from,
                        Input::OpenFailed {
                            open: open.id,
                            error,
                        },
                    ));
                }
            }
        }
        for event in &actions.out.events {
            match event {
                Event::Rejected { error, .. } if self.trace => {
                    eprintln!("t={} device {from} rejected: {error}", self.now_ms);
                }
                Event::VaultOffered { vault, .. } if self.devices[from].accepts_offers => {
                    if let Ok(out) = self.devices[from].node.accept_offer(*vault, self.now_ms) {
                        self.inputs.push_back((from, Input::NodeOutput(out)));
                    }
                }
                _ => {}
            }
        }
        for event in actions.events {
            if let crate::peering::PeeringEvent::SessionRefused { reason, .. } = event {
                self.refusals.push((from, reason));
            }
        }
    }

    fn send(&mut self, from: usize, session: SessionId, bytes: Option<Vec<u8>>) {
        let Some(&(to, peer_session)) = self.routes.get(&(from, session)) else {
            return; // the link is gone
        };
        let Some(bytes) = bytes else {
            // A close follows everything sent before it, however late that arrives.
            self.seq += 1;
            self.in_flight.push(Packet {
                deliver_at: self.now_ms + self.faults.max_delay_ms,
                seq: self.seq,
                to,
                session: peer_session,
                bytes: None,
            });
            return;
        };
        self.traffic.messages += 1;
        self.traffic.bytes += bytes.len() as u64;
        if self.faults.drop > 0.0 && self.rng.chance(self.faults.drop) {
            return;
        }
        let copies = if self.faults.duplicate > 0.0 && self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.below(self.faults.max_delay_ms + 1);
            self.seq += 1;
            self.in_flight.push(Packet {
                deliver_at: self.now_ms + delay,
                seq: self.seq,
                to,
                session: peer_session,
                bytes: Some(bytes.clone()),
            });
        }
    }

    /// Sends `bytes` on every session device `from` has, as if its node had: what a hostile
    /// device adds to what its node does.
    pub fn inject(&mut self, from: usize, bytes: &[u8]) {
        let sessions: Vec<SessionId> = self
            .routes
            .keys()
            .filter(|(device, _)| *device == from)
            .map(|(_, session)| *session)
            .collect();
        for session in sessions {
            self.send(from, session, Some(bytes.to_vec()));
        }
    }

    /// Brings the link between `a` and `b` up: both supervisors see a connection and
    /// open the sessions it should carry.
    pub fn connect(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if a == b || !self.links.insert(key) {
            return;
        }
        let (ida, idb) = (self.id(a), self.id(b));
        self.inputs.push_back((
            a,
            Input::Connected {
                device: idb,
                dialed: None,
            },
        ));
        self.input(
            b,
            Input::Connected {
                device: ida,
                dialed: None,
            },
        );
    }

    /// Takes the link down: its sessions end and its messages in flight are lost.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if !self.links.remove(&key) {
            return;
        }
        let mut gone = Vec::new();
        self.routes.retain(|(dev, sid), (peer, _)| {
            let on_link = (*dev.min(peer), *dev.max(peer)) == key;
            if on_link {
                gone.push((*dev, *sid));
            }
            !on_link
        });
        self.in_flight
            .retain(|p| !gone.contains(&(p.to, p.session)));
        self.accepting.retain(|(acceptor, _), (opener, _)| {
            (*acceptor.min(opener), *acceptor.max(opener)) != key
        });
        self.accepted.retain(|(opener, _), (acceptor, _)| {
            (*opener.min(acceptor), *opener.max(acceptor)) != key
        });
        for (dev, session) in gone {
            self.inputs.push_back((dev, Input::StreamEnded { session }));
        }
        let (ida, idb) = (self.id(a), self.id(b));
        self.inputs
            .push_back((a, Input::Disconnected { device: idb }));
        self.input(b, Input::Disconnected { device: ida });
    }

    /// Whether a link is up.
    pub fn is_connected(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Restarts a device: its sessions are lost, its store (peer table included) is kept
    /// and reloaded.
    pub fn restart(&mut self, i: usize) {
        let peers: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for (a, b) in &peers {
            self.disconnect(*a, *b);
        }
        let device = &mut self.devices[i];
        device.actor_seed = device.actor_seed.wrapping_add(1);
        match Node::load(
            &device.store,
            device.key.clone(),
            actor(i as u8, device.actor_seed),
            self.config,
        ) {
            Ok(node) => device.node = node,
            Err(e) => panic!("device {i}: reload after restart failed: {e}"),
        }
        let records = PeerRecord::load_all(&device.store)
            .map(|(records, _)| records)
            .unwrap_or_default();
        device.peering =
            Peering::new(device.key.device_id(), self.peering_config).with_peer_records(records);
        for (a, b) in peers {
            self.connect(a, b);
        }
    }

    /// Delivers one packet.
    fn deliver(&mut self, packet: Packet) {
        let Some(&(from, _)) = self.routes.get(&(packet.to, packet.session)) else {
            return;
        };
        let Some(bytes) = packet.bytes else {
            self.routes.remove(&(packet.to, packet.session));
            self.input(
                packet.to,
                Input::StreamEnded {
                    session: packet.session,
                },
            );
            return;
        };
        if self.trace {
            let text = crate::protocol::Message::decode(&bytes)
                .map(|m| format!("{m:?}"))
                .unwrap_or_else(|e| e.to_string());
            eprintln!("t={} {from} -> {}: {text:.300}", self.now_ms, packet.to);
        }
        let _ = from;
        self.input(
            packet.to,
            Input::Frame {
                session: packet.session,
                bytes,
            },
        );
    }

    /// The earliest deadline of any device (its supervisor's or its node's).
    fn next_deadline(&self) -> Option<u64> {
        self.devices
            .iter()
            .filter_map(|d| min_some(d.peering.poll_timeout(), d.node.poll_timeout()))
            .min()
    }

    /// Lets `ms` pass: jumps from one deadline (a message due, a supervisor's or a
    /// node's timer) to the next, handing each device a tick only when one of its own
    /// deadlines comes; at the end every node gets a turn for its pending work.
    pub fn step(&mut self, ms: u64) {
        let until = self.now_ms + ms;
        for _ in 0..100_000 {
            let packet = self.in_flight.iter().map(|p| p.deliver_at).min();
            let Some(next) = min_some(packet, self.next_deadline()).filter(|t| *t <= until) else {
                break;
            };
            self.now_ms = self.now_ms.max(next);
            self.deliver_due();
            self.tick_due();
        }
        self.now_ms = until;
        self.deliver_due();
        self.tick_due();
        for i in 0..self.devices.len() {
            // One slice of pending work per step, as an engine gives other work a turn.
            if self.devices[i].node.has_work() {
                self.input(i, Input::Work);
            }
        }
    }

    fn deliver_due(&mut self) {
        loop {
            let due: Option<usize> = self
                .in_flight
                .iter()
                .enumerate()
                .filter(|(_, p)| p.deliver_at <= self.now_ms)
                .min_by_key(|(_, p)| (p.deliver_at, p.seq))
                .map(|(i, _)| i);
            let Some(index) = due else {
                break;
            };
            let packet = self.in_flight.swap_remove(index);
            self.deliver(packet);
        }
    }

    fn tick_due(&mut self) {
        for i in 0..self.devices.len() {
            let device = &self.devices[i];
            let due = min_some(device.peering.poll_timeout(), device.node.poll_timeout())
                .is_some_and(|t| t <= self.now_ms);
            if due {
                self.wakeups[i] += 1;
                self.input(i, Input::Tick);
            }
        }
    }

    /// Does every device's pending work ([`Node::work`]) to the end.
    fn finish_work(&mut self) {
        for i in 0..self.devices.len() {
            // Bounded: each call checks a slice or handles one waiting message.
            for _ in 0..100_000 {
                if !self.devices[i].node.has_work() {
                    break;
                }
                self.input(i, Input::Work);
            }
        }
    }

    /// Delivers in synchronous rounds until nothing is in flight or `max_rounds` pass.
    /// Returns the number of rounds (a round trip is two rounds).
    pub fn run_until_quiescent(&mut self, max_rounds: usize) -> usize {
        let mut rounds = 0;
        self.finish_work();
        while !self.in_flight.is_empty() && rounds < max_rounds {
            rounds += 1;
            let mut batch = std::mem::take(&mut self.in_flight);
            batch.sort_by_key(|p| p.seq);
            for packet in batch {
                self.deliver(packet);
            }
            self.finish_work();
        }
        rounds
    }

    /// Number of messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn actor(device: u8, generation: u8) -> ActorId {
    let mut bytes = [0u8; 16];
    bytes[0] = device;
    bytes[1] = generation;
    bytes[15] = 0xac;
    ActorId::from(&bytes[..])
}
