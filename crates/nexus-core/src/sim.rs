//! A deterministic network simulator for [`Node`]s: seeded partitions, drops, duplicates,
//! reorders and restarts, with byte and round counters.
//!
//! Everything is driven by one seed, so a failing run replays exactly:
//! `cargo run --release -p nexus-core --example simulate -- --seeds 42..43`.
//!
//! A [`Network`] holds devices (a [`Node`] and its [`MemoryStore`]), the links between
//! them and the messages in flight. [`Network::step`] delivers what is due and lets time
//! pass; [`Network::run_until_quiescent`] delivers in synchronous rounds (every message in
//! flight is one round; answers go to the next) and counts rounds and bytes, which is how
//! traffic is measured. [`run_seed`] plays a whole random scenario and checks the
//! invariants after the network heals.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT};

use crate::identity::{DeviceId, DeviceKey};
use crate::ids::{DocId, VaultId};
use crate::membership::Role;
use crate::node::{Event, Node, NodeConfig, Output, SessionId};
use crate::protocol::JoinRequest;
use crate::storage::{MemoryStore, Storage};

/// A small seeded random generator (SplitMix64): deterministic and dependency-free.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

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
    bytes: Vec<u8>,
}

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    /// Its node.
    pub node: Node,
    /// Its durable store.
    pub store: MemoryStore,
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
    rng: Rng,
    config: NodeConfig,
    /// Links that are up, as (low index, high index).
    links: BTreeSet<(usize, usize)>,
    /// (device, session) to (peer device, peer session).
    routes: BTreeMap<(usize, SessionId), (usize, SessionId)>,
    /// (low, high, vault) of each session pair on a link.
    link_sessions: BTreeMap<(usize, usize, VaultId), (usize, SessionId)>,
    in_flight: Vec<Packet>,
    seq: u64,
    /// Invites a device holds (the code a person would paste), by device index.
    pub invites: BTreeMap<usize, (VaultId, JoinRequest)>,
    /// Print every delivered message to stderr (`NEXUS_SIM_TRACE=1`).
    pub trace: bool,
}

impl Network {
    /// `n` devices with deterministic keys from `seed`.
    pub fn new(n: usize, seed: u64, config: NodeConfig) -> Self {
        let mut rng = Rng::new(seed);
        let devices = (0..n)
            .map(|i| {
                let key = DeviceKey::from_secret_bytes(&rng.bytes());
                Device {
                    node: Node::new(key.clone(), actor(i as u8, 0), config),
                    store: MemoryStore::new(),
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
            rng,
            config,
            links: BTreeSet::new(),
            routes: BTreeMap::new(),
            link_sessions: BTreeMap::new(),
            in_flight: Vec::new(),
            seq: 0,
            invites: BTreeMap::new(),
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

    /// Carries out a node's output: commit, route messages, close, react to events.
    pub fn apply_output(&mut self, from: usize, out: Output) {
        if let Err(e) = self.devices[from].store.commit(out.batch) {
            // The in-memory store has no limit; a failure here is a simulator bug.
            panic!("device {from}: commit failed: {e}");
        }
        for (session, bytes) in out.transmits {
            self.send(from, session, bytes);
        }
        for (session, _) in out.closed {
            self.routes.remove(&(from, session));
            self.link_sessions.retain(|_, s| *s != (from, session));
        }
        let mut sessions_may_be_needed = false;
        for event in out.events {
            if self.trace
                && let Event::Rejected { error, .. } = &event
            {
                eprintln!("t={} device {from} rejected: {error}", self.now_ms);
            }
            if matches!(
                event,
                Event::VaultJoined { .. } | Event::MembershipChanged { .. }
            ) {
                sessions_may_be_needed = true;
            }
        }
        if sessions_may_be_needed {
            self.ensure_sessions();
        }
    }

    fn send(&mut self, from: usize, session: SessionId, bytes: Vec<u8>) {
        self.traffic.messages += 1;
        self.traffic.bytes += bytes.len() as u64;
        let Some(&(to, peer_session)) = self.routes.get(&(from, session)) else {
            return; // the link is gone
        };
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
                bytes: bytes.clone(),
            });
        }
    }

    /// Brings the link between `a` and `b` up and opens the sessions it should carry.
    pub fn connect(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if a == b || !self.links.insert(key) {
            return;
        }
        self.ensure_sessions();
    }

    /// Takes the link down: its sessions end and its messages in flight are lost.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if !self.links.remove(&key) {
            return;
        }
        let ended: Vec<(usize, usize, VaultId)> = self
            .link_sessions
            .keys()
            .filter(|(x, y, _)| (*x, *y) == key)
            .copied()
            .collect();
        for k in ended {
            self.link_sessions.remove(&k);
        }
        let mut gone = Vec::new();
        self.routes.retain(|(dev, sid), (peer, _)| {
            let on_link = (*dev.min(peer), *dev.max(peer)) == key;
            if on_link {
                gone.push((*dev, *sid));
            }
            !on_link
        });
        for (dev, sid) in &gone {
            self.devices[*dev].node.session_closed(*sid);
        }
        self.in_flight
            .retain(|p| !gone.contains(&(p.to, p.session)));
    }

    /// Whether a link is up.
    pub fn is_connected(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Restarts a device: its sessions are lost, its store is kept and reloaded.
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
        for (a, b) in peers {
            self.connect(a, b);
        }
    }

    /// Opens, on every link, a session for each vault one side holds and the other side
    /// is a member of (or is joining with an invite).
    pub fn ensure_sessions(&mut self) {
        let links: Vec<(usize, usize)> = self.links.iter().copied().collect();
        for (a, b) in links {
            let mut wanted: Vec<(usize, usize, VaultId, Option<JoinRequest>)> = Vec::new();
            for (opener, other) in [(a, b), (b, a)] {
                let peer = self.id(other);
                for vault in self.devices[opener].node.shared_vaults(&peer) {
                    wanted.push((opener, other, vault, None));
                }
                if let Some((vault, join)) = self.invites.get(&opener).copied()
                    && self.devices[opener].node.vault(&vault).is_none()
                    && self.devices[other].node.vault(&vault).is_some()
                {
                    wanted.push((opener, other, vault, Some(join)));
                }
            }
            for (opener, other, vault, join) in wanted {
                if self.link_sessions.contains_key(&(a, b, vault)) {
                    continue;
                }
                let peer = self.id(other);
                let opener_id = self.id(opener);
                let accepted = self.devices[other].node.accept_session(opener_id);
                let (session, out) =
                    self.devices[opener]
                        .node
                        .open_session(peer, vault, true, join, self.now_ms);
                self.routes.insert((opener, session), (other, accepted));
                self.routes.insert((other, accepted), (opener, session));
                self.link_sessions.insert((a, b, vault), (opener, session));
                self.apply_output(opener, out);
            }
        }
    }

    /// Delivers one packet.
    fn deliver(&mut self, packet: Packet) {
        if !self.routes.contains_key(&(packet.to, packet.session)) {
            return;
        }
        if self.trace {
            let text = crate::protocol::Message::decode(&packet.bytes)
                .map(|m| format!("{m:?}"))
                .unwrap_or_else(|e| e.to_string());
            let from = self.routes[&(packet.to, packet.session)].0;
            eprintln!("t={} {from} -> {}: {text:.300}", self.now_ms, packet.to);
        }
        let out =
            self.devices[packet.to]
                .node
                .handle_message(packet.session, &packet.bytes, self.now_ms);
        self.apply_output(packet.to, out);
    }

    /// Advances time by `ms`: delivers what is due (in delivery order) and ticks every node.
    pub fn step(&mut self, ms: u64) {
        self.now_ms += ms;
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
        for i in 0..self.devices.len() {
            let out = self.devices[i].node.tick(self.now_ms);
            self.apply_output(i, out);
            // One slice of pending work per step, as an engine gives other work a turn.
            if self.devices[i].node.has_work() {
                let out = self.devices[i].node.work(self.now_ms);
                self.apply_output(i, out);
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
                let out = self.devices[i].node.work(self.now_ms);
                self.apply_output(i, out);
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

fn actor(device: u8, generation: u8) -> ActorId {
    let mut bytes = [0u8; 16];
    bytes[0] = device;
    bytes[1] = generation;
    bytes[15] = 0xac;
    ActorId::from(&bytes[..])
}

/// Settings of a random scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Devices in the vault (2–8).
    pub devices: usize,
    /// Random steps before the network heals.
    pub steps: usize,
    /// Faults while the network misbehaves.
    pub faults: Faults,
}

impl Scenario {
    /// Defaults: 4 devices, 120 steps, 5% loss, 5% duplicates, up to 300 ms reordering.
    pub fn new() -> Self {
        Self {
            devices: 4,
            steps: 120,
            faults: Faults {
                drop: 0.05,
                duplicate: 0.05,
                max_delay_ms: 300,
            },
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scenario did, for reports.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Edits made.
    pub edits: usize,
    /// Devices approved by id, invites created, revocations.
    pub approvals: usize,
    /// Invites created.
    pub invites: usize,
    /// Revocations.
    pub revocations: usize,
    /// Restarts.
    pub restarts: usize,
    /// Members at the end.
    pub members: usize,
    /// Traffic.
    pub traffic: Traffic,
}

const DOCS: [DocId; 3] = [DocId([1; 16]), DocId([2; 16]), DocId([3; 16])];
const SIM_CONFIG: NodeConfig = NodeConfig {
    reconcile_interval_ms: 1_000,
    retry_ms: 500,
    // Small, so that random scenarios exercise snapshots as well as changes.
    snapshot_min_changes: 3,
    // And snapshots checked over several steps, with messages waiting behind them.
    verify_slice: 2,
    // And documents bigger than this reach a device with none of them as a snapshot of
    // their first changes and the rest as changes.
    snapshot_max_changes: 5,
};

/// Plays one random scenario from `seed` and checks, after the network heals, that every
/// current member holds the same membership and the same documents, that no store holds
/// a change the rules reject, and that a revoked device's later work is nowhere else.
pub fn run_seed(seed: u64, scenario: Scenario) -> Result<Report, String> {
    let n = scenario.devices.clamp(2, 8);
    let mut net = Network::new(n, seed, SIM_CONFIG);
    let mut report = Report::default();
    let (vault, out) = net.devices[0]
        .node
        .create_vault("sim", net.rng.bytes(), net.now_ms)
        .map_err(|e| e.to_string())?;
    net.apply_output(0, out);
    // Everyone starts connected to everyone; device 0 then brings the others in.
    for a in 0..n {
        for b in a + 1..n {
            net.connect(a, b);
        }
    }
    net.faults = scenario.faults;
    for _ in 0..scenario.steps {
        let roll = net.rng.below(100);
        let i = net.rng.below(n as u64) as usize;
        let member_here = |net: &Network, i: usize| {
            net.devices[i]
                .node
                .vault(&vault)
                .is_some_and(|v| v.membership().is_member(&net.id(i)))
        };
        let admin_here = |net: &Network, i: usize| {
            net.devices[i]
                .node
                .vault(&vault)
                .is_some_and(|v| v.membership().is_admin(&net.id(i)))
        };
        match roll {
            0..=39 if member_here(&net, i) => {
                let doc = DOCS[net.rng.below(DOCS.len() as u64) as usize];
                let exists = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.document(&doc).is_some());
                if !exists {
                    let out = net.devices[i]
                        .node
                        .create_document(vault, doc, net.now_ms)
                        .map_err(|e| e.to_string())?;
                    net.apply_output(i, out);
                }
                let field = format!("f{}", net.rng.below(4));
                let value = net.rng.below(1000) as i64;
                let out = net.devices[i]
                    .node
                    .change(vault, doc, |tx| {
                        tx.put(ROOT, field.as_str(), value).map(|_| ())
                    })
                    .map_err(|e| e.to_string())?;
                net.apply_output(i, out);
                if net.trace
                    && let Some(d) = net.devices[i]
                        .node
                        .vault(&vault)
                        .and_then(|v| v.document(&doc))
                {
                    eprintln!(
                        "t={} device {i} edits {doc}: {}",
                        net.now_ms,
                        d.debug_state()
                    );
                }
                report.edits += 1;
            }
            40..=49 if admin_here(&net, i) => {
                let target = net.rng.below(n as u64) as usize;
                let role = if net.rng.chance(0.3) {
                    Role::Admin
                } else {
                    Role::Member
                };
                let already = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.membership().is_member(&net.id(target)));
                if !already {
                    if net.rng.chance(0.5) {
                        let id = net.id(target);
                        if let Ok(out) = net.devices[i].node.add_device(vault, id, role, net.now_ms)
                        {
                            net.apply_output(i, out);
                            report.approvals += 1;
                        }
                    } else if !net.invites.contains_key(&target) {
                        let secret: [u8; 32] = net.rng.bytes();
                        let expires = net.now_ms + 3_600_000;
                        if let Ok((invite, out)) = net.devices[i]
                            .node
                            .create_invite(vault, &secret, role, expires, net.now_ms)
                        {
                            net.apply_output(i, out);
                            net.invites
                                .insert(target, (vault, JoinRequest { invite, secret }));
                            net.ensure_sessions();
                            report.invites += 1;
                        }
                    }
                }
            }
            50..=52 if admin_here(&net, i) => {
                // Revoke someone other than the creator, so an admin always remains.
                let target = 1 + net.rng.below(n as u64 - 1) as usize;
                let is_member = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.membership().is_member(&net.id(target)));
                if is_member && target != i {
                    let id = net.id(target);
                    if let Ok(out) = net.devices[i].node.revoke_device(vault, id, net.now_ms) {
                        net.apply_output(i, out);
                        report.revocations += 1;
                    }
                }
            }
            53..=62 => {
                let j = net.rng.below(n as u64) as usize;
                if net.is_connected(i, j) {
                    net.disconnect(i, j);
                } else {
                    net.connect(i, j);
                }
            }
            63..=64 => {
                if net.trace {
                    eprintln!("t={} device {i} restarts", net.now_ms);
                }
                net.restart(i);
                report.restarts += 1;
            }
            _ => {}
        }
        let pause = 50 + net.rng.below(100);
        net.step(pause);
    }
    heal(&mut net);
    report.traffic = net.traffic;
    check(&net, vault, &mut report)?;
    Ok(report)
}

/// Stops the faults, reconnects every pair from scratch, and lets the network settle.
fn heal(net: &mut Network) {
    net.faults = Faults::NONE;
    let n = net.devices.len();
    for _ in 0..3 {
        for a in 0..n {
            for b in a + 1..n {
                net.disconnect(a, b);
            }
        }
        for a in 0..n {
            for b in a + 1..n {
                net.connect(a, b);
            }
        }
        for _ in 0..12 {
            net.step(SIM_CONFIG.reconcile_interval_ms);
            net.run_until_quiescent(200);
        }
    }
}

fn check(net: &Network, vault: VaultId, report: &mut Report) -> Result<(), String> {
    let reference = net.devices[0]
        .node
        .vault(&vault)
        .ok_or("the creator lost the vault")?;
    let membership = reference.membership();
    report.members = membership.members().len();
    let members: Vec<usize> = (0..net.devices.len())
        .filter(|&i| membership.is_member(&net.id(i)))
        .collect();
    for &i in &members {
        let v = net.devices[i]
            .node
            .vault(&vault)
            .ok_or_else(|| format!("member {i} does not hold the vault"))?;
        if v.log().heads() != reference.log().heads() {
            return Err(format!(
                "member {i} has different membership heads than device 0"
            ));
        }
        for doc in DOCS {
            let ours = v.document(&doc).map(|d| (d.heads(), d.to_json()));
            let theirs = reference.document(&doc).map(|d| (d.heads(), d.to_json()));
            let ours_heads = ours.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
            let theirs_heads = theirs.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
            if ours_heads != theirs_heads {
                if net.trace {
                    for (k, d) in net.devices.iter().enumerate() {
                        if let Some(x) = d.node.vault(&vault).and_then(|v| v.document(&doc)) {
                            eprintln!("device {k}: {}", x.debug_state());
                        }
                    }
                }
                return Err(format!(
                    "member {i} and device 0 differ on document {doc}: {} vs {} heads",
                    ours_heads.len(),
                    theirs_heads.len()
                ));
            }
            if ours_heads.is_empty() {
                continue;
            }
            if ours.map(|(_, j)| j) != theirs.map(|(_, j)| j) {
                return Err(format!(
                    "member {i} and device 0 have the same heads but different values for {doc}"
                ));
            }
        }
    }
    // Rules 9 and 10 at rest: while the vault has an admin there is a current key, every
    // member holds a copy, and no revoked device does.
    if membership.members().values().any(|m| m.role == Role::Admin) {
        let (current, _) = reference
            .current_key(net.devices[0].node.key())
            .or_else(|| {
                members.iter().find_map(|&i| {
                    let node = &net.devices[i].node;
                    node.vault(&vault)?.current_key(node.key())
                })
            })
            .ok_or("no member holds a current vault key")?;
        for &i in &members {
            let node = &net.devices[i].node;
            let held = node.vault(&vault).and_then(|v| v.current_key(node.key()));
            if held.map(|(hash, _)| hash) != Some(current) {
                return Err(format!("member {i} has no copy of the current vault key"));
            }
        }
        for revoked in membership.revoked().keys() {
            let (_, info) = membership.current_key().ok_or("the current key vanished")?;
            if info.sealed.contains_key(revoked) {
                return Err(format!("revoked device {revoked} holds the current key"));
            }
        }
    }
    // No store of a non-revoked device holds a change the final membership rejects, and
    // every stored signature verifies.
    for (i, device) in net.devices.iter().enumerate() {
        if !membership.is_member(&net.id(i)) {
            // A revoked device (or one whose admission was voided) keeps its own later
            // work, and only it; one that never joined holds nothing.
            continue;
        }
        let Ok(stored) = crate::vault::Vault::load(&device.store, vault, actor(99, 0)) else {
            continue; // never joined
        };
        if stored.log().heads()
            != net.devices[i]
                .node
                .vault(&vault)
                .map(|v| v.log().heads())
                .unwrap_or_default()
        {
            return Err(format!("device {i}: stored membership differs from memory"));
        }
        for doc in stored.documents() {
            if !doc.verify().is_empty() {
                return Err(format!(
                    "device {i}: a stored change in {} fails verification",
                    doc.id()
                ));
            }
            for change in doc.changes_since(&[]) {
                if membership.is_member(&change.author) {
                    continue;
                }
                let Some(revocation) = membership.revocation(&change.author) else {
                    return Err(format!(
                        "device {i} stores a change by a stranger {}",
                        change.author
                    ));
                };
                let seen = revocation.seen.get(&doc.id());
                let inside = automerge::Change::from_bytes(change.bytes.clone())
                    .ok()
                    .and_then(|c| Some(c.seq() <= *seen?.get(c.actor_id().to_bytes())?))
                    .unwrap_or(false);
                if !inside {
                    if net.trace {
                        eprintln!("device {i}: {}", doc.debug_state());
                    }
                    return Err(format!(
                        "device {i} stores work of revoked {} made after its revocation in {}",
                        change.author,
                        doc.id()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A fixed membership story played with deterministic keys and clocks: approvals by id, an
/// invite redeemed twice concurrently, an admin revoked while it approves someone, two
/// admins revoking each other, and key creation, sharing and rotation. Returns the digest
/// of the membership it evaluates to. Signatures and sealing are deterministic, so every
/// platform must give the same digest; tests on native and in the browser compare it with
/// the same recorded value.
pub fn membership_fixture_digest() -> crate::hash::Hash {
    use crate::membership::{MembershipLog, Received};
    use crate::vault::Vault;

    let key = |n: u8| DeviceKey::from_secret_bytes(&[n; 32]);
    let Ok((mut vault, _)) = Vault::create(&key(1), "fixture", [7; 16], 1_000, actor(1, 0)) else {
        return crate::hash::Hash([0; 32]);
    };
    let mut steps = Vec::new();
    steps.push(vault.maintain_keys(&key(1), 1_001).is_ok());
    for (n, role) in [(2, Role::Admin), (3, Role::Admin), (4, Role::Member)] {
        steps.push(
            vault
                .add_device(&key(1), key(n).device_id(), role, 2_000 + u64::from(n))
                .is_ok(),
        );
    }
    steps.push(vault.maintain_keys(&key(1), 2_100).is_ok());
    let secret = [9u8; 32];
    let invite = vault.create_invite(&key(2), &secret, Role::Member, 10_000, 3_000);
    let log = |v: &Vault| -> Vec<crate::membership::SignedEntry> {
        v.log().entries().into_iter().cloned().collect()
    };
    if let Ok((invite, _)) = invite {
        // Two devices redeem the same invite concurrently.
        for (n, at) in [(5u8, 3_500u64), (6, 3_400)] {
            let Some(genesis) = log(&vault).first().cloned() else {
                continue;
            };
            if let Ok(mut replica) = MembershipLog::from_genesis(genesis) {
                let _ = replica.insert_many(log(&vault), Received::STORED);
                if let Ok(entry) = replica.redeem_invite(&key(n), invite, secret, at) {
                    let _ = vault.ingest_entries([entry], Received::STORED);
                }
            }
        }
    }
    // Admin 3 approves device 7 while admin 1 revokes admin 3; admins 2 and 3 revoke each
    // other (3 is junior).
    let mut branch = vault.clone();
    steps.push(
        branch
            .add_device(&key(3), key(7).device_id(), Role::Member, 4_000)
            .is_ok(),
    );
    steps.push(
        branch
            .revoke_device(&key(3), key(2).device_id(), 4_001)
            .is_ok(),
    );
    steps.push(
        vault
            .revoke_device(&key(2), key(3).device_id(), 4_002)
            .is_ok(),
    );
    steps.push(
        vault
            .revoke_device(&key(1), key(3).device_id(), 4_003)
            .is_ok(),
    );
    let _ = vault.ingest_entries(log(&branch), Received::STORED);
    steps.push(vault.maintain_keys(&key(1), 5_000).is_ok());
    steps.push(
        vault
            .revoke_device(&key(1), key(4).device_id(), 6_000)
            .is_ok(),
    );
    steps.push(vault.maintain_keys(&key(2), 6_100).is_ok());
    let summary = format!(
        "{steps:?} {:?} {:?}",
        vault.log().heads(),
        vault.membership()
    );
    crate::hash::Hash::of(&[summary.as_bytes()])
}
