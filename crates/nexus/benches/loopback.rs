//! 100,000 signed changes from device A to device B over loopback, through the real
//! runtime (SQLite stores, libp2p, `/nexus/sync/2`), over TCP and over QUIC; both for a
//! fresh device that receives the document as one snapshot and with snapshots off, so
//! that every change travels and is verified on its own. Bytes on the wire are read from
//! the loopback interface's counters (`/proc/net/dev`), so they include Noise, Yamux or
//! QUIC framing, acknowledgements and the handshake.
//!
//! Run: `cargo bench -p nexus --bench loopback` (`NEXUS_BENCH_CHANGES=N` for another size,
//! `NEXUS_BENCH_JSON=1` for JSON lines).
//! One run per configuration: the figure is seconds long, so there is no point in
//! criterion's repetitions.

// A native benchmark; on wasm32 there is nothing to run.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
use native::main;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use nexus::libp2p::Multiaddr;
    use nexus::{EngineEvent, NativeConfig, NativeEngine};
    use nexus_core::node::NodeConfig;
    use nexus_core::{DeviceKey, DocId, VaultId};
    use tokio::sync::mpsc;

    const DOC: DocId = DocId([9; 16]);

    fn prepare(
        home: &Path,
        alice: &DeviceKey,
        bob: &DeviceKey,
        changes: usize,
    ) -> (VaultId, Vec<nexus_core::ChangeHash>) {
        nexus::fixtures::home_with_changes(home, alice, bob.device_id(), DOC, changes).unwrap()
    }

    async fn transfer(
        source: &Path,
        alice: &DeviceKey,
        bob: &DeviceKey,
        listen: &str,
        heads: &[nexus_core::ChangeHash],
        snapshots: bool,
    ) -> (Duration, u64) {
        let dir = tempfile::tempdir().unwrap();
        let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&home_a).unwrap();
        std::fs::create_dir_all(&home_b).unwrap();
        std::fs::copy(source.join("nexus.db"), home_a.join("nexus.db")).unwrap();
        let node = if snapshots {
            NodeConfig::new()
        } else {
            NodeConfig::new().with_snapshot_min_changes(usize::MAX)
        };
        let config = |dial: Vec<Multiaddr>, listen: Vec<Multiaddr>| NativeConfig {
            listen,
            dial,
            mdns: false,
            control_socket: false,
            node,
            ..NativeConfig::default()
        };
        let (tx, mut events_a) = mpsc::unbounded_channel();
        let a = NativeEngine::start(
            &home_a,
            alice.clone(),
            config(Vec::new(), vec![listen.parse().unwrap()]),
            Some(tx),
        )
        .await
        .unwrap();
        tokio::spawn(a.run(std::future::pending()));
        let address = loop {
            if let Some(EngineEvent::Listening(address)) = events_a.recv().await {
                break address;
            }
        };
        let before = nexus::fixtures::loopback_bytes();
        let start = Instant::now();
        let (tx, mut events_b) = mpsc::unbounded_channel();
        let b = NativeEngine::start(
            &home_b,
            bob.clone(),
            config(vec![address], Vec::new()),
            Some(tx),
        )
        .await
        .unwrap();
        tokio::spawn(b.run(std::future::pending()));
        let deadline = Duration::from_secs(600);
        loop {
            match tokio::time::timeout(deadline.saturating_sub(start.elapsed()), events_b.recv())
                .await
            {
                Ok(Some(EngineEvent::DocChanged { heads: now, .. })) if now == heads => break,
                Ok(Some(_)) => {}
                _ => panic!("B did not receive everything within {deadline:?}"),
            }
        }
        (
            start.elapsed(),
            nexus::fixtures::loopback_bytes().saturating_sub(before),
        )
    }

    #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    pub async fn main() {
        let changes: usize = std::env::var("NEXUS_BENCH_CHANGES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        let (alice, bob) = (
            DeviceKey::generate().unwrap(),
            DeviceKey::generate().unwrap(),
        );
        let started = Instant::now();
        let (_vault, heads) = prepare(&source, &alice, &bob, changes);
        eprintln!(
            "prepared {changes} signed changes in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // NEXUS_BENCH_JSON=1: one JSON object per line (for bench/run.mjs) instead of a table.
        let json = std::env::var_os("NEXUS_BENCH_JSON").is_some();
        if !json {
            println!(
                "| transport | path | changes | seconds | changes/s | bytes on loopback | bytes/change |"
            );
            println!("|---|---|---|---|---|---|---|");
        }
        for (name, listen) in [
            ("TCP", "/ip4/127.0.0.1/tcp/0"),
            ("QUIC", "/ip4/127.0.0.1/udp/0/quic-v1"),
        ] {
            for (path, snapshots) in [("snapshot (fresh device)", true), ("every change", false)] {
                let (took, bytes) =
                    transfer(&source, &alice, &bob, listen, &heads, snapshots).await;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "transport": name, "snapshots": snapshots, "changes": changes,
                            "ms": took.as_secs_f64() * 1000.0, "bytes": bytes,
                        })
                    );
                    continue;
                }
                println!(
                    "| {name} | {path} | {changes} | {:.2} | {:.0} | {bytes} | {:.1} |",
                    took.as_secs_f64(),
                    changes as f64 / took.as_secs_f64(),
                    bytes as f64 / changes as f64
                );
            }
        }
    }
}
