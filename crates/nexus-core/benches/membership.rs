//! What taking in a membership log costs: a chain of approvals sent newest first, taken in
//! as one batch (one replay of the rules), beside the same entries inserted one at a time
//! (a replay per entry), measured in the same run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_core::{DeviceKey, MembershipLog, Received};

fn ingest(c: &mut Criterion) {
    let admin = DeviceKey::from_secret_bytes(&[1; 32]);
    let mut group = c.benchmark_group("membership_ingest");
    group.sample_size(10);
    for n in [1_000u32, 9_999] {
        let (genesis, chain) = nexus_core::sim::approval_chain(&admin, n);
        let mut reversed = chain.clone();
        reversed.reverse();
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::new("batch_reversed", n), &reversed, |b, r| {
            b.iter(|| {
                let mut log = MembershipLog::from_genesis(genesis.clone()).expect("genesis");
                let (accepted, _) = log.insert_many(r.iter().cloned(), Received::STORED);
                black_box(accepted.len())
            })
        });
        if n <= 1_000 {
            group.bench_with_input(BenchmarkId::new("one_at_a_time", n), &chain, |b, chain| {
                b.iter(|| {
                    let mut log = MembershipLog::from_genesis(genesis.clone()).expect("genesis");
                    for entry in chain {
                        let _ = log.insert(entry.clone(), Received::STORED);
                    }
                    black_box(log.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
