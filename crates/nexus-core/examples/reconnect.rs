//! Reconnecting two devices that share a vault of many documents, through the real
//! protocol in memory (`Node` sessions over the simulator network): what it costs when
//! they are already in sync, and when one document changed while they were apart.
//! Bytes are the protocol messages exchanged (the transport's framing is not counted);
//! round trips are synchronous delivery rounds halved; time is the CPU time of both
//! nodes, with no network latency.
//!
//! Run with `cargo run --release -p nexus-core --example reconnect -- [DOCS]` (default
//! 10,000); prints one JSON object.

use std::time::Instant;

use automerge::ROOT;
use automerge::transaction::Transactable;
use nexus_core::node::NodeConfig;
use nexus_core::sim::Network;
use nexus_core::{DocId, Role};

fn doc_id(i: usize) -> DocId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id[15] = 1;
    DocId(id)
}

/// Reconnects devices 0 and 1 and measures until nothing is in flight.
fn reconnect(net: &mut Network) -> serde_json::Value {
    let (bytes, messages) = (net.traffic.bytes, net.traffic.messages);
    let started = Instant::now();
    net.connect(0, 1);
    let rounds = net.run_until_quiescent(10_000);
    let elapsed = started.elapsed();
    serde_json::json!({
        "bytes": net.traffic.bytes - bytes,
        "messages": net.traffic.messages - messages,
        "roundTrips": rounds.div_ceil(2),
        "ms": elapsed.as_secs_f64() * 1000.0,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs: usize = std::env::args().nth(1).map_or(Ok(10_000), |s| s.parse())?;
    let mut net = Network::new(2, 7, NodeConfig::new());
    let now = net.now_ms;
    let (vault, out) = net.devices[0].node.create_vault("bench", [3; 16], now)?;
    net.apply_output(0, out);
    let member = net.id(1);
    let out = net.devices[0]
        .node
        .add_device(vault, member, Role::Member, now)?;
    net.apply_output(0, out);
    for i in 0..docs {
        let doc = doc_id(i);
        let out = net.devices[0].node.create_document(vault, doc, now)?;
        net.apply_output(0, out);
        let out = net.devices[0].node.change(vault, doc, |tx| {
            tx.put(ROOT, "title", format!("note {i}"))?;
            tx.put(ROOT, "done", false)?;
            Ok(())
        })?;
        net.apply_output(0, out);
    }
    // First sync: device 1 has only the membership log's genesis through the approval.
    let first = reconnect(&mut net);
    let synced = net.devices[1]
        .node
        .vault(&vault)
        .map_or(0, |v| v.documents().count());
    if synced != docs {
        return Err(
            format!("device 1 holds {synced} of {docs} documents after the first sync").into(),
        );
    }
    net.disconnect(0, 1);

    let in_sync = reconnect(&mut net);
    net.disconnect(0, 1);

    let changed = doc_id(docs / 2);
    let out = net.devices[0]
        .node
        .change(vault, changed, |tx| tx.put(ROOT, "done", true).map(|_| ()))?;
    net.apply_output(0, out);
    let one_changed = reconnect(&mut net);
    let done = net.devices[1]
        .node
        .vault(&vault)
        .and_then(|v| v.document(&changed))
        .map(|d| d.to_json()["done"].clone());
    if done != Some(serde_json::Value::Bool(true)) {
        return Err("device 1 did not get the changed document".into());
    }
    println!(
        "{}",
        serde_json::json!({
            "docs": docs,
            "firstSync": first,
            "reconnectInSync": in_sync,
            "reconnectOneChanged": one_changed,
        })
    );
    Ok(())
}
