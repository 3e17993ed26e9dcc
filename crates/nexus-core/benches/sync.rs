//! Sync of N signed changes from one device to a fresh one, in memory, through the real
//! protocol (`Node` sessions over the simulator network), beside Automerge's own sync
//! protocol moving the same changes without signatures, in the same run.

use std::hint::black_box;
use std::time::Duration;

use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_core::node::NodeConfig;
use nexus_core::sim::Network;
use nexus_core::{DocId, MemoryStore, Role, VaultId};

const N: usize = 10_000;
const DOC: DocId = DocId([1; 16]);

/// A two-device network where device 0 holds `n` changes to one document and device 1
/// (approved, empty) has not synced yet; plus device 0's store to start from.
fn prepared(n: usize) -> (MemoryStore, MemoryStore, VaultId) {
    let mut net = Network::new(2, 1, NodeConfig::new());
    let now = net.now_ms;
    let (vault, out) = net.devices[0]
        .node
        .create_vault("bench", [0; 16], now)
        .expect("vault");
    net.apply_output(0, out);
    let id = net.id(1);
    let out = net.devices[0]
        .node
        .add_device(vault, id, Role::Member, now)
        .expect("add");
    net.apply_output(0, out);
    let out = net.devices[0]
        .node
        .create_document(vault, DOC, now)
        .expect("doc");
    net.apply_output(0, out);
    for i in 0..n {
        let out = net.devices[0]
            .node
            .change(vault, DOC, |tx| tx.put(ROOT, "n", i as i64).map(|_| ()))
            .expect("change");
        net.apply_output(0, out);
    }
    // Device 1 needs the membership log to know it is a member: give it a copy of the
    // log only (no documents).
    let mut joiner = MemoryStore::new();
    let mut batch = nexus_core::Batch::new();
    use nexus_core::Storage;
    for (k, v) in net.devices[0]
        .store
        .scan(nexus_core::Table::Membership, &[])
        .expect("scan")
    {
        batch.put(nexus_core::Table::Membership, k, v);
    }
    joiner.commit(batch).expect("commit");
    (net.devices[0].store.clone(), joiner, vault)
}

fn network(source: &MemoryStore, joiner: &MemoryStore, config: NodeConfig) -> Network {
    let mut net = Network::new(2, 1, config);
    net.devices[0].store = source.clone();
    net.devices[1].store = joiner.clone();
    net.restart(0);
    net.restart(1);
    net
}

fn automerge_doc(n: usize) -> Automerge {
    let mut doc = Automerge::new();
    for i in 0..n {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "n", i as i64)?;
            Ok(())
        })
        .expect("change");
    }
    doc
}

/// Automerge's sync protocol between `a` and an empty document; returns bytes moved.
fn automerge_sync(a: &mut Automerge) -> (Automerge, usize) {
    let mut b = Automerge::new();
    let (mut sa, mut sb) = (State::new(), State::new());
    let mut bytes = 0;
    for _ in 0..100 {
        let mut quiet = true;
        if let Some(m) = a.generate_sync_message(&mut sa) {
            let encoded = m.encode();
            bytes += encoded.len();
            let m = automerge::sync::Message::decode(&encoded).expect("decode");
            b.receive_sync_message(&mut sb, m).expect("receive");
            quiet = false;
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            let encoded = m.encode();
            bytes += encoded.len();
            let m = automerge::sync::Message::decode(&encoded).expect("decode");
            a.receive_sync_message(&mut sa, m).expect("receive");
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    (b, bytes)
}

fn sync(c: &mut Criterion) {
    let (source, joiner, vault) = prepared(N);
    // One measured run for the byte counts.
    let mut net = network(&source, &joiner, NodeConfig::new());
    net.connect(0, 1);
    let rounds = net.run_until_quiescent(1_000);
    let got = net.devices[1]
        .node
        .vault(&vault)
        .and_then(|v| v.document(&DOC))
        .map(|d| d.change_count());
    assert_eq!(got, Some(N));
    println!(
        "nexus: {N} signed changes in {rounds} rounds, {} bytes ({:.1} bytes/change)",
        net.traffic.bytes,
        net.traffic.bytes as f64 / N as f64
    );
    let plain = automerge_doc(N);
    let (copy, bytes) = automerge_sync(&mut plain.clone());
    assert_eq!(copy.get_heads(), plain.get_heads());
    println!(
        "automerge sync: {N} unsigned changes, {bytes} bytes ({:.1} bytes/change)",
        bytes as f64 / N as f64
    );

    let mut group = c.benchmark_group("sync_fresh_device");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(N as u64));
    let as_changes = NodeConfig::new().with_snapshot_min_changes(usize::MAX);
    let mut net = network(&source, &joiner, as_changes);
    net.connect(0, 1);
    net.run_until_quiescent(1_000);
    println!(
        "nexus, changes one by one (no snapshot): {} bytes ({:.1} bytes/change)",
        net.traffic.bytes,
        net.traffic.bytes as f64 / N as f64
    );
    for (name, config) in [
        ("nexus_signed_changes", as_changes),
        ("nexus_signed_snapshot", NodeConfig::new()),
    ] {
        group.bench_function(BenchmarkId::new(name, N), |b| {
            b.iter_batched(
                || network(&source, &joiner, config),
                |mut net| {
                    net.connect(0, 1);
                    net.run_until_quiescent(1_000);
                    black_box(net)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.bench_function(BenchmarkId::new("automerge_sync_unsigned", N), |b| {
        b.iter_batched(
            || plain.clone(),
            |mut a| black_box(automerge_sync(&mut a)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, sync);
criterion_main!(benches);
