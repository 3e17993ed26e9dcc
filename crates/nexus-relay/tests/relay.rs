//! Two devices that know only the relay's address: one joins the other's vault with an
//! invite code through the relay's circuit, they edit both ways, and after a restart the
//! joiner finds the other again at the relay's rendezvous point. All on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use nexus::control::Reply;
use nexus::{EngineEvent, NativeConfig, NativeEngine, SqliteStore};
use nexus_core::bundle::Bundle;
use nexus_core::mailbox::{MailboxRequest, MailboxResponse};
use nexus_core::node::{Node, NodeConfig};
use nexus_core::{ActorId, DeviceKey, DocId, InviteCode, Role, Storage, VaultId};
use nexus_relay::{Limits, Relay, RelayConfig, RelayEvent, Tap};
use tokio::sync::{mpsc, oneshot};

const DOC: DocId = DocId([5; 16]);

fn node_on(home: &Path, key: &DeviceKey) -> (SqliteStore, Node) {
    let store = SqliteStore::open(&home.join("nexus.db")).unwrap();
    let node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new()).unwrap();
    (store, node)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Makes a vault on `home` holding the empty document [`DOC`].
fn vault_with_doc(home: &Path, key: &DeviceKey, name: &str) -> VaultId {
    let (mut store, mut node) = node_on(home, key);
    let (vault, out) = node.create_vault(name, [4; 16], 1_000).unwrap();
    store.commit(out.batch).unwrap();
    store
        .commit(node.create_document(vault, DOC, 1_001).unwrap().batch)
        .unwrap();
    vault
}

fn edit(home: &Path, key: &DeviceKey, vault: VaultId, field: &str, value: &str) {
    nexus::fixtures::edit_field(home, key, vault, DOC, field, value).unwrap();
}

fn read(home: &Path, key: &DeviceKey, vault: VaultId, field: &str) -> Option<String> {
    nexus::fixtures::read_field(home, key, vault, DOC, field)?
        .as_str()
        .map(str::to_owned)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts a peer that listens nowhere but at `relay`; returns it (not yet running), its
/// events and a way to stop it.
async fn peer_via_relay(
    home: &Path,
    key: &DeviceKey,
    relay: &Multiaddr,
) -> (NativeEngine, mpsc::UnboundedReceiver<EngineEvent>) {
    let config = NativeConfig {
        listen: Vec::new(),
        relays: vec![relay.clone()],
        mdns: false,
        control_socket: false,
        ..NativeConfig::default()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let peer = NativeEngine::start(home, key.clone(), config, Some(tx))
        .await
        .unwrap();
    (peer, rx)
}

fn run(peer: NativeEngine) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(peer.run(async move {
        let _ = stopped.await;
    }));
    stop
}

async fn circuit_address(events: &mut mpsc::UnboundedReceiver<EngineEvent>) -> Multiaddr {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(EngineEvent::Listening(address)))
                if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
            {
                return address;
            }
            Ok(Some(_)) => {}
            _ => panic!("no reservation at the relay"),
        }
    }
}

/// An in-process relay on 127.0.0.1 with a metrics endpoint: its address, the metrics
/// address and its events.
async fn start_relay(
    limits: Limits,
    tap: Option<Tap>,
) -> (
    Multiaddr,
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<RelayEvent>,
) {
    let (tx, mut events) = mpsc::unbounded_channel();
    let config = RelayConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        limits,
        tap,
        webrtc_certificate: None,
        mailbox: Default::default(),
    };
    let relay = Relay::start(&DeviceKey::generate().unwrap(), config, Some(tx))
        .await
        .unwrap();
    tokio::spawn(relay.run(std::future::pending()));
    let (mut address, mut metrics) = (None, None);
    while address.is_none() || metrics.is_none() {
        match events.recv().await {
            Some(RelayEvent::Listening(a)) => address = Some(a),
            Some(RelayEvent::Metrics(m)) => metrics = Some(m),
            Some(_) => {}
            None => panic!("the relay stopped"),
        }
    }
    (address.unwrap(), metrics.unwrap(), events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_know_only_the_relay_join_and_sync_through_it() {
    let tap = Tap::new();
    let (relay_address, metrics, _relay_events) =
        start_relay(Limits::default(), Some(tap.clone())).await;

    let dir = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&home_a).unwrap();
    std::fs::create_dir_all(&home_b).unwrap();
    let (alice, bob) = (
        DeviceKey::generate().unwrap(),
        DeviceKey::generate().unwrap(),
    );
    let vault = vault_with_doc(&home_a, &alice, "Far apart");
    edit(&home_a, &alice, vault, "note", "written on A");

    let (a, mut a_events) = peer_via_relay(&home_a, &alice, &relay_address).await;
    let _stop_a = run(a);
    let a_circuit = circuit_address(&mut a_events).await;

    // An invite whose only address is A's circuit through the relay.
    let code = invite_for(&home_a, &alice, vault, &a_circuit, 9);

    let (mut b, _b_events) = peer_via_relay(&home_b, &bob, &relay_address).await;
    let (joined_tx, joined) = oneshot::channel();
    b.join(code, Some(joined_tx));
    let stop_b = run(b);
    let reply = tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .expect("join answered")
        .unwrap();
    assert!(matches!(reply, Reply::Joined(_)), "{reply:?}");
    eventually("A's note to reach B", || {
        read(&home_b, &bob, vault, "note").as_deref() == Some("written on A")
    })
    .await;
    edit(&home_b, &bob, vault, "reply", "written on B");
    eventually("B's reply to reach A", || {
        read(&home_a, &alice, vault, "reply").as_deref() == Some("written on B")
    })
    .await;

    // B restarts knowing only the relay (its peer table emptied, so it cannot simply
    // redial A): it finds A at the rendezvous point.
    let _ = stop_b.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let mut store = SqliteStore::open(&home_b.join("nexus.db")).unwrap();
        let mut forget = nexus_core::Batch::new();
        for (key, _) in store.scan(nexus_core::Table::Peers, &[]).unwrap() {
            forget.delete(nexus_core::Table::Peers, key);
        }
        store.commit(forget).unwrap();
        assert!(
            store
                .scan(nexus_core::Table::Peers, &[])
                .unwrap()
                .is_empty()
        );
    }
    edit(&home_a, &alice, vault, "later", "while B was away");
    let (b, _b_events) = peer_via_relay(&home_b, &bob, &relay_address).await;
    let _stop_b = run(b);
    eventually("B to find A again and catch up", || {
        read(&home_b, &bob, vault, "later").as_deref() == Some("while B was away")
    })
    .await;

    // C, approved by its DeviceId while it waits at the relay knowing nothing else, is
    // found by A under C's device name and given the vault.
    let home_c = dir.path().join("c");
    std::fs::create_dir_all(&home_c).unwrap();
    let carol = DeviceKey::generate().unwrap();
    let (c, mut c_events) = peer_via_relay(&home_c, &carol, &relay_address).await;
    let c_handle = c.handle();
    let _stop_c = run(c);
    circuit_address(&mut c_events).await;
    {
        let (mut store, mut node) = node_on(&home_a, &alice);
        let out = node
            .add_device(vault, carol.device_id(), Role::Member, now_ms())
            .unwrap();
        store.commit(out.batch).unwrap();
    }
    // C never asked A for anything: the vault waits as an offer until C's person says yes.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), c_events.recv()).await {
            Ok(Some(EngineEvent::VaultOffered {
                vault: offered, by, ..
            })) => {
                assert_eq!(offered, vault);
                assert!(
                    [alice.device_id(), bob.device_id()].contains(&by),
                    "offered by a member"
                );
                break;
            }
            Ok(Some(_)) => {}
            _ => panic!("C was never offered the vault"),
        }
    }
    assert!(
        read(&home_c, &carol, vault, "note").is_none(),
        "nothing stored yet"
    );
    c_handle.accept_offer(vault).await.unwrap();
    eventually("C to receive the vault through the relay", || {
        read(&home_c, &carol, vault, "note").as_deref() == Some("written on A")
    })
    .await;

    // Everything the relay could read: plenty of traffic, its own protocols in the clear
    // (the rendezvous names), and never the documents' text or the vault id.
    assert!(tap.len() > 10_000, "the tap saw {} bytes", tap.len());
    assert!(
        tap.contains(b"nexus-"),
        "the tap records what the relay reads"
    );
    for secret in [
        "written on A",
        "written on B",
        "while B was away",
        "Far apart",
    ] {
        assert!(!tap.contains(secret.as_bytes()), "the relay saw {secret:?}");
    }
    assert!(!tap.contains(vault.as_bytes()));
    assert!(!tap.contains(vault.to_string().as_bytes()));

    // The relay's counters saw reservations and circuits.
    let text = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(metrics).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let count = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("nexus_relay_reservations_accepted_total") >= 2,
        "{text}"
    );
    assert!(
        count("nexus_relay_rendezvous_registrations_total") >= 1,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_circuits_or_reservations_from_one_peer_are_cut_off_while_a_pair_keeps_syncing() {
    use futures::StreamExt;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

    let limits = Limits {
        max_circuits_per_peer: 2,
        reservation_burst_per_peer: 2,
        ..Limits::default()
    };
    let (relay_address, _, mut relay_events) = start_relay(limits, None).await;

    // A well-behaved pair: B approved by id, both reachable only through the relay.
    let dir = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&home_a).unwrap();
    std::fs::create_dir_all(&home_b).unwrap();
    let (alice, bob) = (
        DeviceKey::generate().unwrap(),
        DeviceKey::generate().unwrap(),
    );
    let (vault, _) =
        nexus::fixtures::home_with_changes(&home_a, &alice, bob.device_id(), DOC, 0).unwrap();
    edit(&home_a, &alice, vault, "n", "0");
    let (a, mut a_events) = peer_via_relay(&home_a, &alice, &relay_address).await;
    let _stop_a = run(a);
    let a_circuit = circuit_address(&mut a_events).await;
    // B has no vault yet, so it is told A's circuit address directly.
    let config = NativeConfig {
        listen: Vec::new(),
        dial: vec![a_circuit.clone()],
        relays: vec![relay_address.clone()],
        mdns: false,
        control_socket: false,
        ..NativeConfig::default()
    };
    let b = NativeEngine::start(&home_b, bob.clone(), config, None)
        .await
        .unwrap();
    let _stop_b = run(b);
    eventually("B to sync with A through the relay", || {
        read(&home_b, &bob, vault, "n").as_deref() == Some("0")
    })
    .await;

    // A flooder opens circuit after circuit to A.
    let flooder = DeviceKey::generate().unwrap();
    let flooder_id = nexus::peer_of(&flooder.device_id()).unwrap();
    let mut swarm = nexus::build_swarm(&flooder, false).await.unwrap();
    let a_peer = nexus::peer_of(&alice.device_id()).unwrap();
    // One circuit after another (the client runs one dial through a relay at a time).
    let flood = tokio::spawn(async move {
        for _ in 0..12 {
            let opts = DialOpts::peer_id(a_peer)
                .addresses(vec![a_circuit.clone()])
                .condition(PeerCondition::Always)
                .build();
            if swarm.dial(opts).is_err() {
                continue;
            }
            loop {
                match swarm.select_next_some().await {
                    libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. }
                        if peer_id == a_peer =>
                    {
                        break;
                    }
                    libp2p::swarm::SwarmEvent::OutgoingConnectionError { .. } => break,
                    _ => {}
                }
            }
        }
        loop {
            swarm.select_next_some().await;
        }
    });
    let mut denied = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while denied == 0 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), relay_events.recv()).await {
            Ok(Some(RelayEvent::CircuitDenied { src, .. })) if src == flooder_id => denied += 1,
            _ => {}
        }
    }
    assert!(denied > 0, "the relay never refused the flooder a circuit");

    // Another peer asks for reservation after reservation: refused past its burst.
    let greedy = DeviceKey::generate().unwrap();
    let greedy_id = nexus::peer_of(&greedy.device_id()).unwrap();
    let mut swarm = nexus::build_swarm(&greedy, false).await.unwrap();
    let circuit = relay_address.clone().with(Protocol::P2pCircuit);
    swarm.dial(relay_address.clone()).unwrap();
    let greed = tokio::spawn(async move {
        let mut asked = 0;
        loop {
            match swarm.select_next_some().await {
                libp2p::swarm::SwarmEvent::ConnectionEstablished { .. }
                | libp2p::swarm::SwarmEvent::NewListenAddr { .. }
                | libp2p::swarm::SwarmEvent::ListenerClosed { .. }
                    if asked < 8 =>
                {
                    asked += 1;
                    let _ = swarm.listen_on(circuit.clone());
                }
                _ => {}
            }
        }
    });
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused == 0 && Instant::now() < deadline {
        if let Ok(Some(RelayEvent::ReservationDenied(peer))) =
            tokio::time::timeout(Duration::from_millis(200), relay_events.recv()).await
            && peer == greedy_id
        {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "the relay never refused the greedy peer a reservation"
    );
    greed.abort();

    // The pair kept its circuit and keeps syncing.
    edit(&home_a, &alice, vault, "n", "1");
    eventually("A's next edit to reach B during the flood", || {
        read(&home_b, &bob, vault, "n").as_deref() == Some("1")
    })
    .await;
    flood.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_takes_webrtc_direct_connections_under_a_certificate_that_survives_restarts() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.cert.pem");
    let pem = nexus_relay::load_or_create_certificate(&path).unwrap();
    assert_eq!(nexus_relay::load_or_create_certificate(&path).unwrap(), pem);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (tx, mut events) = mpsc::unbounded_channel();
    let key = DeviceKey::generate().unwrap();
    let config = RelayConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/webrtc-direct".parse().unwrap()],
        metrics: None,
        limits: Limits::default(),
        tap: None,
        webrtc_certificate: Some(pem),
        mailbox: Default::default(),
    };
    let relay = Relay::start(&key, config, Some(tx)).await.unwrap();
    let relay_peer = relay.peer_id();
    tokio::spawn(relay.run(std::future::pending()));
    let address = loop {
        if let Some(RelayEvent::Listening(address)) = events.recv().await {
            break address;
        }
    };
    assert!(
        address.to_string().contains("/webrtc-direct/certhash/"),
        "{address}"
    );

    // A WebRTC-direct client (what a browser does) connects by the certificate hash.
    nexus::install_crypto_provider();
    let mut client = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|keypair| {
            use libp2p::Transport;
            use libp2p::core::muxing::StreamMuxerBox;
            let certificate =
                libp2p_webrtc::tokio::Certificate::generate(&mut rand::rng()).unwrap();
            libp2p_webrtc::tokio::Transport::new(keypair.clone(), certificate)
                .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
        })
        .unwrap()
        .with_behaviour(|_| libp2p::ping::Behaviour::default())
        .unwrap()
        .build();
    // The native WebRTC transport dials from its listening socket.
    client
        .listen_on("/ip4/127.0.0.1/udp/0/webrtc-direct".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { .. } = client.select_next_some().await {
            break;
        }
    }
    client.dial(address).unwrap();
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => return peer_id,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
    })
    .await
    .expect("connected in time");
    assert_eq!(connected, relay_peer);
}

/// A bare client of the relay: connected, with a stream control for the mailbox.
async fn mailbox_client(
    relay: &Multiaddr,
) -> (libp2p_stream::Control, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    let mut swarm = nexus::build_swarm(&DeviceKey::generate().unwrap(), false)
        .await
        .unwrap();
    let control = swarm.behaviour().stream.new_control();
    swarm.dial(relay.clone()).unwrap();
    let (up_tx, up) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut up_tx = Some(up_tx);
        loop {
            if let libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } =
                swarm.select_next_some().await
                && let Some(tx) = up_tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    up.await.unwrap();
    (control, task)
}

/// Runs a peer; the returned function stops it and waits until it has (bundles it was
/// still leaving included).
fn run_until_stopped(peer: NativeEngine) -> impl FnOnce() -> tokio::task::JoinHandle<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        peer.run(async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    move || {
        let _ = stop.send(());
        task
    }
}

async fn wait_for_event(
    events: &mut mpsc::UnboundedReceiver<EngineEvent>,
    what: &str,
    mut wanted: impl FnMut(&EngineEvent) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(event)) if wanted(&event) => return,
            Ok(Some(event)) => eprintln!("({what}) {event:?}"),
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

fn invite_for(
    home: &Path,
    key: &DeviceKey,
    vault: VaultId,
    address: &Multiaddr,
    n: u8,
) -> InviteCode {
    let now = now_ms();
    let secret = [n; 32];
    let (mut store, mut node) = node_on(home, key);
    let (invite, out) = node
        .create_invite(vault, &secret, Role::Member, now + 600_000, now)
        .unwrap();
    store.commit(out.batch).unwrap();
    InviteCode {
        vault,
        invite,
        secret,
        expires_at_ms: now + 600_000,
        inviter: key.device_id(),
        addresses: vec![address.to_string()],
    }
}

/// `home` joins with `code` through the relay, waits for `field` to arrive, and stops.
async fn join_and_leave(
    home: &Path,
    key: &DeviceKey,
    relay: &Multiaddr,
    code: InviteCode,
    vault: VaultId,
) {
    let (mut peer, _events) = peer_via_relay(home, key, relay).await;
    let (joined_tx, joined) = oneshot::channel();
    peer.join(code, Some(joined_tx));
    let stop = run_until_stopped(peer);
    let reply = tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .expect("join answered")
        .unwrap();
    assert!(matches!(reply, Reply::Joined(_)), "{reply:?}");
    eventually("the joiner to get the vault's note", || {
        read(home, key, vault, "note").as_deref() == Some("from the creator")
    })
    .await;
    stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_never_online_together_sync_through_the_mailbox_and_a_revoked_one_reads_nothing_new()
 {
    let tap = Tap::new();
    let (relay_address, _, _relay_events) = start_relay(Limits::default(), Some(tap.clone())).await;
    let relay = match relay_address.iter().last() {
        Some(Protocol::P2p(peer)) => peer,
        _ => unreachable!("relay addresses end in /p2p"),
    };
    let dir = tempfile::tempdir().unwrap();
    let [home_a, home_b, home_c] = ["a", "b", "c"].map(|n| dir.path().join(n));
    for home in [&home_a, &home_b, &home_c] {
        std::fs::create_dir_all(home).unwrap();
    }
    let [alice, bob, carol] = [(); 3].map(|()| DeviceKey::generate().unwrap());

    // Carol (admin) makes the vault; Alice joins, leaves; then Bob joins, leaves. Alice
    // and Bob are never online at the same time.
    let vault = vault_with_doc(&home_c, &carol, "Mailbox");
    edit(&home_c, &carol, vault, "note", "from the creator");
    let (c, mut c_events) = peer_via_relay(&home_c, &carol, &relay_address).await;
    let stop_c = run_until_stopped(c);
    let c_circuit = circuit_address(&mut c_events).await;
    let code = invite_for(&home_c, &carol, vault, &c_circuit, 1);
    join_and_leave(&home_a, &alice, &relay_address, code, vault).await;
    let code = invite_for(&home_c, &carol, vault, &c_circuit, 2);
    join_and_leave(&home_b, &bob, &relay_address, code, vault).await;
    stop_c().await.unwrap();

    // Alice alone writes, leaves it at the relay, and stops.
    let (a, mut a_events) = peer_via_relay(&home_a, &alice, &relay_address).await;
    let stop_a = run_until_stopped(a);
    circuit_address(&mut a_events).await;
    edit(
        &home_a,
        &alice,
        vault,
        "marker",
        "plaintext marker 7d1e from A",
    );
    wait_for_event(
        &mut a_events,
        "A to leave its change at the relay",
        |e| matches!(e, EngineEvent::MailboxLeft { changes, .. } if *changes >= 1),
    )
    .await;
    stop_a().await.unwrap();

    // Bob alone starts later and gets it from the relay alone.
    let (b, mut b_events) = peer_via_relay(&home_b, &bob, &relay_address).await;
    let stop_b = run_until_stopped(b);
    eventually("B to get A's change from the mailbox", || {
        read(&home_b, &bob, vault, "marker").as_deref() == Some("plaintext marker 7d1e from A")
    })
    .await;
    wait_for_event(&mut b_events, "B to report the pickup", |e| {
        matches!(e, EngineEvent::MailboxPickedUp { .. })
    })
    .await;
    stop_b().await.unwrap();

    // Carol revokes Alice (offline) and writes: the bundle is under a new key.
    let (c, mut c_events) = peer_via_relay(&home_c, &carol, &relay_address).await;
    let stop_c = run_until_stopped(c);
    circuit_address(&mut c_events).await;
    {
        let (mut store, mut node) = node_on(&home_c, &carol);
        let out = node.revoke_device(vault, alice.device_id(), 5_000).unwrap();
        store.commit(out.batch).unwrap();
    }
    edit(
        &home_c,
        &carol,
        vault,
        "secret",
        "plaintext secret 94c2 after the revocation",
    );
    wait_for_event(
        &mut c_events,
        "C to leave the change at the relay",
        |e| matches!(e, EngineEvent::MailboxLeft { changes, .. } if *changes >= 1),
    )
    .await;
    stop_c().await.unwrap();
    let (_, node) = node_on(&home_c, &carol);
    let (_, new_key) = node.vault(&vault).unwrap().current_key(&carol).unwrap();
    assert_eq!(new_key.generation(), 1);

    // Alice comes back: the old key's mailbox holds only a key notice with no copy for
    // her, so she learns nothing there, not even the revocation (a member she meets in a
    // session tells her that).
    let (a, mut a_events) = peer_via_relay(&home_a, &alice, &relay_address).await;
    let stop_a = run_until_stopped(a);
    circuit_address(&mut a_events).await;
    // Its first mailbox read runs as the relay connection comes up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_a().await.unwrap();
    let (_, node) = node_on(&home_a, &alice);
    let membership = node.vault(&vault).unwrap().membership().clone();
    assert!(membership.revocation(&alice.device_id()).is_none());
    assert!(
        membership.is_member(&alice.device_id()),
        "nothing of the log after her last sync"
    );
    assert_eq!(read(&home_a, &alice, vault, "secret"), None);
    // Even given the new mailbox's bundles, none of Alice's keys opens them.
    let (_, alices) = node_on(&home_a, &alice);
    let alices_keys = alices.vault(&vault).unwrap().held_keys(&alice);
    assert!(!alices_keys.is_empty());
    let (mut reader, _reader_task) = mailbox_client(&relay_address).await;
    let mailbox = new_key.mailbox_id(&vault);
    let listing = nexus::mailbox_request(&mut reader, relay, &MailboxRequest::List { mailbox })
        .await
        .unwrap();
    let MailboxResponse::Listing(items) = listing else {
        panic!("not a listing: {listing:?}");
    };
    assert!(!items.is_empty(), "C's bundle is in the new mailbox");
    for item in items {
        let get = MailboxRequest::Get {
            mailbox,
            bundle: item.bundle,
        };
        let MailboxResponse::Bundle(bytes) = nexus::mailbox_request(&mut reader, relay, &get)
            .await
            .unwrap()
        else {
            panic!("bundle gone");
        };
        for (_, key) in &alices_keys {
            assert!(Bundle::open(&bytes, key, &vault, &item.bundle).is_err());
        }
        assert!(Bundle::open(&bytes, &new_key, &vault, &item.bundle).is_ok());
    }

    // Bob, offline during the rotation, gets the new key and the change from the relay.
    let (b, mut b_events) = peer_via_relay(&home_b, &bob, &relay_address).await;
    let stop_b = run_until_stopped(b);
    // B reads its mailboxes on connecting and again as soon as a bundle brings a newer
    // key; should a read be missed, the next 30 s round picks it up, so this phase allows
    // 70 s. Once in a while in full runs this took over 30 s (cause not pinned down): B's
    // events are printed if it fails.
    let start = Instant::now();
    let mut seen_by_b = Vec::new();
    loop {
        while let Ok(event) = b_events.try_recv() {
            seen_by_b.push(event);
        }
        if read(&home_b, &bob, vault, "secret").as_deref()
            == Some("plaintext secret 94c2 after the revocation")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(70),
            "timed out waiting for B to get C's change written after the rotation; B saw: {seen_by_b:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "B got C's change after the rotation in {:?}",
        start.elapsed()
    );
    stop_b().await.unwrap();

    // The relay stored and forwarded all of it without reading any of it.
    for secret in [
        "plaintext marker 7d1e",
        "plaintext secret 94c2",
        "from the creator",
        "Mailbox",
    ] {
        assert!(!tap.contains(secret.as_bytes()), "the relay saw {secret:?}");
    }
    assert!(!tap.contains(vault.as_bytes()));
    assert!(!tap.contains(vault.to_string().as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_mailbox_puts_from_one_writer_is_refused_while_another_gets_through() {
    let (relay_address, _, _events) = start_relay(Limits::default(), None).await;
    let relay = match relay_address.iter().last() {
        Some(Protocol::P2p(peer)) => peer,
        _ => unreachable!("relay addresses end in /p2p"),
    };
    let write_key = DeviceKey::from_secret_bytes(&[77; 32]);
    let (mut flooder, _flooder_task) = mailbox_client(&relay_address).await;
    let mut refused = 0;
    for i in 0..70u8 {
        let put = MailboxRequest::put(&write_key, [i; 16], 60, vec![i; 64]);
        if let MailboxResponse::Refused(_) = nexus::mailbox_request(&mut flooder, relay, &put)
            .await
            .unwrap()
        {
            refused += 1;
        }
    }
    assert!(refused > 0, "the flood was never refused");
    let (mut other, _other_task) = mailbox_client(&relay_address).await;
    let put = MailboxRequest::put(&write_key, [200; 16], 60, vec![1; 64]);
    assert_eq!(
        nexus::mailbox_request(&mut other, relay, &put)
            .await
            .unwrap(),
        MailboxResponse::Stored
    );
}
