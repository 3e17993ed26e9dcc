//! The peering supervisor's rules, deterministically: which sessions open, the tie-break
//! when both sides open one, cooldowns, bans, hang-ups, redials with backoff, circuit
//! dials, handshake timeouts and invites. Whole stories run in the simulator (which
//! drives `Node` + `Peering` as the engines do); single rules drive one supervisor by hand.

use nexus_core::node::{Node, NodeConfig};
use nexus_core::peering::{
    At, InboundId, Input, JoinId, JoinOutcome, MAX_NEIGHBOURS, NEIGHBOUR_DIALS, Peering,
    PeeringConfig, PeeringEvent,
};
use nexus_core::protocol::{Message, RefuseCode};
use nexus_core::sim::{Network, SIM_PEERING};
use nexus_core::{ActorId, DeviceId, DeviceKey, InviteCode, Role, VaultId};

const CONFIG: NodeConfig = NodeConfig {
    reconcile_interval_ms: 1_000,
    retry_ms: 500,
    snapshot_min_changes: 32,
    verify_slice: 0,
    snapshot_max_changes: 0,
};

fn device(n: u8) -> DeviceKey {
    DeviceKey::from_secret_bytes(&[n; 32])
}

fn at(now_ms: u64) -> At {
    At { now_ms, random: 0 }
}

/// Device 0 creates a vault and approves the others by id; nobody is connected.
fn vault_of(n: usize, seed: u64) -> (Network, VaultId) {
    let mut net = Network::new(n, seed, CONFIG);
    let now = net.now_ms;
    let (vault, out) = net.devices[0]
        .node
        .create_vault("family", [0; 16], now)
        .unwrap();
    net.apply_output(0, out);
    for i in 1..n {
        let id = net.id(i);
        let out = net.devices[0]
            .node
            .add_device(vault, id, Role::Member, now)
            .unwrap();
        net.apply_output(0, out);
    }
    (net, vault)
}

fn sessions_for(net: &Network, i: usize, vault: VaultId) -> Vec<bool> {
    net.devices[i]
        .node
        .sessions()
        .filter(|(_, _, v, _)| *v == Some(vault))
        .map(|(_, _, _, ready)| ready)
        .collect()
}

#[test]
fn two_devices_dialing_each_other_at_once_end_with_one_session_per_vault() {
    for seed in 0..20 {
        let (mut net, vault) = vault_of(2, seed);
        // Device 1 learns of the vault from device 0 first, then both connect again at
        // once: each opens a session for the vault it now shares.
        net.connect(0, 1);
        for _ in 0..5 {
            net.run_until_quiescent(100);
            net.step(1_000);
        }
        assert!(net.devices[1].node.vault(&vault).is_some(), "seed {seed}");
        net.disconnect(0, 1);
        net.connect(0, 1);
        for _ in 0..5 {
            net.run_until_quiescent(100);
            net.step(1_000);
        }
        for i in 0..2 {
            assert_eq!(
                sessions_for(&net, i, vault),
                vec![true],
                "seed {seed}: device {i} has exactly one ready session for the vault"
            );
        }
        let peer = net.id(1);
        let session = net.devices[0].peering.session_of(&peer, &vault).unwrap();
        assert_eq!(net.devices[0].peering.peer_of_session(session), Some(peer));
        assert!(net.refusals.is_empty(), "seed {seed}: {:?}", net.refusals);
    }
}

#[test]
fn a_refused_pair_waits_out_its_cooldown_before_a_new_session() {
    let me = device(1);
    let other = device(2).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let (vault, _) = node.create_vault("v", [0; 16], 1_000).unwrap();
    let _ = node.add_device(vault, other, Role::Member, 1_000).unwrap();
    let config = PeeringConfig::new();
    let mut peering = Peering::new(me.device_id(), config);
    let t0 = 10_000;
    let actions = peering.handle(&mut node, at(t0), connected(other));
    assert_eq!(
        actions.open.len(),
        1,
        "a session for the shared vault opens"
    );
    let open = actions.open[0].id;
    let actions = peering.handle(&mut node, at(t0), Input::Opened { open });
    let session = actions.attach_opened[0].1;
    // The peer refuses (it does not know of the approval yet).
    let refuse = Message::Refuse {
        code: RefuseCode::NotMember,
        reason: "not a member".into(),
    };
    let actions = peering.handle(
        &mut node,
        at(t0 + 10),
        Input::Frame {
            session,
            bytes: refuse.encode(),
        },
    );
    assert_eq!(actions.detach, vec![session]);
    assert!(matches!(
        actions.events.as_slice(),
        [PeeringEvent::SessionRefused { peer, vault: Some(v), reason }]
            if *peer == other && *v == vault && !reason.by_us && reason.code.as_str() == "NOT_MEMBER"
    ));
    assert!(actions.open.is_empty(), "not reopened at once");
    // Nothing opens for the pair until the cooldown ends, however often it is ticked.
    let until = t0 + 10 + config.refused_cooldown_ms;
    assert_eq!(peering.poll_timeout(), Some(until));
    for t in [t0 + 1_000, t0 + 10_000, until - 1] {
        let actions = peering.handle(&mut node, at(t), Input::Tick);
        assert!(actions.open.is_empty(), "reopened at {t}");
    }
    let actions = peering.handle(&mut node, at(until), Input::Tick);
    let actions = if actions.open.is_empty() {
        peering.handle(&mut node, at(until + 1), Input::Tick)
    } else {
        actions
    };
    assert_eq!(actions.open.len(), 1, "reopened once the cooldown ended");
}

fn connected(device: DeviceId) -> Input {
    Input::Connected {
        device,
        dialed: None,
    }
}

#[test]
fn a_circuit_dial_waits_for_its_relay() {
    let me = device(1);
    let relay = device(8).device_id();
    let peer = device(2).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    let relay_address = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}");
    let circuit = format!("{relay_address}/p2p-circuit/p2p/{peer}");
    let actions = peering.handle(
        &mut node,
        at(1_000),
        Input::Dial {
            address: circuit.clone(),
        },
    );
    let dialed: Vec<&str> = actions
        .dial
        .iter()
        .flat_map(|d| d.addresses.iter().map(String::as_str))
        .collect();
    assert_eq!(dialed, vec![relay_address.as_str()], "the relay first");
    assert!(
        !actions.peer_records.is_empty(),
        "the peer's address is kept"
    );
    // Another device connecting does not release the circuit dial.
    let actions = peering.handle(&mut node, at(1_100), connected(device(3).device_id()));
    assert!(actions.dial.is_empty());
    // The relay's connection does.
    let actions = peering.handle(&mut node, at(1_200), connected(relay));
    let dialed: Vec<&str> = actions
        .dial
        .iter()
        .flat_map(|d| d.addresses.iter().map(String::as_str))
        .collect();
    assert_eq!(dialed, vec![circuit.as_str()]);
    // With the relay up, a circuit is dialed at once.
    let other = format!("{relay_address}/p2p-circuit/p2p/{}", device(4).device_id());
    let actions = peering.handle(&mut node, at(1_300), Input::Dial { address: other });
    assert_eq!(actions.dial.len(), 1);
    assert!(actions.dial[0].addresses[0].ends_with(&device(4).device_id().to_string()));
}

#[test]
fn a_stranger_that_never_finishes_its_handshake_is_refused_at_the_timeout_and_hung_up_on() {
    let me = device(1);
    let stranger = device(9).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let config = PeeringConfig::new().with_handshake_timeout_ms(30_000);
    let mut peering = Peering::new(me.device_id(), config);
    let t0 = 50_000;
    let _ = peering.handle(&mut node, at(t0), connected(stranger));
    let actions = peering.handle(
        &mut node,
        at(t0),
        Input::Inbound {
            stream: InboundId(1),
            device: stranger,
        },
    );
    let session = actions.attach_inbound[0].1;
    let deadline = peering.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + 30_001);
    let actions = peering.handle(&mut node, at(deadline - 1), Input::Tick);
    assert!(actions.detach.is_empty(), "not before the timeout");
    let actions = peering.handle(&mut node, at(deadline), Input::Tick);
    assert_eq!(actions.detach, vec![session]);
    let refusal = Message::decode(&actions.out.transmits[0].1).unwrap();
    assert!(matches!(
        refusal,
        Message::Refuse {
            code: RefuseCode::NotMember,
            ..
        }
    ));
    assert!(
        matches!(
            actions.events.as_slice(),
            [PeeringEvent::SessionRefused { peer, vault: None, reason }] if *peer == stranger && reason.by_us
        ),
        "a stranger that never named a vault is refused with none"
    );
    assert_eq!(node.sessions().count(), 0, "the node forgot the session");
    // The refusal gets a moment to reach the stranger, then the connection closes.
    let hang_up = peering.poll_timeout().unwrap();
    assert_eq!(hang_up, deadline + config.hang_up_after_ms);
    let actions = peering.handle(&mut node, at(hang_up), Input::Tick);
    assert_eq!(actions.disconnect, vec![stranger]);
}

#[test]
fn a_relay_is_never_hung_up_on() {
    let me = device(1);
    let relay = device(8).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    let _ = peering.handle(&mut node, at(0), Input::Relay { device: relay });
    let _ = peering.handle(&mut node, at(0), connected(relay));
    let _ = peering.handle(
        &mut node,
        at(0),
        Input::Inbound {
            stream: InboundId(1),
            device: relay,
        },
    );
    let mut disconnects = Vec::new();
    for t in [30_001, 30_501, 31_000, 40_000] {
        disconnects.extend(peering.handle(&mut node, at(t), Input::Tick).disconnect);
    }
    assert!(disconnects.is_empty(), "{disconnects:?}");
}

#[test]
fn a_peer_that_breaks_framing_is_banned_then_let_back() {
    let me = device(1);
    let bad = device(5).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let config = PeeringConfig::new();
    let mut peering = Peering::new(me.device_id(), config);
    let _ = peering.handle(&mut node, at(0), connected(bad));
    let actions = peering.handle(
        &mut node,
        at(0),
        Input::Inbound {
            stream: InboundId(1),
            device: bad,
        },
    );
    let session = actions.attach_inbound[0].1;
    let actions = peering.handle(
        &mut node,
        at(10),
        Input::BadFrame {
            session,
            error: "a frame of 2 GiB".into(),
        },
    );
    assert_eq!(actions.disconnect, vec![bad]);
    assert!(matches!(
        actions.events.as_slice(),
        [PeeringEvent::SessionRefused { reason, .. }] if reason.code == RefuseCode::ProtocolViolation
    ));
    let _ = peering.handle(&mut node, at(20), Input::Disconnected { device: bad });
    // While banned: its connections are closed and its streams dropped.
    let actions = peering.handle(&mut node, at(1_000), connected(bad));
    assert_eq!(actions.disconnect, vec![bad]);
    let actions = peering.handle(
        &mut node,
        at(1_000),
        Input::Inbound {
            stream: InboundId(2),
            device: bad,
        },
    );
    assert_eq!(actions.reject_inbound, vec![InboundId(2)]);
    // After the ban it is heard again.
    let later = 10 + config.ban_ms + 1;
    let actions = peering.handle(
        &mut node,
        at(later),
        Input::Inbound {
            stream: InboundId(3),
            device: bad,
        },
    );
    assert_eq!(actions.attach_inbound.len(), 1);
}

#[test]
fn a_lost_peer_is_redialed_with_growing_backoff_and_at_once_when_the_network_returns() {
    let me = device(1);
    let peer = device(2).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    let address = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}");
    let _ = peering.handle(&mut node, at(0), Input::Dial { address });
    let _ = peering.handle(&mut node, at(0), connected(peer));
    let _ = peering.handle(&mut node, at(1_000), Input::Disconnected { device: peer });
    assert_eq!(
        peering.poll_timeout(),
        Some(2_000),
        "1 s after the first loss"
    );
    let actions = peering.handle(&mut node, at(1_999), Input::Tick);
    assert!(actions.dial.is_empty());
    let actions = peering.handle(&mut node, at(2_000), Input::Tick);
    assert_eq!(actions.dial.len(), 1);
    assert_eq!(actions.dial[0].device, Some(peer));
    assert_eq!(actions.dial[0].addresses, vec!["/ip4/127.0.0.1/tcp/4001"]);
    // Each failure doubles the wait.
    let mut waits = Vec::new();
    let mut now = 2_000;
    for _ in 0..4 {
        let _ = peering.handle(&mut node, at(now), Input::DialFailed { device: peer });
        let due = peering.poll_timeout().unwrap();
        waits.push(due - now);
        now = due;
        let actions = peering.handle(&mut node, at(now), Input::Tick);
        assert_eq!(actions.dial.len(), 1);
    }
    assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000]);
    // Offline: nothing is dialed, however long it waits.
    let _ = peering.handle(&mut node, at(now), Input::Online(false));
    let _ = peering.handle(&mut node, at(now), Input::DialFailed { device: peer });
    assert_eq!(peering.poll_timeout(), None, "no wake-ups while offline");
    let actions = peering.handle(&mut node, at(now + 1_000_000), Input::Tick);
    assert!(actions.dial.is_empty());
    // Back online: dialed at once, failures forgotten.
    let actions = peering.handle(&mut node, at(now + 1_000_001), Input::Online(true));
    assert_eq!(actions.dial.len(), 1);
    assert_eq!(peering.peers()[&peer].failures, 0);
}

#[test]
fn an_instance_that_does_not_hold_the_connections_dials_nothing_until_it_does() {
    let me = device(1);
    let peer = device(2).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let config = PeeringConfig::new().with_connections_held(false);
    let mut peering = Peering::new(me.device_id(), config);
    let address = format!("/ip4/127.0.0.1/tcp/4002/ws/p2p/{peer}");
    let actions = peering.handle(&mut node, at(0), Input::Dial { address });
    assert!(actions.dial.is_empty(), "the leader tab dials");
    assert!(!actions.peer_records.is_empty(), "but the address is kept");
    let actions = peering.handle(&mut node, at(5), Input::HoldConnections);
    assert_eq!(actions.dial.len(), 1);
    assert_eq!(actions.dial[0].device, Some(peer));
}

/// An invite to `vault` made by device 2.
fn invite_for(vault: VaultId) -> InviteCode {
    InviteCode {
        vault,
        invite: nexus_core::Hash([3; 32]),
        secret: [4; 32],
        expires_at_ms: u64::MAX,
        inviter: device(2).device_id(),
        addresses: Vec::new(),
    }
}

#[test]
fn an_invite_without_addresses_looks_its_inviter_up_at_the_connected_relays_until_it_connects() {
    let (_, mut node, mut peering) = supervisor_of(device(1));
    let inviter = device(2).device_id();
    let relay = device(8).device_id();
    let vault = VaultId(nexus_core::Hash([7; 32]));
    let join = |id| Input::Join {
        id: JoinId(id),
        code: invite_for(vault),
    };
    // No relay connected: nothing to ask (the invite's addresses, none here, are dialed).
    let actions = peering.handle(&mut node, at(0), join(1));
    assert!(!actions.rendezvous && actions.dial.is_empty());
    assert_eq!(peering.unconnected_inviters(), vec![inviter]);
    // With a relay connected, a new join asks it at once.
    let _ = peering.handle(&mut node, at(0), Input::Relay { device: relay });
    let _ = peering.handle(&mut node, at(0), connected(relay));
    let actions = peering.handle(&mut node, at(10), join(2));
    assert!(actions.rendezvous, "the inviter is looked up now");
    assert_eq!(
        peering.unconnected_inviters(),
        vec![inviter],
        "one lookup for both joins"
    );
    // Found and connected: no more lookups for it.
    let _ = peering.handle(&mut node, at(20), connected(inviter));
    assert!(peering.unconnected_inviters().is_empty());
}

#[test]
fn an_invite_is_shown_only_to_its_inviter_never_to_a_stranger_or_relay_and_ends_on_a_bad_invite_or_timeout()
 {
    let me = device(1);
    let member = device(2).device_id();
    let stranger = device(3).device_id();
    let relay = device(8).device_id();
    let vault = VaultId(nexus_core::Hash([7; 32]));
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let config = PeeringConfig::new().with_join_timeout_ms(60_000);
    let mut peering = Peering::new(me.device_id(), config);
    let _ = peering.handle(&mut node, at(0), Input::Relay { device: relay });
    let _ = peering.handle(&mut node, at(0), connected(relay));
    // A stranger on the LAN (found by mDNS, or dialing in) is connected first.
    let _ = peering.handle(&mut node, at(0), connected(stranger));
    let actions = peering.handle(&mut node, at(0), connected(member));
    assert!(actions.open.is_empty(), "nothing shared yet");
    let actions = peering.handle(
        &mut node,
        at(0),
        Input::Join {
            id: JoinId(1),
            code: invite_for(vault),
        },
    );
    let targets: Vec<DeviceId> = actions.open.iter().map(|o| o.device).collect();
    assert_eq!(targets, vec![member], "only to the inviter");
    let open = actions.open[0].id;
    let actions = peering.handle(&mut node, at(1), Input::Opened { open });
    let session = actions.attach_opened[0].1;
    let bytes = &actions.out.transmits[0].1;
    let hello = Message::decode(bytes).unwrap();
    let Message::Hello {
        join: Some(proof), ..
    } = hello
    else {
        panic!("expected a hello with a join proof, got {hello:?}");
    };
    // What is shown is a proof bound to this device, never the secret.
    assert!(!bytes.windows(32).any(|w| w == [4; 32]), "the secret left");
    let key = nexus_core::membership::invite_key(&[4; 32]).device_id();
    assert!(nexus_core::membership::proof_verifies(
        &key,
        &vault,
        &proof.invite,
        &me.device_id(),
        &proof.proof
    ));
    assert!(!nexus_core::membership::proof_verifies(
        &key,
        &vault,
        &proof.invite,
        &stranger,
        &proof.proof
    ));
    let refuse = Message::Refuse {
        code: RefuseCode::BadInvite,
        reason: "the invite was already used".into(),
    };
    let actions = peering.handle(
        &mut node,
        at(2),
        Input::Frame {
            session,
            bytes: refuse.encode(),
        },
    );
    assert!(actions.events.iter().any(|e| matches!(
        e,
        PeeringEvent::JoinFinished { id: JoinId(1), outcome: JoinOutcome::Failed(reason), .. }
            if reason.contains("already used")
    )));
    assert_eq!(peering.pending_joins(), 0);
    // A join nobody answers times out with a clear reason.
    let _ = peering.handle(
        &mut node,
        at(100),
        Input::Join {
            id: JoinId(2),
            code: invite_for(vault),
        },
    );
    let actions = peering.handle(&mut node, at(100 + 60_000), Input::Tick);
    assert!(actions.events.iter().any(|e| matches!(
        e,
        PeeringEvent::JoinFinished { id: JoinId(2), outcome: JoinOutcome::Failed(reason), .. }
            if reason.contains("no member of the vault could be reached")
    )));
}

#[test]
fn the_simulator_jumps_to_deadlines_and_idle_devices_wake_only_for_their_timers() {
    let (mut net, _vault) = vault_of(2, 11);
    let before = net.wakeups.clone();
    // Nothing connected, nothing scheduled: a minute passes in one step.
    net.step(60_000);
    let woken: Vec<u64> = net
        .wakeups
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    assert!(woken.iter().all(|w| *w <= 1), "{woken:?}");
    assert_eq!(net.devices[0].peering.poll_timeout(), None);
    assert_eq!(SIM_PEERING.handshake_timeout_ms, 5_000);
}

#[test]
fn after_a_failed_commit_every_session_is_dropped_and_the_node_reloads_with_its_own_config() {
    // The browser's settings: big documents are checked a slice at a time.
    let config = NodeConfig::new()
        .with_verify_slice(500)
        .with_snapshot_max_changes(4096);
    let me = device(1);
    let other = device(2).device_id();
    let mut store = nexus_core::MemoryStore::new();
    let mut node = Node::new(me.clone(), ActorId::random(), config);
    let (vault, out) = node.create_vault("v", [0; 16], 1_000).unwrap();
    nexus_core::Storage::commit(&mut store, out.batch).unwrap();
    let out = node.add_device(vault, other, Role::Member, 1_000).unwrap();
    nexus_core::Storage::commit(&mut store, out.batch).unwrap();
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    let actions = peering.handle(&mut node, at(2_000), connected(other));
    let open = actions.open[0].id;
    let actions = peering.handle(&mut node, at(2_000), Input::Opened { open });
    let session = actions.attach_opened[0].1;
    // The engine's commit fails: every session goes, the node starts over from the store.
    let actions = peering.handle(&mut node, at(2_100), Input::StorageFailed);
    assert_eq!(actions.detach, vec![session]);
    assert!(
        actions.open.is_empty(),
        "nothing opens on the node being replaced"
    );
    assert_eq!(peering.session_of(&other, &vault), None);
    assert_eq!(peering.poll_timeout(), Some(2_100), "a tick is due at once");
    let reloaded = node.reloaded(&store).unwrap();
    assert_eq!(*reloaded.config(), config, "not NodeConfig::new()");
    assert_eq!(reloaded.actor(), node.actor());
    assert!(reloaded.vault(&vault).is_some());
    // At that tick the pair is opened again (no refusal, so no cooldown).
    let mut node = reloaded;
    let actions = peering.handle(&mut node, at(2_100), Input::Tick);
    assert_eq!(actions.open.len(), 1);
    assert_eq!(actions.open[0].device, other);
}

/// A member: device 1's node holds a vault that device 2 is approved in.
fn node_sharing_a_vault_with(other: DeviceId) -> (Node, VaultId) {
    let mut node = Node::new(device(1), ActorId::random(), CONFIG);
    let (vault, _) = node.create_vault("v", [0; 16], 1_000).unwrap();
    let _ = node.add_device(vault, other, Role::Member, 1_000).unwrap();
    (node, vault)
}

#[test]
fn a_peer_that_takes_sessions_and_drops_them_is_not_asked_again_at_round_trip_speed() {
    let other = device(2).device_id();
    let (mut node, _vault) = node_sharing_a_vault_with(other);
    let config = PeeringConfig::new();
    let mut peering = Peering::new(device(1).device_id(), config);
    let t0 = 10_000;
    let actions = peering.handle(&mut node, at(t0), connected(other));
    let mut opens = 0;
    let mut open = actions.open[0].id;
    let mut now = t0;
    // The peer accepts each stream and closes it before any handshake, for a minute.
    while now < t0 + 60_000 {
        opens += 1;
        let actions = peering.handle(&mut node, at(now), Input::Opened { open });
        let session = actions.attach_opened[0].1;
        let actions = peering.handle(&mut node, at(now + 5), Input::StreamEnded { session });
        assert!(
            actions.open.is_empty(),
            "reopened at once after {opens} opens"
        );
        let due = peering.poll_timeout().unwrap();
        assert!(due >= now + 5 + config.open_failed_cooldown_ms, "due {due}");
        now = due;
        let actions = peering.handle(&mut node, at(now), Input::Tick);
        open = actions.open[0].id;
    }
    assert!(
        opens <= 60_000 / config.open_failed_cooldown_ms + 1,
        "{opens}"
    );
    // When the connection itself goes and comes back, the pair opens at once.
    let _ = peering.handle(
        &mut node,
        at(now),
        Input::OpenFailed {
            open,
            error: "gone".into(),
        },
    );
    let _ = peering.handle(&mut node, at(now), Input::Disconnected { device: other });
    let actions = peering.handle(&mut node, at(now + 10_000), connected(other));
    assert_eq!(actions.open.len(), 1);
}

#[test]
fn a_join_reported_in_actions_whose_commit_failed_goes_on() {
    let me = device(1);
    let vault = VaultId(nexus_core::Hash([7; 32]));
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    let _ = peering.handle(
        &mut node,
        at(0),
        Input::Join {
            id: JoinId(1),
            code: invite_for(vault),
        },
    );
    let joined = || {
        let mut out = nexus_core::node::Output::default();
        out.events
            .push(nexus_core::node::Event::VaultJoined { vault });
        Input::NodeOutput(out)
    };
    let finished = |actions: &nexus_core::peering::Actions| {
        actions.events.iter().any(|e| {
            matches!(
                e,
                PeeringEvent::JoinFinished {
                    id: JoinId(1),
                    outcome: JoinOutcome::Joined,
                    ..
                }
            )
        })
    };
    // The vault arrives, the join is reported joined: but the commit fails.
    assert!(finished(&peering.handle(&mut node, at(10), joined())));
    let _ = peering.handle(&mut node, at(11), Input::StorageFailed);
    assert_eq!(peering.pending_joins(), 1, "the join goes on");
    // The vault arrives again and is stored this time: reported once, then forgotten.
    assert!(finished(&peering.handle(&mut node, at(20), joined())));
    assert!(!finished(&peering.handle(&mut node, at(21), joined())));
    assert_eq!(peering.pending_joins(), 0);
    let actions = peering.handle(&mut node, at(60_001), Input::Tick);
    assert!(
        actions.events.is_empty(),
        "no late timeout: {:?}",
        actions.events
    );
}

#[test]
fn devices_met_by_chance_get_no_peer_record_until_they_are_dialed_on_purpose() {
    let me = device(1);
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    let mut peering = Peering::new(me.device_id(), PeeringConfig::new());
    // A LAN full of strangers: each announced by mDNS, dialed, connected.
    for n in 10..60u8 {
        let stranger = device(n).device_id();
        let actions = peering.handle(
            &mut node,
            at(u64::from(n)),
            Input::Connected {
                device: stranger,
                dialed: Some(format!("/ip4/192.168.1.{n}/tcp/4001")),
            },
        );
        assert!(actions.peer_records.is_empty());
        let _ = peering.handle(
            &mut node,
            at(u64::from(n)),
            Input::Disconnected { device: stranger },
        );
    }
    assert!(peering.peers().is_empty());
    assert_eq!(peering.poll_timeout(), None, "nobody to redial");
    // An address dialed on purpose is remembered, and updated when it connects.
    let friend = device(2).device_id();
    let _ = peering.handle(
        &mut node,
        at(100),
        Input::Dial {
            address: format!("/ip4/127.0.0.1/tcp/4001/p2p/{friend}"),
        },
    );
    let actions = peering.handle(&mut node, at(200), connected(friend));
    assert!(!actions.peer_records.is_empty());
    assert_eq!(peering.peers()[&friend].last_seen_ms, 200);
}

/// A supervisor of `key`'s device, with its node, nothing connected.
fn supervisor_of(key: DeviceKey) -> (DeviceKey, Node, Peering) {
    let node = Node::new(key.clone(), ActorId::random(), CONFIG);
    let peering = Peering::new(key.device_id(), PeeringConfig::new());
    (key, node, peering)
}

/// `device` announced on the local network at `addresses`.
fn announced(device: DeviceId, addresses: Vec<String>) -> Input {
    Input::Discovered { device, addresses }
}

/// What dials `actions` asks for `device`, as its address lists.
fn dials_of(actions: &nexus_core::peering::Actions, device: DeviceId) -> Vec<Vec<String>> {
    actions
        .dial
        .iter()
        .filter(|d| d.device == Some(device))
        .map(|d| d.addresses.clone())
        .collect()
}

#[test]
fn a_device_found_on_the_lan_is_dialed_again_after_failures_a_bounded_number_of_times() {
    let (me, mut node, mut peering) = supervisor_of(device(1));
    let neighbour = device(2).device_id();
    let addresses = vec![
        "/ip4/10.0.0.2/tcp/4001".to_owned(),
        "/ip4/10.0.0.2/udp/4001/quic-v1".to_owned(),
    ];
    let found = announced(neighbour, addresses.clone());
    // Found: one dial with every address it announced (not one per address, which would
    // collide with each other and count as failures).
    let actions = peering.handle(&mut node, at(0), found);
    assert_eq!(dials_of(&actions, neighbour), vec![addresses.clone()]);
    // Both sides dialing at once can fail both dials: it is tried again, with backoff,
    // until NEIGHBOUR_DIALS dials in all went out.
    let mut now = 0;
    let mut dials = 1;
    loop {
        let _ = peering.handle(&mut node, at(now), Input::DialFailed { device: neighbour });
        let Some(due) = peering.poll_timeout() else {
            break;
        };
        assert!(due > now, "a redial waits");
        now = due;
        let actions = peering.handle(&mut node, at(now), Input::Tick);
        assert_eq!(dials_of(&actions, neighbour), vec![addresses.clone()]);
        dials += 1;
        assert!(dials <= NEIGHBOUR_DIALS, "at most {NEIGHBOUR_DIALS} dials");
    }
    assert_eq!(dials, NEIGHBOUR_DIALS);
    assert!(peering.peers().is_empty(), "met by chance: no peer record");
    // Announced again later (after mDNS's record expired): dialed again, a round anew.
    let found = announced(neighbour, addresses.clone());
    let actions = peering.handle(&mut node, at(now + 60_000), found);
    assert_eq!(dials_of(&actions, neighbour).len(), 1);
    let _ = peering.handle(&mut node, at(now + 60_000), connected(neighbour));
    assert_eq!(peering.poll_timeout(), None, "connected: no redial");
    // A connection that comes up ends the retries; nothing of it is stored.
    let other = device(3).device_id();
    let found = announced(other, addresses.clone());
    let _ = peering.handle(&mut node, at(now + 70_000), found);
    let _ = peering.handle(&mut node, at(now + 70_000), connected(other));
    let _ = peering.handle(
        &mut node,
        at(now + 70_001),
        Input::DialFailed { device: other },
    );
    assert_eq!(peering.poll_timeout(), None);
    // A connected device, this device itself, or one announced while offline is not dialed.
    let found = announced(other, addresses.clone());
    assert!(
        peering
            .handle(&mut node, at(now + 80_000), found)
            .dial
            .is_empty()
    );
    let found = announced(me.device_id(), addresses.clone());
    assert!(
        peering
            .handle(&mut node, at(now + 80_000), found)
            .dial
            .is_empty()
    );
}

#[test]
fn a_lan_full_of_strangers_costs_a_bounded_table_and_bounded_dials() {
    let (_, mut node, mut peering) = supervisor_of(device(1));
    let strangers: Vec<DeviceId> = (0..(MAX_NEIGHBOURS as u32 + 100))
        .map(|n| {
            let mut secret = [7u8; 32];
            secret[..4].copy_from_slice(&n.to_le_bytes());
            DeviceKey::from_secret_bytes(&secret).device_id()
        })
        .collect();
    let mut dials = 0;
    for (n, stranger) in strangers.iter().enumerate() {
        let found = Input::Discovered {
            device: *stranger,
            // Over-long addresses are dropped, and a device with none left is not dialed.
            addresses: vec![
                format!("/ip4/10.0.{}.{}/tcp/4001", n / 250, n % 250),
                "x".repeat(300),
            ],
        };
        let actions = peering.handle(&mut node, at(0), found);
        for dial in &actions.dial {
            assert_eq!(dial.addresses.len(), 1, "the over-long address was dropped");
        }
        dials += actions.dial.len();
        let _ = peering.handle(&mut node, at(0), Input::DialFailed { device: *stranger });
    }
    assert_eq!(dials, strangers.len(), "each is dialed once when found");
    // Only MAX_NEIGHBOURS of them are tried again, each at most NEIGHBOUR_DIALS times.
    let mut redials = 0;
    let mut now = 0;
    while let Some(due) = peering.poll_timeout() {
        now = due;
        let actions = peering.handle(&mut node, at(now), Input::Tick);
        for dial in &actions.dial {
            redials += 1;
            let device = dial.device.expect("a device");
            let _ = peering.handle(&mut node, at(now), Input::DialFailed { device });
        }
        assert!(
            redials <= MAX_NEIGHBOURS * NEIGHBOUR_DIALS as usize,
            "bounded"
        );
    }
    assert_eq!(redials, MAX_NEIGHBOURS * (NEIGHBOUR_DIALS as usize - 1));
    assert!(peering.peers().is_empty());
    let found = announced(strangers[0], vec!["x".repeat(300)]);
    assert!(
        peering.handle(&mut node, at(now), found).dial.is_empty(),
        "no usable address"
    );
}

#[test]
fn rendezvous_is_renewed_at_the_configured_interval_only_while_a_relay_is_connected() {
    let me = device(1);
    let relay = device(8).device_id();
    let mut node = Node::new(me.clone(), ActorId::random(), CONFIG);
    // The browser's interval; a desktop keeps the default 30 s.
    let config = PeeringConfig::new().with_discovery_interval_ms(10_000);
    assert_eq!(PeeringConfig::new().discovery_interval_ms, 30_000);
    let mut peering = Peering::new(me.device_id(), config);
    let _ = peering.handle(&mut node, at(0), Input::Relay { device: relay });
    assert_eq!(
        peering.poll_timeout(),
        None,
        "no relay connected, nothing to renew"
    );
    let _ = peering.handle(&mut node, at(1_000), connected(relay));
    let mut renewals = Vec::new();
    let mut now = 1_000;
    for _ in 0..4 {
        // A deadline already past is due at once.
        now = peering.poll_timeout().unwrap().max(now);
        if peering.handle(&mut node, at(now), Input::Tick).rendezvous {
            renewals.push(now);
        }
    }
    assert_eq!(renewals, vec![1_000, 11_000, 21_000, 31_000]);
    let _ = peering.handle(&mut node, at(now), Input::Disconnected { device: relay });
    assert_eq!(peering.poll_timeout(), None);
}
