//! What signing costs: sign N changes, verify them one by one and in a batch, beside the
//! raw `ed25519-dalek` verification rate, and the full `Document::apply` path, measured
//! in the same run.

use std::hint::black_box;

use automerge::transaction::Transactable;
use automerge::{ActorId, ROOT};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use nexus_core::document::{change_signing_message, verify_signatures};
use nexus_core::{DeviceKey, DocId, Document, MembershipLog, SignedChange};

fn messages(n: usize) -> Vec<[u8; 95]> {
    let (log, _) = MembershipLog::create(&DeviceKey::from_secret_bytes(&[1; 32]), "b", [0; 16], 0)
        .expect("vault");
    (0..n)
        .map(|i| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            change_signing_message(
                &log.vault_id(),
                &DocId([2; 16]),
                &automerge::ChangeHash(hash),
            )
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let key = DeviceKey::from_secret_bytes(&[1; 32]);
    let raw = SigningKey::from_bytes(&key.secret_bytes());
    let raw_public = raw.verifying_key();
    let mut group = c.benchmark_group("signatures");
    for n in [64usize, 1024] {
        let msgs = messages(n);
        let signed: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
        let raw_sigs: Vec<_> = msgs.iter().map(|m| raw.sign(m)).collect();
        let items: Vec<(&[u8], _, _)> = msgs
            .iter()
            .zip(&signed)
            .map(|(m, s)| (m.as_slice(), key.device_id(), *s))
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("sign", n), &msgs, |b, msgs| {
            b.iter(|| {
                msgs.iter()
                    .map(|m| key.sign(black_box(m)))
                    .collect::<Vec<_>>()
            })
        });
        group.bench_with_input(BenchmarkId::new("raw_dalek_verify", n), &msgs, |b, msgs| {
            b.iter(|| {
                msgs.iter()
                    .zip(&raw_sigs)
                    .all(|(m, s)| raw_public.verify(black_box(m), s).is_ok())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("nexus_verify_single", n),
            &items,
            |b, items| {
                b.iter(|| {
                    items
                        .iter()
                        .all(|item| verify_signatures(std::slice::from_ref(black_box(item)))[0])
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("nexus_verify_batch", n),
            &items,
            |b, items| b.iter(|| verify_signatures(black_box(items)).iter().all(|ok| *ok)),
        );
    }
    group.finish();
}

/// `n` signed changes by one device to one document.
fn signed_changes(n: usize) -> (MembershipLog, Vec<SignedChange>) {
    let key = DeviceKey::from_secret_bytes(&[1; 32]);
    let (log, _) = MembershipLog::create(&key, "b", [0; 16], 0).expect("vault");
    let mut doc = Document::new(
        log.vault_id(),
        DocId([2; 16]),
        ActorId::from(&[1u8; 16][..]),
    );
    let changes = (0..n)
        .map(|i| {
            doc.change(&key, |tx| tx.put(ROOT, "n", i as i64).map(|_| ()))
                .expect("change")
                .expect("not empty")
                .change
        })
        .collect();
    (log, changes)
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    let n = 1024;
    let (log, changes) = signed_changes(n);
    let vault = log.vault_id();
    let raw: Vec<automerge::Change> = changes
        .iter()
        .map(|c| automerge::Change::from_bytes(c.bytes.clone()).expect("change"))
        .collect();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("nexus_document_apply", n), |b| {
        b.iter(|| {
            let mut doc = Document::new(vault, DocId([2; 16]), ActorId::from(&[2u8; 16][..]));
            let applied = doc.apply(black_box(changes.clone()), log.membership());
            assert_eq!(applied.accepted.len(), n);
        })
    });
    group.bench_function(BenchmarkId::new("plain_automerge_apply", n), |b| {
        b.iter(|| {
            let mut doc = automerge::Automerge::new();
            doc.apply_changes(black_box(raw.clone())).expect("apply");
        })
    });
    group.finish();
}

criterion_group!(benches, signatures, apply);
criterion_main!(benches);
