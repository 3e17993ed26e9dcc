//! Arbitrary frames into a session that is past its handshake and holds a document:
//! no input may panic the node, and a session that gets invalid input stores nothing
//! from it. Input: frames of `len (u16 LE) ‖ bytes`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nexus_core::automerge::transaction::Transactable;
use nexus_core::node::{Node, NodeConfig, SessionId};
use nexus_core::sim::Network;
use nexus_core::{DocId, Role};

fn ready() -> &'static (Node, SessionId) {
    static READY: OnceLock<(Node, SessionId)> = OnceLock::new();
    READY.get_or_init(|| {
        let mut net = Network::new(2, 7, NodeConfig::new());
        let now = net.now_ms;
        let (vault, out) = net.devices[0].node.create_vault("fuzz", [0; 16], now).unwrap();
        net.apply_output(0, out);
        let id = net.id(1);
        let out = net.devices[0].node.add_device(vault, id, Role::Member, now).unwrap();
        net.apply_output(0, out);
        let doc = DocId([1; 16]);
        let out = net.devices[0].node.create_document(vault, doc, now).unwrap();
        net.apply_output(0, out);
        let out = net.devices[0]
            .node
            .change(vault, doc, |tx| tx.put(nexus_core::automerge::ROOT, "k", 1).map(|_| ()))
            .unwrap();
        net.apply_output(0, out);
        net.connect(0, 1);
        net.run_until_quiescent(100);
        let (session, _, _, is_ready) = net.devices[0].node.sessions().next().unwrap();
        assert!(is_ready);
        (net.devices[0].node.clone(), session)
    })
}

fuzz_target!(|data: &[u8]| {
    let (node, session) = ready();
    let mut node = node.clone();
    let mut rest = data;
    let mut now = 2_000_000;
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        let out = node.handle_message(*session, frame, now);
        if out.closed.iter().any(|(_, r)| r.by_us) {
            assert!(out.batch.is_empty(), "a refused frame wrote to storage");
        }
        now += 1_000;
        let _ = node.tick(now);
    }
});
