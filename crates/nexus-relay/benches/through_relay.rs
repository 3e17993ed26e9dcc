//! Sync through the relay beside sync over a direct connection, in the same run, and the
//! relay's memory with many peers holding reservations.
//!
//! 1. Throughput: device B, empty, receives device A's document of N signed changes
//!    (default 20,000, `NEXUS_BENCH_CHANGES`) over direct loopback TCP, then through the
//!    relay's circuit (A and B listen nowhere else).
//! 2. Latency: 30 single edits made on A through its runtime handle (signed, committed to
//!    SQLite, sent), each timed until B's runtime reports the new heads (verified and
//!    committed on B).
//! 3. Memory: the `nexus-relay` binary as its own process, its resident set before and
//!    after 100 peers connect and reserve a slot (`NEXUS_BENCH_PEERS`).
//!
//! Run: `cargo bench -p nexus-relay --bench through_relay` (`NEXUS_BENCH_MEMORY_ONLY=1`:
//! only part 3, as JSON).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use nexus::{EngineEvent, NativeConfig, NativeEngine};
use nexus_core::automerge::ROOT;
use nexus_core::automerge::transaction::Transactable;
use nexus_core::{ChangeHash, DeviceKey, DocId};
use nexus_relay::{Limits, Relay, RelayConfig, RelayEvent};
use tokio::sync::mpsc;

const DOC: DocId = DocId([8; 16]);

struct Pair {
    _dir: tempfile::TempDir,
    a: nexus::NativeHandle,
    events_b: mpsc::UnboundedReceiver<EngineEvent>,
}

fn config(listen: Vec<Multiaddr>, dial: Vec<Multiaddr>, relays: Vec<Multiaddr>) -> NativeConfig {
    NativeConfig {
        listen,
        dial,
        relays,
        mdns: false,
        control_socket: false,
        ..NativeConfig::default()
    }
}

/// Starts A (a copy of `source`) and B; through `relay` when given, else directly.
async fn pair(
    source: &Path,
    alice: &DeviceKey,
    bob: &DeviceKey,
    relay: Option<&Multiaddr>,
) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&home_a).unwrap();
    std::fs::create_dir_all(&home_b).unwrap();
    std::fs::copy(source.join("nexus.db"), home_a.join("nexus.db")).unwrap();
    let config_a = match relay {
        Some(relay) => config(Vec::new(), Vec::new(), vec![relay.clone()]),
        None => config(
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            Vec::new(),
            Vec::new(),
        ),
    };
    let (tx, mut events_a) = mpsc::unbounded_channel();
    let a = NativeEngine::start(&home_a, alice.clone(), config_a, Some(tx))
        .await
        .unwrap();
    let handle = a.handle();
    tokio::spawn(a.run(std::future::pending()));
    let address = loop {
        match events_a.recv().await {
            Some(EngineEvent::Listening(address))
                if relay.is_none() || address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
            {
                break address;
            }
            Some(_) => {}
            None => panic!("A stopped"),
        }
    };
    let config_b = match relay {
        Some(relay) => config(Vec::new(), vec![address], vec![relay.clone()]),
        None => config(Vec::new(), vec![address], Vec::new()),
    };
    let (tx, events_b) = mpsc::unbounded_channel();
    let b = NativeEngine::start(&home_b, bob.clone(), config_b, Some(tx))
        .await
        .unwrap();
    tokio::spawn(b.run(std::future::pending()));
    Pair {
        _dir: dir,
        a: handle,
        events_b,
    }
}

async fn until_changed(events: &mut mpsc::UnboundedReceiver<EngineEvent>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(EngineEvent::DocChanged { .. })) => return,
            Ok(Some(_)) => {}
            _ => panic!("B never saw the edit"),
        }
    }
}

async fn until_heads(events: &mut mpsc::UnboundedReceiver<EngineEvent>, heads: &[ChangeHash]) {
    loop {
        match tokio::time::timeout(Duration::from_secs(600), events.recv()).await {
            Ok(Some(EngineEvent::DocChanged { heads: now, .. })) if now == heads => return,
            Ok(Some(_)) => {}
            _ => panic!("B never reached the expected heads"),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn relay_memory(peers: usize) -> (u64, u64) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nexus-relay"))
        .args(["--identity"])
        .arg(dir.path().join("relay.key"))
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-metrics",
            "--max-reservations",
            "1000",
            "--reservation-burst-per-ip",
            "1000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let address: Multiaddr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(address) = line.strip_prefix("Listening on ") {
            break address.parse().unwrap();
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(child.id());
    let mut reserved = 0;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..peers {
        let key = DeviceKey::generate().unwrap();
        let mut swarm = nexus::build_swarm(&key, false).await.unwrap();
        swarm.dial(address.clone()).unwrap();
        let tx = tx.clone();
        let circuit = address.clone().with(Protocol::P2pCircuit);
        tokio::spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    // A reservation is asked for once the relay connection is up.
                    libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = swarm.listen_on(circuit.clone());
                    }
                    libp2p::swarm::SwarmEvent::NewListenAddr { .. } => {
                        let _ = tx.send(());
                    }
                    _ => {}
                }
            }
        });
    }
    while reserved < peers {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap();
        reserved += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (before, after)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let changes: usize = std::env::var("NEXUS_BENCH_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let peers: usize = std::env::var("NEXUS_BENCH_PEERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    // NEXUS_BENCH_MEMORY_ONLY=1: only the memory figure, as one JSON object (for
    // bench/run.mjs).
    if std::env::var_os("NEXUS_BENCH_MEMORY_ONLY").is_some() {
        let (before, after) = relay_memory(peers).await;
        println!(
            "{}",
            serde_json::json!({ "peers": peers, "idleKiB": before, "withPeersKiB": after })
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let (alice, bob) = (
        DeviceKey::generate().unwrap(),
        DeviceKey::generate().unwrap(),
    );
    let (vault, heads) =
        nexus::fixtures::home_with_changes(&source, &alice, bob.device_id(), DOC, changes).unwrap();

    let (tx, mut relay_events) = mpsc::unbounded_channel();
    let relay = Relay::start(
        &DeviceKey::generate().unwrap(),
        RelayConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            metrics: None,
            limits: Limits::default(),
            tap: None,
            webrtc_certificate: None,
            mailbox: Default::default(),
        },
        Some(tx),
    )
    .await
    .unwrap();
    tokio::spawn(relay.run(std::future::pending()));
    let relay_address = loop {
        if let Some(RelayEvent::Listening(address)) = relay_events.recv().await {
            break address;
        }
    };

    println!("| path | {changes} changes: seconds | changes/s | edit latency median | p90 |");
    println!("|---|---|---|---|---|");
    for (name, relay) in [
        ("direct TCP", None),
        ("through the relay (TCP both legs)", Some(&relay_address)),
    ] {
        let start = Instant::now();
        let mut p = pair(&source, &alice, &bob, relay).await;
        until_heads(&mut p.events_b, &heads).await;
        let took = start.elapsed();
        let mut latencies = Vec::new();
        for i in 0..30 {
            let t = Instant::now();
            p.a.change(vault, DOC, move |tx| tx.put(ROOT, "latency", i).map(|_| ()))
                .await
                .unwrap();
            until_changed(&mut p.events_b).await;
            latencies.push(t.elapsed());
        }
        latencies.sort();
        println!(
            "| {name} | {:.2} | {:.0} | {:.1} ms | {:.1} ms |",
            took.as_secs_f64(),
            changes as f64 / took.as_secs_f64(),
            latencies[latencies.len() / 2].as_secs_f64() * 1e3,
            latencies[latencies.len() * 9 / 10].as_secs_f64() * 1e3,
        );
    }

    let (before, after) = relay_memory(peers).await;
    println!();
    println!("| relay process | resident memory |");
    println!("|---|---|");
    println!("| idle | {:.1} MiB |", before as f64 / 1024.0);
    println!(
        "| {peers} peers connected, each holding a reservation | {:.1} MiB |",
        after as f64 / 1024.0
    );
    println!(
        "| per peer | {:.1} KiB |",
        after.saturating_sub(before) as f64 / peers as f64
    );
}
