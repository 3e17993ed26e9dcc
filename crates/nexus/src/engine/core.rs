//! The state both targets' engines hold — the node, its peering supervisor, the session
//! streams — and the steps of carrying out the supervisor's actions that need nothing
//! of the target but its swarm.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use futures::stream::Fuse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, rendezvous};
use nexus_core::node::{Event, Node};
use nexus_core::peering::{Actions, Dial, Input, JoinId, JoinOutcome, Peering, PeeringEvent};
use nexus_core::{Batch, DeviceId, Storage, Vault, VaultId};

use super::EngineEvent;
use super::links::{LinkEvent, Links};
use crate::p2p::{SYNC_PROTOCOL, device_of, peer_of, split_peer};

/// The part of carrying out actions that the target finishes itself.
#[derive(Default)]
#[must_use = "the peer records are to be saved and the events reported"]
pub(crate) struct Finished {
    /// Peer table records to save (a failure loses only the table's news).
    pub(crate) peer_records: Batch,
    /// What to report, in order.
    pub(crate) events: Vec<EngineEvent>,
    /// Invites tried to the end: the target answers whoever asked.
    pub(crate) joins: Vec<(JoinId, VaultId, JoinOutcome)>,
    /// Renew registrations and lookups at connected relays now.
    pub(crate) rendezvous: bool,
    /// Inputs to hand in next (dials that could not start, to retry after a backoff).
    pub(crate) again: Vec<Input>,
    /// Dials that could not start: the addresses and why.
    pub(crate) dial_errors: Vec<(Vec<String>, String)>,
}

/// Why an engine could not set up its core.
#[derive(Debug, thiserror::Error)]
#[error("the sync protocol was registered twice")]
pub(crate) struct ProtocolTaken;

/// The node, its supervisor and the session streams of one engine.
pub(crate) struct Core {
    pub(crate) node: Node,
    pub(crate) peering: Peering,
    pub(crate) links: Links,
    control: libp2p_stream::Control,
    /// The rendezvous names registered at each relay, so that a name left behind by a
    /// key rotation is taken down.
    registered: HashMap<PeerId, BTreeSet<String>>,
}

/// What the session streams bring the engine loop: streams peers opened and the news
/// of the streams' tasks. The loop waits on it beside the target's own events.
pub(crate) struct Inbox {
    incoming: Fuse<libp2p_stream::IncomingStreams>,
    events: futures::channel::mpsc::Receiver<LinkEvent>,
}

/// One piece of news from the [`Inbox`], for [`Core::take`].
pub(crate) enum Delivery {
    Inbound(PeerId, libp2p::Stream),
    Link(LinkEvent),
}

impl Inbox {
    /// The next piece of news (`None` once the streams are gone for good).
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        futures::select! {
            inbound = self.incoming.next() => {
                inbound.map(|(peer, stream)| Delivery::Inbound(peer, stream))
            }
            event = self.events.next() => event.map(Delivery::Link),
        }
    }
}

impl Core {
    /// Takes over `node` and `peering`, and accepts sync streams through `control`;
    /// what the streams bring comes through the [`Inbox`].
    pub(crate) fn new(
        node: Node,
        peering: Peering,
        mut control: libp2p_stream::Control,
    ) -> Result<(Self, Inbox), ProtocolTaken> {
        let incoming = control.accept(SYNC_PROTOCOL).map_err(|_| ProtocolTaken)?;
        let (links, events) = Links::new();
        let core = Self {
            node,
            peering,
            links,
            control,
            registered: HashMap::new(),
        };
        let inbox = Inbox {
            incoming: incoming.fuse(),
            events,
        };
        Ok((core, inbox))
    }

    /// Hands one input to the supervisor.
    pub(crate) fn input(&mut self, input: Input) -> Actions {
        self.peering.handle(&mut self.node, super::at(), input)
    }

    /// When the node or the supervisor next has something to do.
    pub(crate) fn deadline(&self) -> Option<u64> {
        [self.peering.poll_timeout(), self.node.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether `peer` is connected.
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        device_of(peer).is_some_and(|d| self.peering.is_connected(&d))
    }

    /// The stream control the engine opens streams with (the mailbox opens its own).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn control(&self) -> &libp2p_stream::Control {
        &self.control
    }

    /// Takes in news from the [`Inbox`]: the input it is for the supervisor (nothing
    /// for a stream from a peer that is not a Nexus device: it is dropped).
    pub(crate) fn take(&mut self, delivery: Delivery) -> Option<Input> {
        match delivery {
            Delivery::Inbound(peer, stream) => {
                let device = device_of(&peer)?;
                let stream = self.links.hold_inbound(stream);
                Some(Input::Inbound { stream, device })
            }
            Delivery::Link(event) => Some(self.link_input(event)),
        }
    }

    fn link_input(&mut self, event: LinkEvent) -> Input {
        match event {
            LinkEvent::Frame(session, bytes) => Input::Frame { session, bytes },
            LinkEvent::Ended(session) => Input::StreamEnded { session },
            LinkEvent::BadFrame(session, error) => Input::BadFrame { session, error },
            LinkEvent::Opened(open, stream) => {
                self.links.hold_opened(open, stream);
                Input::Opened { open }
            }
            LinkEvent::OpenFailed(open, error) => Input::OpenFailed { open, error },
        }
    }

    /// After the commit of `failed` failed: nothing of it is sent, its streams are
    /// settled (attached, then closed with every other session's), and the node starts
    /// over from what `store` holds, with its own configuration. The supervisor opens
    /// the sessions again at its next tick; peers resync on them.
    pub(crate) fn reload<S: Storage>(
        &mut self,
        mut failed: Actions,
        store: &S,
    ) -> Result<(), String> {
        failed.out.transmits.clear();
        self.links.carry_out(&mut failed);
        let mut actions = self.input(Input::StorageFailed);
        self.links.carry_out(&mut actions);
        self.node = self.node.reloaded(store).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Carries out the actions, once their batch is committed: streams, hang-ups,
    /// dials, opens; returns what the target finishes (peer records to save, events to
    /// report, invites to answer).
    pub(crate) fn after_commit<B: NetworkBehaviour>(
        &mut self,
        mut actions: Actions,
        swarm: &mut Swarm<B>,
    ) -> Finished {
        self.links.carry_out(&mut actions);
        let mut finished = Finished {
            peer_records: std::mem::take(&mut actions.peer_records),
            rendezvous: actions.rendezvous,
            ..Finished::default()
        };
        for device in &actions.disconnect {
            if let Some(peer) = peer_of(device) {
                let _ = swarm.disconnect_peer_id(peer);
            }
        }
        for dial in std::mem::take(&mut actions.dial) {
            if let Err(problem) = dial_with(swarm, &dial, |d| self.peering.is_relay(d)) {
                finished.events.push(EngineEvent::Problem(problem.clone()));
                finished.dial_errors.push((dial.addresses.clone(), problem));
                if let Some(device) = dial.device {
                    // Retried after a backoff.
                    finished.again.push(Input::DialNotStarted { device });
                }
            }
        }
        for open in &actions.open {
            if let Some(peer) = peer_of(&open.device) {
                self.links.open(&self.control, peer, open.id);
            }
        }
        for event in std::mem::take(&mut actions.out.events) {
            if let Some(event) = self.report(event) {
                finished.events.push(event);
            }
        }
        for event in actions.events {
            match event {
                PeeringEvent::SessionRefused {
                    peer,
                    vault,
                    reason,
                } => finished.events.push(EngineEvent::SessionRefused {
                    peer,
                    vault,
                    reason,
                }),
                PeeringEvent::Rejected { peer, error } => {
                    finished.events.push(EngineEvent::Rejected {
                        peer,
                        error: error.to_string(),
                    })
                }
                PeeringEvent::JoinFinished { id, vault, outcome } => {
                    finished.joins.push((id, vault, outcome))
                }
                PeeringEvent::Problem(problem) => {
                    finished.events.push(EngineEvent::Problem(problem))
                }
                _ => {}
            }
        }
        finished
    }

    fn report(&self, event: Event) -> Option<EngineEvent> {
        Some(match event {
            Event::DocChanged { vault, doc } => {
                let heads = self
                    .node
                    .vault(&vault)
                    .and_then(|v| v.document(&doc))
                    .map(|d| d.heads())
                    .unwrap_or_default();
                EngineEvent::DocChanged { vault, doc, heads }
            }
            Event::MembershipChanged { vault } => EngineEvent::MembershipChanged(vault),
            Event::VaultJoined { vault } => EngineEvent::VaultJoined(vault),
            Event::VaultOffered { vault, by } => {
                let offers = self.node.offers();
                let name = offers.into_iter().find(|o| o.vault == vault)?.name;
                EngineEvent::VaultOffered { vault, name, by }
            }
            Event::SessionReady { vault, peer, .. } => EngineEvent::SessionReady { vault, peer },
            _ => return None,
        })
    }

    // ---- rendezvous ---------------------------------------------------------------------

    /// Registers this device's and every vault's rendezvous name at `relay`, and takes
    /// down the names registered there before that no longer apply (a vault key rotated:
    /// the revoked device must not find the members under the old name).
    pub(crate) fn register_at(
        &mut self,
        rendezvous: &mut rendezvous::client::Behaviour,
        relay: PeerId,
    ) -> Result<(), String> {
        let key = self.node.key();
        let names: BTreeSet<String> =
            std::iter::once(Vault::device_rendezvous_namespace(&self.node.device_id()))
                .chain(self.node.vaults().map(|v| v.rendezvous_namespace(key)))
                .collect();
        let before = self
            .registered
            .insert(relay, names.clone())
            .unwrap_or_default();
        for stale in before.difference(&names) {
            if let Ok(namespace) = rendezvous::Namespace::new(stale.clone()) {
                rendezvous.unregister(namespace, relay);
            }
        }
        for name in names {
            let Ok(namespace) = rendezvous::Namespace::new(name) else {
                continue;
            };
            rendezvous
                .register(namespace, relay, None)
                .map_err(|e| format!("registering at relay {relay}: {e}"))?;
        }
        Ok(())
    }

    /// Looks up the members of every vault at `relay`, and by device the members that
    /// are not connected (those approved by DeviceId cannot register under the vault's
    /// name before they hold it) and the inviters of invites being tried.
    pub(crate) fn discover_at(
        &self,
        rendezvous: &mut rendezvous::client::Behaviour,
        relay: PeerId,
    ) {
        let me = self.node.device_id();
        let key = self.node.key();
        let mut namespaces: Vec<String> = self
            .node
            .vaults()
            .flat_map(|v| v.rendezvous_lookups(key))
            .collect();
        let mut unconnected: Vec<DeviceId> = self
            .node
            .vaults()
            .filter(|v| v.membership().is_member(&me))
            .flat_map(|v| v.membership().members().keys().copied().collect::<Vec<_>>())
            .filter(|d| *d != me && !self.peering.is_connected(d))
            .collect();
        unconnected.extend(self.peering.unconnected_inviters());
        unconnected.sort();
        unconnected.dedup();
        namespaces.extend(unconnected.iter().map(Vault::device_rendezvous_namespace));
        for namespace in namespaces {
            if let Ok(namespace) = rendezvous::Namespace::new(namespace) {
                rendezvous.discover(Some(namespace), None, None, relay);
            }
        }
    }

    /// Reads an event of the rendezvous client: members found are dialed at the
    /// addresses this target can use (`usable`); a failed registration is a problem to
    /// report.
    pub(crate) fn on_rendezvous_event<B: NetworkBehaviour>(
        &self,
        swarm: &mut Swarm<B>,
        event: rendezvous::client::Event,
        usable: impl Fn(&Multiaddr) -> bool,
    ) -> Option<EngineEvent> {
        match event {
            rendezvous::client::Event::Discovered { registrations, .. } => {
                let me = *swarm.local_peer_id();
                for registration in registrations {
                    let peer = registration.record.peer_id();
                    if peer == me || self.is_connected(&peer) {
                        continue;
                    }
                    let addresses: Vec<Multiaddr> = registration
                        .record
                        .addresses()
                        .iter()
                        .filter(|a| usable(a))
                        .cloned()
                        .collect();
                    if !addresses.is_empty() {
                        let _ = swarm.dial(device_dial(peer, addresses, false));
                    }
                }
                None
            }
            rendezvous::client::Event::RegisterFailed { error, .. } => Some(EngineEvent::Problem(
                format!("registering at a rendezvous point failed: {error:?}"),
            )),
            _ => None,
        }
    }

    /// Registers again (where this device has a circuit address) and looks members up
    /// again at every connected relay: new vaults, members that came online.
    pub(crate) fn rendezvous_round(
        &mut self,
        rendezvous: &mut rendezvous::client::Behaviour,
        registrable: &HashSet<PeerId>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let relays: Vec<PeerId> = self
            .peering
            .relays()
            .filter(|r| self.peering.is_connected(r))
            .filter_map(peer_of)
            .collect();
        for relay in relays {
            if registrable.contains(&relay)
                && let Err(problem) = self.register_at(rendezvous, relay)
            {
                problems.push(problem);
            }
            self.discover_at(rendezvous, relay);
        }
        problems
    }
}

/// Dials what the supervisor asked for: a known device at its addresses, or one address.
/// `relay`: the device dialed serves as a relay ([`device_dial`] says why that matters).
fn dial_with<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    dial: &Dial,
    relay: impl Fn(&DeviceId) -> bool,
) -> Result<(), String> {
    let addresses: Vec<Multiaddr> = dial
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let result = match (dial.device.as_ref().and_then(peer_of), addresses.as_slice()) {
        // With no address of its own, the swarm's address book is tried.
        (Some(peer), _) => swarm.dial(device_dial(
            peer,
            addresses.clone(),
            dial.device.as_ref().is_some_and(&relay),
        )),
        (None, [address]) => {
            let (bare, peer) = split_peer(address);
            match peer {
                Some(peer) => {
                    swarm.add_peer_address(peer, bare.clone());
                    let to_relay = device_of(&peer).is_some_and(|d| relay(&d));
                    swarm.dial(address_dial(address.clone(), to_relay))
                }
                None => swarm.dial(address_dial(address.clone(), false)),
            }
        }
        _ => return Err(format!("no address to dial in {:?}", dial.addresses)),
    };
    result.map_err(|e| format!("dialing {}: {e}", dial.addresses.join(", ")))
}

/// How a device is dialed. A device is dialed from a new local port, a relay from the
/// listen port. Two listening devices that dial each other at the same moment from their
/// listen ports get one TCP connection by simultaneous open, which both sides then start
/// as the initiator: the handshake fails on both, and neither dials again (two daemons
/// that found each other by mDNS did, about one start in sixty). A relay keeps the listen
/// port: the address it observes is then the one hole punching needs.
pub(crate) fn device_dial(peer: PeerId, addresses: Vec<Multiaddr>, relay: bool) -> DialOpts {
    let opts = DialOpts::peer_id(peer).addresses(addresses);
    if relay {
        opts.build()
    } else {
        opts.allocate_new_port().build()
    }
}

/// [`device_dial`] for one address, which may name its device (`/p2p/<id>`) or not.
fn address_dial(address: Multiaddr, relay: bool) -> DialOpts {
    let opts = DialOpts::unknown_peer_id().address(address);
    if relay {
        opts.build()
    } else {
        opts.allocate_new_port().build()
    }
}

/// `address` with `/p2p/<local>` at its end.
pub(crate) fn with_local_peer(address: &Multiaddr, local: PeerId) -> Multiaddr {
    if address.iter().last() == Some(Protocol::P2p(local)) {
        address.clone()
    } else {
        address.clone().with(Protocol::P2p(local))
    }
}
