//! Random scenarios: devices that edit, approve, invite, revoke, partition and restart
//! under faults, then heal; the invariants every run must keep.

use automerge::ROOT;
use automerge::transaction::Transactable;

use super::{Faults, Network, Traffic, actor};
use crate::ids::{DocId, VaultId};
use crate::membership::Role;
use crate::node::NodeConfig;
use crate::protocol::JoinRequest;

/// Settings of a random scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Devices in the vault (2–8).
    pub devices: usize,
    /// Random steps before the network heals.
    pub steps: usize,
    /// Faults while the network misbehaves.
    pub faults: Faults,
    /// Hostile devices among them (the last ones; never the creator): see
    /// [`super::hostile`].
    pub hostile: usize,
}

impl Scenario {
    /// Defaults: 4 devices, 120 steps, 5% loss, 5% duplicates, up to 300 ms reordering.
    pub fn new() -> Self {
        Self {
            devices: 4,
            steps: 120,
            faults: Faults {
                drop: 0.05,
                duplicate: 0.05,
                max_delay_ms: 300,
            },
            hostile: 0,
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scenario did, for reports.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Edits made.
    pub edits: usize,
    /// Devices approved by id, invites created, revocations.
    pub approvals: usize,
    /// Invites created.
    pub invites: usize,
    /// Revocations.
    pub revocations: usize,
    /// Restarts.
    pub restarts: usize,
    /// Members at the end.
    pub members: usize,
    /// What the hostile devices did.
    pub hostile: super::HostileActs,
    /// Honest edits the end check found kept (those no rule voids).
    pub edits_kept: usize,
    /// Traffic.
    pub traffic: Traffic,
}

const DOCS: [DocId; 3] = [DocId([1; 16]), DocId([2; 16]), DocId([3; 16])];
const SIM_CONFIG: NodeConfig = NodeConfig {
    reconcile_interval_ms: 1_000,
    retry_ms: 500,
    // Small, so that random scenarios exercise snapshots as well as changes.
    snapshot_min_changes: 3,
    // And snapshots checked over several steps, with messages waiting behind them.
    verify_slice: 2,
    // And documents bigger than this reach a device with none of them as a snapshot of
    // their first changes and the rest as changes.
    snapshot_max_changes: 5,
};

/// Plays one random scenario from `seed` and checks, after the network heals, that every
/// current member holds the same membership and the same documents, that no store holds
/// a change the rules reject, and that a revoked device's later work is nowhere else.
/// With hostile devices, the same must hold for the honest members whatever the hostile
/// ones send (within what their keys allow), and no honest store may hold a change that
/// a hostile device forged or wrote under another device's actor.
pub fn run_seed(seed: u64, scenario: Scenario) -> Result<Report, String> {
    let n = scenario.devices.clamp(2, 8);
    let hostile = scenario.hostile.min(n - 1);
    let is_hostile = |i: usize| i >= n - hostile;
    let mut net = Network::new(n, seed, SIM_CONFIG);
    let mut report = Report::default();
    let mut invited = std::collections::BTreeSet::new();
    let mut edits: Vec<Edit> = Vec::new();
    let (vault, out) = net.devices[0]
        .node
        .create_vault("sim", net.rng.bytes(), net.now_ms)
        .map_err(|e| e.to_string())?;
    net.apply_output(0, out);
    // Everyone starts connected to everyone; device 0 then brings the others in.
    for a in 0..n {
        for b in a + 1..n {
            net.connect(a, b);
        }
    }
    net.faults = scenario.faults;
    for _ in 0..scenario.steps {
        let roll = net.rng.below(100);
        let i = net.rng.below(n as u64) as usize;
        let member_here = |net: &Network, i: usize| {
            net.devices[i]
                .node
                .vault(&vault)
                .is_some_and(|v| v.membership().is_member(&net.id(i)))
        };
        let admin_here = |net: &Network, i: usize| {
            net.devices[i]
                .node
                .vault(&vault)
                .is_some_and(|v| v.membership().is_admin(&net.id(i)))
        };
        match roll {
            0..=39 if member_here(&net, i) => {
                let doc = DOCS[net.rng.below(DOCS.len() as u64) as usize];
                let exists = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.document(&doc).is_some());
                if !exists {
                    let out = net.devices[i]
                        .node
                        .create_document(vault, doc, net.now_ms)
                        .map_err(|e| e.to_string())?;
                    net.apply_output(i, out);
                }
                let field = format!("f{}", net.rng.below(4));
                let value = net.rng.below(1000) as i64;
                let out = net.devices[i]
                    .node
                    .change(vault, doc, |tx| {
                        tx.put(ROOT, field.as_str(), value).map(|_| ())
                    })
                    .map_err(|e| e.to_string())?;
                net.apply_output(i, out);
                if net.trace
                    && let Some(d) = net.devices[i]
                        .node
                        .vault(&vault)
                        .and_then(|v| v.document(&doc))
                {
                    eprintln!(
                        "t={} device {i} edits {doc}: {}",
                        net.now_ms,
                        d.debug_state()
                    );
                }
                report.edits += 1;
                // Remember the edit with the admission it was made under, for the check
                // that no honest work is lost.
                let me = net.id(i);
                if let Some(v) = net.devices[i].node.vault(&vault)
                    && let (Some(member), Some(d)) =
                        (v.membership().members().get(&me), v.document(&doc))
                {
                    let all: Vec<automerge::ChangeHash> = d
                        .automerge()
                        .get_changes(&[])
                        .iter()
                        .map(|c| c.hash())
                        .collect();
                    for head in d.heads() {
                        if d.author_of(&head) == Some(me) {
                            edits.push(Edit {
                                device: i,
                                doc,
                                change: head,
                                past: all.iter().filter(|h| **h != head).copied().collect(),
                                admitted_by: member.admitted_by,
                            });
                        }
                    }
                }
            }
            40..=49 if admin_here(&net, i) => {
                let target = net.rng.below(n as u64) as usize;
                let role = if net.rng.chance(0.3) {
                    Role::Admin
                } else {
                    Role::Member
                };
                let already = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.membership().is_member(&net.id(target)));
                if !already {
                    if net.rng.chance(0.5) {
                        let id = net.id(target);
                        if let Ok(out) = net.devices[i].node.add_device(vault, id, role, net.now_ms)
                        {
                            net.apply_output(i, out);
                            report.approvals += 1;
                        }
                    } else if !invited.contains(&target) {
                        let secret: [u8; 32] = net.rng.bytes();
                        let expires = net.now_ms + 3_600_000;
                        if let Ok((invite, out)) = net.devices[i]
                            .node
                            .create_invite(vault, &secret, role, expires, net.now_ms)
                        {
                            net.apply_output(i, out);
                            net.join(target, i, vault, JoinRequest { invite, secret });
                            invited.insert(target);
                            report.invites += 1;
                        }
                    }
                }
            }
            50..=52 if admin_here(&net, i) => {
                // Revoke someone other than the creator, so an admin always remains.
                let target = 1 + net.rng.below(n as u64 - 1) as usize;
                let is_member = net.devices[i]
                    .node
                    .vault(&vault)
                    .is_some_and(|v| v.membership().is_member(&net.id(target)));
                if is_member && target != i {
                    let id = net.id(target);
                    if let Ok(out) = net.devices[i].node.revoke_device(vault, id, net.now_ms) {
                        net.apply_output(i, out);
                        report.revocations += 1;
                    }
                }
            }
            53..=62 => {
                let j = net.rng.below(n as u64) as usize;
                if net.is_connected(i, j) {
                    net.disconnect(i, j);
                } else {
                    net.connect(i, j);
                }
            }
            63..=64 => {
                if net.trace {
                    eprintln!("t={} device {i} restarts", net.now_ms);
                }
                net.restart(i);
                report.restarts += 1;
            }
            65..=84 if is_hostile(i) => {
                super::hostile::act(&mut net, i, vault, &mut report.hostile)
            }
            _ => {}
        }
        let pause = 50 + net.rng.below(100);
        net.step(pause);
    }
    heal(&mut net);
    report.traffic = net.traffic;
    check(&net, vault, &mut report)?;
    report.edits_kept = check_no_honest_work_lost(&net, vault, &edits, hostile)?;
    Ok(report)
}

/// An edit an honest device made, and the admission it made it under.
struct Edit {
    device: usize,
    doc: DocId,
    change: automerge::ChangeHash,
    /// The changes the document held when it was made (its causal past).
    past: Vec<automerge::ChangeHash>,
    admitted_by: crate::hash::Hash,
}

/// No honest member's work is lost, except what the written rules void: every edit by an
/// honest device that no revocation ever named, made under the admission it still holds
/// at the end, on changes that all stayed, is in the converged document. (Work of a
/// device that was revoked, or whose admission a revocation voided, may go, and so does
/// everything built on it: rules 4 to 8.)
fn check_no_honest_work_lost(
    net: &Network,
    vault: VaultId,
    edits: &[Edit],
    hostile: usize,
) -> Result<usize, String> {
    let Some(reference) = net.devices[0].node.vault(&vault) else {
        return Ok(0);
    };
    let mut kept_count = 0;
    let membership = reference.membership();
    let named: std::collections::BTreeSet<crate::identity::DeviceId> = reference
        .log()
        .entries()
        .into_iter()
        .filter_map(|e| match &e.entry().action {
            crate::membership::Action::RevokeDevice { device, .. } => Some(*device),
            _ => None,
        })
        .collect();
    let n = net.devices.len();
    for edit in edits {
        let id = net.id(edit.device);
        let honest = edit.device < n - hostile;
        let same_admission = membership
            .members()
            .get(&id)
            .is_some_and(|m| m.admitted_by == edit.admitted_by);
        // A document whose every change a rule voided is gone as a whole: its edits count
        // as lost, and are judged like any other.
        let document = reference.document(&edit.doc);
        let held = |h: &automerge::ChangeHash| document.is_some_and(|d| d.author_of(h).is_some());
        let past_kept = edit.past.iter().all(held);
        if !honest || !same_admission || named.contains(&id) || !past_kept {
            continue;
        }
        if !held(&edit.change) {
            let lost = if document.is_some() {
                "was lost"
            } else {
                "was lost with its document"
            };
            return Err(format!(
                "device {}'s change {} to {} {lost} though no rule voids it",
                edit.device, edit.change, edit.doc
            ));
        }
        kept_count += 1;
    }
    Ok(kept_count)
}

/// Stops the faults, reconnects every pair from scratch, and lets the network settle.
fn heal(net: &mut Network) {
    net.faults = Faults::NONE;
    let n = net.devices.len();
    for _ in 0..3 {
        for a in 0..n {
            for b in a + 1..n {
                net.disconnect(a, b);
            }
        }
        for a in 0..n {
            for b in a + 1..n {
                net.connect(a, b);
            }
        }
        for _ in 0..12 {
            net.step(SIM_CONFIG.reconcile_interval_ms);
            net.run_until_quiescent(200);
        }
    }
}

fn check(net: &Network, vault: VaultId, report: &mut Report) -> Result<(), String> {
    let reference = net.devices[0]
        .node
        .vault(&vault)
        .ok_or("the creator lost the vault")?;
    let membership = reference.membership();
    report.members = membership.members().len();
    let members: Vec<usize> = (0..net.devices.len())
        .filter(|&i| membership.is_member(&net.id(i)))
        .collect();
    for &i in &members {
        let v = net.devices[i]
            .node
            .vault(&vault)
            .ok_or_else(|| format!("member {i} does not hold the vault"))?;
        if v.log().heads() != reference.log().heads() {
            return Err(format!(
                "member {i} has different membership heads than device 0"
            ));
        }
        for doc in DOCS {
            let ours = v.document(&doc).map(|d| (d.heads(), d.to_json()));
            let theirs = reference.document(&doc).map(|d| (d.heads(), d.to_json()));
            let ours_heads = ours.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
            let theirs_heads = theirs.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
            if ours_heads != theirs_heads {
                if net.trace {
                    for (k, d) in net.devices.iter().enumerate() {
                        if let Some(x) = d.node.vault(&vault).and_then(|v| v.document(&doc)) {
                            eprintln!("device {k}: {}", x.debug_state());
                        }
                    }
                }
                return Err(format!(
                    "member {i} and device 0 differ on document {doc}: {} vs {} heads",
                    ours_heads.len(),
                    theirs_heads.len()
                ));
            }
            if ours_heads.is_empty() {
                continue;
            }
            if ours.map(|(_, j)| j) != theirs.map(|(_, j)| j) {
                return Err(format!(
                    "member {i} and device 0 have the same heads but different values for {doc}"
                ));
            }
        }
    }
    // Rules 9 and 10 at rest: while the vault has an admin there is a current key, every
    // member holds a copy, and no revoked device does.
    if membership.members().values().any(|m| m.role == Role::Admin) {
        let (current, _) = reference
            .current_key(net.devices[0].node.key())
            .or_else(|| {
                members.iter().find_map(|&i| {
                    let node = &net.devices[i].node;
                    node.vault(&vault)?.current_key(node.key())
                })
            })
            .ok_or("no member holds a current vault key")?;
        for &i in &members {
            let node = &net.devices[i].node;
            let held = node.vault(&vault).and_then(|v| v.current_key(node.key()));
            if held.map(|(hash, _)| hash) != Some(current) {
                return Err(format!("member {i} has no copy of the current vault key"));
            }
        }
        for revoked in membership.revoked().keys() {
            let (_, info) = membership.current_key().ok_or("the current key vanished")?;
            if info.sealed.contains_key(revoked) {
                return Err(format!("revoked device {revoked} holds the current key"));
            }
        }
    }
    // No store of a non-revoked device holds a change the final membership rejects, and
    // every stored signature verifies.
    for (i, device) in net.devices.iter().enumerate() {
        if !membership.is_member(&net.id(i)) {
            // A revoked device (or one whose admission was voided) keeps its own later
            // work, and only it; one that never joined holds nothing.
            continue;
        }
        let Ok(stored) = crate::vault::Vault::load(&device.store, vault, actor(99, 0)) else {
            continue; // never joined
        };
        if stored.log().heads()
            != net.devices[i]
                .node
                .vault(&vault)
                .map(|v| v.log().heads())
                .unwrap_or_default()
        {
            return Err(format!("device {i}: stored membership differs from memory"));
        }
        for doc in stored.documents() {
            if !doc.verify().is_empty() {
                return Err(format!(
                    "device {i}: a stored change in {} fails verification",
                    doc.id()
                ));
            }
            for change in doc.changes_since(&[]) {
                let own_actor = automerge::Change::from_bytes(change.bytes.clone())
                    .is_ok_and(|c| crate::actor::actor_belongs_to(c.actor_id(), &change.author));
                if !own_actor {
                    return Err(format!(
                        "device {i} stores a change by {} under another device's actor",
                        change.author
                    ));
                }
                if membership.is_member(&change.author) {
                    continue;
                }
                let Some(revocation) = membership.revocation(&change.author) else {
                    return Err(format!(
                        "device {i} stores a change by a stranger {}",
                        change.author
                    ));
                };
                let seen = revocation.seen.get(&doc.id());
                let inside = automerge::Change::from_bytes(change.bytes.clone())
                    .ok()
                    .and_then(|c| Some(c.seq() <= *seen?.get(c.actor_id().to_bytes())?))
                    .unwrap_or(false);
                if !inside {
                    if net.trace {
                        eprintln!("device {i}: {}", doc.debug_state());
                    }
                    return Err(format!(
                        "device {i} stores work of revoked {} made after its revocation in {}",
                        change.author,
                        doc.id()
                    ));
                }
            }
        }
    }
    Ok(())
}
