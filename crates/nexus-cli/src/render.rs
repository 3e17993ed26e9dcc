//! What `nexus` prints: a command's [`Report`] as text for people, or as one line of
//! JSON with `--json`; what `serve` tells as it runs; and errors. JSON maps are written
//! with sorted keys (`serde_json::Value`), as scripts have always read them.

use nexus::EngineEvent;
use nexus::control::{Reply, Status};
use serde_json::{Value, json};

use crate::commands::{CheckProblem, Report, ServeNote, StatusReport};
use crate::error::CliError;

/// Prints `report` to stdout: JSON, or its text (nothing when it has none).
pub(crate) fn print(report: Report, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", to_json(report).map_err(CliError::Output)?);
    } else {
        let text = to_human(&report);
        if !text.is_empty() {
            println!("{text}");
        }
    }
    Ok(())
}

/// Prints why a command failed to stderr.
pub(crate) fn print_error(error: &CliError, json: bool) {
    if json {
        eprintln!("{}", json!({ "error": error.to_string() }));
    } else {
        eprintln!("error: {error}");
    }
}

/// Prints what `serve` tells: its device and listening addresses to stdout (one per
/// line, so scripts can read them), every event to stderr as a log line.
pub(crate) fn print_serve_note(note: &ServeNote, json: bool) {
    match note {
        ServeNote::Started(device) => {
            if json {
                println!("{}", json!({ "device_id": device.to_string() }));
            } else {
                println!("Device {device}");
            }
        }
        ServeNote::Event { at_ms, event } => {
            if let EngineEvent::Listening(address) = event {
                if json {
                    println!("{}", json!({ "listening": address.to_string() }));
                } else {
                    println!("Listening on {address}");
                }
            }
            let (kind, text) = describe(event);
            if json {
                eprintln!(
                    "{}",
                    json!({ "at_ms": at_ms, "event": kind, "message": text })
                );
            } else {
                eprintln!("{text}");
            }
        }
    }
}

/// An event's kind (for JSON logs) and its sentence.
fn describe(event: &EngineEvent) -> (&'static str, String) {
    match event {
        EngineEvent::Listening(address) => ("listening", format!("listening on {address}")),
        EngineEvent::Connected(device) => ("connected", format!("connected to {device}")),
        EngineEvent::Disconnected(device) => {
            ("disconnected", format!("disconnected from {device}"))
        }
        EngineEvent::SessionReady { vault, peer } => {
            ("syncing", format!("syncing vault {vault} with {peer}"))
        }
        EngineEvent::SessionRefused {
            peer,
            vault,
            reason,
        } => (
            "refused",
            format!(
                "session with {peer}{} ended ({} {}): {}",
                vault
                    .map(|v| format!(" about vault {v}"))
                    .unwrap_or_default(),
                if reason.by_us {
                    "we refused"
                } else {
                    "they refused"
                },
                reason.code.as_str(),
                reason.reason
            ),
        ),
        EngineEvent::DocChanged { vault, doc, .. } => (
            "doc_changed",
            format!("document {doc} in vault {vault} changed"),
        ),
        EngineEvent::MembershipChanged(vault) => {
            ("membership", format!("membership of vault {vault} changed"))
        }
        EngineEvent::VaultJoined(vault) => ("joined", format!("now holding vault {vault}")),
        EngineEvent::Rejected { peer, error } => {
            ("rejected", format!("rejected from {peer}: {error}"))
        }
        EngineEvent::MailboxLeft {
            vault,
            changes,
            bytes,
        } => (
            "mailbox-left",
            format!(
                "left {changes} change(s) for offline members of {vault} at the relay ({bytes} encrypted bytes)"
            ),
        ),
        EngineEvent::MailboxPickedUp {
            vault,
            bundles,
            changes,
        } => (
            "mailbox-picked-up",
            format!("took {bundles} bundle(s) with {changes} change(s) for {vault} from the relay"),
        ),
        EngineEvent::Problem(text) => ("problem", text.clone()),
        _ => ("event", format!("{event:?}")),
    }
}

/// The `--json` form of a report.
fn to_json(report: Report) -> Result<Value, serde_json::Error> {
    Ok(match report {
        Report::Init {
            device,
            created,
            home,
        } => {
            json!({ "device_id": device.to_string(), "created": created, "home": serde_json::to_value(home)? })
        }
        Report::Id { device, .. } => json!({ "device_id": device.to_string() }),
        Report::VaultCreated { vault, name } => {
            json!({ "vault_id": vault.to_string(), "name": name })
        }
        Report::Vaults(vaults) => serde_json::to_value(vaults)?,
        Report::Invite { code, role } => json!({
            "code": code.to_string(),
            "vault_id": code.vault.to_string(),
            "role": role.to_string(),
            "expires_at_ms": code.expires_at_ms,
        }),
        Report::Invites(invites) => serde_json::to_value(invites)?,
        Report::Offers(offers) => serde_json::to_value(offers)?,
        Report::OfferAccepted(vault) => json!({ "accepted": vault.to_string() }),
        Report::OfferDeclined(vault) => json!({ "declined": vault.to_string() }),
        Report::InviteCancelled(invite) => json!({ "cancelled": invite.to_string() }),
        Report::Devices(devices) => serde_json::to_value(devices)?,
        Report::Approved { device, role } => {
            json!({ "approved": device.to_string(), "role": role.to_string() })
        }
        Report::Revoked(device) => json!({ "revoked": device.to_string() }),
        Report::DocCreated(doc) => json!({ "doc_id": doc.to_string() }),
        Report::Exported { doc, path, bytes } => {
            json!({ "doc_id": doc.to_string(), "path": path.display().to_string(), "bytes": bytes })
        }
        Report::Documents(listed) => {
            serde_json::to_value(listed.iter().map(|l| &l.summary).collect::<Vec<_>>())?
        }
        Report::Put { doc, key, value } => {
            json!({ "doc_id": doc.to_string(), "key": key, "value": value })
        }
        Report::Document(value) => value,
        Report::Check(checked) => json!({
            "ok": checked.problems.is_empty(),
            "changes_checked": checked.changes,
            "problems": checked.problems.iter().map(problem_json).collect::<Vec<_>>(),
        }),
        Report::Stopped => json!({ "stopped": true }),
        // A running daemon's answer is shown whole, as it came (with its `ok`).
        Report::Status(StatusReport { status, .. }) if status.running => {
            serde_json::to_value(Reply::Status(status))?
        }
        Report::Status(StatusReport { status, .. }) => serde_json::to_value(status)?,
        Report::PeerAdded(added) => json!({
            "device_id": added.device.to_string(),
            "address": added.address.to_string(),
            "daemon": added.daemon,
        }),
        Report::Joined {
            vault,
            already_member: true,
        } => json!({ "vault_id": vault.to_string(), "already_member": true }),
        Report::Joined { vault, .. } => json!({ "vault_id": vault.to_string(), "joined": true }),
    })
}

fn problem_json(problem: &CheckProblem) -> Value {
    json!({
        "vault_id": problem.vault.to_string(),
        "doc_id": problem.doc.to_string(),
        "problem": format!("{:?}", problem.problem),
    })
}

/// The text a person reads.
fn to_human(report: &Report) -> String {
    match report {
        Report::Init {
            device,
            created: true,
            home,
        } => format!("Created device {device}\nHome: {}", home.display()),
        Report::Init { device, home, .. } => {
            format!("Device {device} already exists in {}", home.display())
        }
        Report::Id { device, qr } => {
            let id = device.to_string();
            if *qr && let Ok(code) = qrcode::QrCode::new(id.as_bytes()) {
                let art = code
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build();
                return format!("{art}\n{id}");
            }
            id
        }
        Report::VaultCreated { vault, .. } => vault.to_string(),
        Report::Vaults(vaults) => lines(vaults.iter().map(|v| {
            format!(
                "{}  {}  ({}, {} members, {} documents)",
                v.vault_id,
                v.name,
                v.role
                    .map_or_else(|| "not a member".into(), |r| r.to_string()),
                v.members,
                v.documents
            )
        })),
        Report::Invite { code, .. } => code.to_string(),
        Report::Invites(invites) => lines(invites.iter().map(|i| {
            format!(
                "{}  {}  {}  by {}{}",
                i.invite_id,
                i.state.as_str(),
                i.role,
                i.created_by,
                i.redeemed_by
                    .map(|d| format!("  joined: {d}"))
                    .unwrap_or_default()
            )
        })),
        Report::InviteCancelled(invite) => format!("Cancelled invite {invite}"),
        Report::Offers(offers) if offers.is_empty() => "No vault offers waiting".into(),
        Report::Offers(offers) => lines(offers.iter().map(|o| {
            format!(
                "{}  {}  ({}, offered by {})",
                o.vault_id, o.name, o.role, o.offered_by
            )
        })),
        Report::OfferAccepted(vault) => format!("Accepted vault {vault}; it syncs now"),
        Report::OfferDeclined(vault) => format!("Declined vault {vault}"),
        Report::Devices(devices) => lines(devices.iter().map(|d| {
            format!(
                "{}  {}{}",
                d.device_id,
                d.role.map_or_else(|| "revoked".into(), |r| r.to_string()),
                if d.this_device { "  (this device)" } else { "" }
            )
        })),
        Report::Approved { device, role } => format!("Approved {device} as {role}"),
        Report::Revoked(device) => format!("Revoked {device}"),
        Report::DocCreated(doc) => doc.to_string(),
        Report::Exported { doc, path, bytes } => {
            format!(
                "exported {doc} to {} ({bytes} bytes, Automerge's format)",
                path.display()
            )
        }
        Report::Documents(listed) => lines(
            listed
                .iter()
                .map(|l| format!("{}  {}", l.summary.doc_id, preview(&l.content))),
        ),
        Report::Put { .. } => String::new(),
        Report::Document(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        Report::Check(checked) if checked.problems.is_empty() => format!(
            "OK: {} changes in {} vaults verified",
            checked.changes, checked.vaults
        ),
        Report::Check(checked) => format!(
            "{} problems:\n{}",
            checked.problems.len(),
            lines(checked.problems.iter().map(|p| problem_json(p).to_string()))
        ),
        Report::Stopped => "Stopped".into(),
        Report::Status(report) => status_text(&report.status, report.now_ms),
        Report::PeerAdded(added) if added.daemon => {
            format!("Added {}; the daemon is connecting", added.device)
        }
        Report::PeerAdded(added) => {
            format!("Added {}; `nexus serve` will connect to it", added.device)
        }
        Report::Joined {
            vault,
            already_member: true,
        } => format!("Already holding vault {vault}"),
        Report::Joined { vault, .. } => format!("Joined vault {vault}"),
    }
}

fn lines(lines: impl Iterator<Item = String>) -> String {
    lines.collect::<Vec<_>>().join("\n")
}

/// A document's JSON cut to about 60 bytes.
fn preview(content: &Value) -> String {
    let mut preview = content.to_string();
    if preview.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|i| preview.is_char_boundary(*i))
            .unwrap_or(0);
        preview.truncate(cut);
        preview.push('…');
    }
    preview
}

fn status_text(status: &Status, now: u64) -> String {
    let ago = |ms: Option<u64>| match ms {
        Some(at) if at > 0 => format!("{}s ago", now.saturating_sub(at) / 1000),
        _ => "never".to_owned(),
    };
    let mut lines = vec![format!(
        "Device {} — daemon {}",
        status.device_id,
        if status.running {
            "running"
        } else {
            "not running (start it with `nexus serve`)"
        }
    )];
    for address in &status.listening {
        lines.push(format!("  listening on {address}"));
    }
    for vault in &status.vaults {
        lines.push(format!(
            "Vault {} {}: {} documents, {} members, {} live sessions, last sync {}",
            vault.vault_id,
            // Quoted and escaped, as JSON writes it: a name cannot pass for more text.
            Value::from(vault.name.as_str()),
            vault.documents,
            vault.members,
            vault.sessions.len(),
            ago(vault.last_sync_ms)
        ));
    }
    for peer in &status.peers {
        lines.push(format!(
            "{} {} {} (last seen {}, {} failed attempts)",
            if peer.relay == Some(true) {
                "Relay"
            } else {
                "Peer"
            },
            peer.device_id,
            if peer.connected {
                "connected"
            } else {
                "not connected"
            },
            ago(Some(peer.last_seen_ms)),
            peer.failures
        ));
    }
    lines.join("\n")
}
