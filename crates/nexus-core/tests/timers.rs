//! When a node's timers fall due: [`Node::poll_timeout`] names the first moment
//! [`Node::tick`] acts, `tick` does nothing before it, and a node with nothing scheduled
//! says so. An engine that sleeps until `poll_timeout` instead of ticking on an interval
//! relies on all three.

use std::collections::VecDeque;

use automerge::ROOT;
use automerge::transaction::Transactable;
use nexus_core::node::{Event, Node, NodeConfig, Output, SessionId};
use nexus_core::protocol::Message;
use nexus_core::sim::Rng;
use nexus_core::{ActorId, DeviceKey, DocId, Role, VaultId};

const RETRY_MS: u64 = 500;
const RECONCILE_MS: u64 = 1_000;
const CONFIG: NodeConfig = NodeConfig {
    reconcile_interval_ms: RECONCILE_MS,
    retry_ms: RETRY_MS,
    snapshot_min_changes: 32,
    verify_slice: 0,
    snapshot_max_changes: 0,
};
const T0: u64 = 1_000_000;
const DOC: DocId = DocId([7; 16]);

fn node(n: u8) -> Node {
    Node::new(
        DeviceKey::from_secret_bytes(&[n; 32]),
        ActorId::from(vec![n; 16]),
        CONFIG,
    )
}

fn is_empty(out: &Output) -> bool {
    out.batch.is_empty()
        && out.transmits.is_empty()
        && out.closed.is_empty()
        && out.events.is_empty()
}

fn messages(out: &Output) -> Vec<Message> {
    out.transmits
        .iter()
        .map(|(_, bytes)| Message::decode(bytes).unwrap())
        .collect()
}

/// Alice (node 0) and Bob (node 1), one session between them about Alice's vault, which
/// Bob is approved for by id but does not hold yet. Alice opens the session.
struct Pair {
    nodes: [Node; 2],
    sessions: [SessionId; 2],
    vault: VaultId,
}

impl Pair {
    /// Alice creates the vault and approves Bob; Bob accepts Alice's session. Returns the
    /// output of Alice's `open_session` (her `Hello`), not delivered yet.
    fn open(now: u64) -> (Self, Output) {
        let mut alice = node(1);
        let bob = node(2);
        let (vault, _) = alice.create_vault("home", [0; 16], now).unwrap();
        let _ = alice
            .add_device(vault, bob.device_id(), Role::Member, now)
            .unwrap();
        let (a, hello) = alice.open_session(bob.device_id(), vault, true, None, now);
        let mut nodes = [alice, bob];
        let b = nodes[1].accept_session(nodes[0].device_id());
        let pair = Self {
            nodes,
            sessions: [a, b],
            vault,
        };
        (pair, hello)
    }

    /// Both nodes syncing documents, everything delivered at `now`.
    fn ready(now: u64) -> Self {
        let (mut pair, hello) = Self::open(now);
        pair.carry(0, hello, now, None);
        for node in &pair.nodes {
            assert!(node.sessions().all(|(_, _, _, ready)| ready), "not ready");
        }
        pair
    }

    /// Hands `out` of node `from` to the other one, and each answer back, until nothing
    /// more is sent. With `loss`, each message is lost with that chance.
    fn carry(&mut self, from: usize, out: Output, now: u64, mut loss: Option<&mut Rng>) {
        let mut queue = VecDeque::from([(from, out)]);
        let mut carried = 0;
        while let Some((from, out)) = queue.pop_front() {
            let to = 1 - from;
            for (_, bytes) in out.transmits {
                if let Some(rng) = loss.as_deref_mut()
                    && rng.chance(0.3)
                {
                    continue;
                }
                carried += 1;
                assert!(carried < 10_000, "the nodes never went quiet");
                let answer = self.nodes[to].handle_message(self.sessions[to], &bytes, now);
                // Bob's person accepts the vault Alice offers.
                for event in &answer.events {
                    if let Event::VaultOffered { vault, .. } = event {
                        let accepted = self.nodes[to].accept_offer(*vault, now).unwrap();
                        queue.push_back((to, accepted));
                    }
                }
                queue.push_back((to, answer));
            }
        }
    }
}

#[test]
fn a_node_without_sessions_schedules_nothing() {
    let mut alice = node(1);
    assert_eq!(alice.poll_timeout(), None);
    let (vault, _) = alice.create_vault("home", [0; 16], T0).unwrap();
    let _ = alice.create_document(vault, DOC, T0).unwrap();
    let _ = alice
        .change(vault, DOC, |tx| tx.put(ROOT, "milk", 2_i64).map(|_| ()))
        .unwrap();
    assert_eq!(alice.poll_timeout(), None);
    assert!(is_empty(&alice.tick(T0 + 100 * RECONCILE_MS)));
    assert_eq!(alice.poll_timeout(), None);
}

#[test]
fn an_accepted_session_waits_for_the_peers_hello_without_a_timer() {
    let mut bob = node(2);
    let _ = bob.accept_session(node(1).device_id());
    assert_eq!(bob.poll_timeout(), None);
    // Nothing to send before the peer's Hello names the vault: no tick ever acts.
    assert!(is_empty(&bob.tick(T0 + 100 * RETRY_MS)));
    assert_eq!(bob.poll_timeout(), None);
}

#[test]
fn a_lost_hello_is_sent_again_at_poll_timeout_and_not_before() {
    let (mut pair, _lost) = Pair::open(T0);
    let alice = &mut pair.nodes[0];
    assert_eq!(alice.poll_timeout(), Some(T0 + RETRY_MS));
    assert!(is_empty(&alice.tick(T0 + RETRY_MS - 1)));
    let retry = alice.tick(T0 + RETRY_MS);
    assert!(matches!(messages(&retry)[..], [Message::Hello { .. }]));
    assert_eq!(alice.poll_timeout(), Some(T0 + 2 * RETRY_MS));
}

#[test]
fn lost_entries_are_sent_again_at_poll_timeout_and_not_before() {
    let (mut pair, hello) = Pair::open(T0);
    // Bob takes Alice's Hello; his Hello and (empty) entries are lost.
    let (_, bytes) = &hello.transmits[0];
    let _lost = pair.nodes[1].handle_message(pair.sessions[1], bytes, T0 + 10);
    let bob = &mut pair.nodes[1];
    assert_eq!(bob.poll_timeout(), Some(T0 + 10 + RETRY_MS));
    assert!(is_empty(&bob.tick(T0 + 10 + RETRY_MS - 1)));
    let retry = bob.tick(T0 + 10 + RETRY_MS);
    assert!(matches!(
        messages(&retry)[..],
        [Message::Hello { .. }, Message::Entries { .. }]
    ));
    // Alice's own retry is still scheduled from her Hello.
    assert_eq!(pair.nodes[0].poll_timeout(), Some(T0 + RETRY_MS));
}

#[test]
fn the_initiator_reconciles_again_at_poll_timeout_and_not_before() {
    let mut pair = Pair::ready(T0);
    // Only the initiator reconciles; the responder has nothing scheduled.
    assert_eq!(pair.nodes[1].poll_timeout(), None);
    assert_eq!(pair.nodes[0].poll_timeout(), Some(T0 + RECONCILE_MS));
    assert!(is_empty(&pair.nodes[0].tick(T0 + RECONCILE_MS - 1)));
    let next = T0 + RECONCILE_MS;
    let out = pair.nodes[0].tick(next);
    assert!(matches!(messages(&out)[..], [Message::Reconcile { .. }]));
    assert_eq!(pair.nodes[0].poll_timeout(), Some(next + RECONCILE_MS));
    // Equal fingerprints: Bob answers nothing, and nobody's timers move.
    pair.carry(0, out, next, None);
    assert_eq!(pair.nodes[0].poll_timeout(), Some(next + RECONCILE_MS));
    assert_eq!(pair.nodes[1].poll_timeout(), None);
}

#[test]
fn an_edit_does_not_move_the_reconcile_timer() {
    let mut pair = Pair::ready(T0);
    let vault = pair.vault;
    let out = pair.nodes[1].create_document(vault, DOC, T0 + 300).unwrap();
    pair.carry(1, out, T0 + 300, None);
    let out = pair.nodes[1]
        .change(vault, DOC, |tx| tx.put(ROOT, "milk", 2_i64).map(|_| ()))
        .unwrap();
    pair.carry(1, out, T0 + 300, None);
    assert!(
        pair.nodes[0]
            .vault(&vault)
            .unwrap()
            .document(&DOC)
            .is_some()
    );
    assert_eq!(pair.nodes[0].poll_timeout(), Some(T0 + RECONCILE_MS));
    assert_eq!(pair.nodes[1].poll_timeout(), None);
}

/// Over a long exchange that loses messages, with edits on both sides, each `tick` acts
/// exactly when the `poll_timeout` asked just before it has come: never earlier, and
/// never a deadline that passes without `tick` doing anything.
#[test]
fn tick_acts_exactly_when_poll_timeout_has_come_despite_lost_messages() {
    let mut reconciles = 0;
    for seed in 1..=8 {
        let mut rng = Rng::new(seed);
        let mut now = T0;
        let (mut pair, hello) = Pair::open(now);
        let vault = pair.vault;
        let _ = pair.nodes[0].create_document(vault, DOC, now).unwrap();
        pair.carry(0, hello, now, Some(&mut rng));
        let mut ticks_that_acted = 0;
        for step in 0..400_i64 {
            now += 1 + rng.below(700);
            for i in 0..2 {
                let due = pair.nodes[i].poll_timeout();
                let out = pair.nodes[i].tick(now);
                let acted = !is_empty(&out);
                assert_eq!(
                    acted,
                    due.is_some_and(|t| t <= now),
                    "seed {seed}, step {step}, node {i}: poll_timeout {due:?} at {now}"
                );
                ticks_that_acted += usize::from(acted);
                reconciles += messages(&out)
                    .iter()
                    .filter(|m| matches!(m, Message::Reconcile { .. }))
                    .count();
                pair.carry(i, out, now, Some(&mut rng));
            }
            let i = usize::try_from(rng.below(2)).unwrap();
            let holds = pair.nodes[i]
                .vault(&vault)
                .is_some_and(|v| v.document(&DOC).is_some());
            if rng.chance(0.2) && holds {
                let out = pair.nodes[i]
                    .change(vault, DOC, |tx| tx.put(ROOT, "n", step).map(|_| ()))
                    .unwrap();
                pair.carry(i, out, now, Some(&mut rng));
            }
        }
        assert!(ticks_that_acted > 20, "seed {seed}: the timers hardly ran");
    }
    // Both kinds of timer ran: handshake retries above, periodic reconciliation here.
    assert!(reconciles > 100, "only {reconciles} reconciliations");
}
