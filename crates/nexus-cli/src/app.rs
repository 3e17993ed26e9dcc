//! The commands: parse, open the home, do the work through `nexus_core`, commit.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use nexus::libp2p::Multiaddr;
use nexus::libp2p::multiaddr::Protocol;
use nexus::{
    NativePeer, PeerConfig, PeerEvent, SqliteStore, control_request, daemon_running,
    load_or_create_key,
};
use nexus_core::automerge::transaction::Transactable;
use nexus_core::automerge::{ObjType, ROOT};
use nexus_core::json::put_json;
use nexus_core::node::{Node, NodeConfig, Output};
use nexus_core::peers::PeerRecord;
use nexus_core::{
    ActorId, DeviceId, DeviceKey, DocId, InviteCode, Role, Storage, Vault, VaultId, random_bytes,
};
use serde_json::{Value, json};
use thiserror::Error;

use crate::output::Out;

/// The `nexus` command line.
#[derive(Debug, Parser)]
#[command(
    name = "nexus",
    version,
    about = "Nexus desktop peer: local-first, end-to-end signed sync"
)]
pub(crate) struct Cli {
    /// The home directory (device key and database). Default: $NEXUS_HOME, else the
    /// platform data directory.
    #[arg(long, global = true, env = "NEXUS_HOME")]
    home: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this device's identity (once); prints its DeviceId.
    Init,
    /// Print this device's DeviceId.
    Id {
        /// Also draw it as a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Vaults: create and list.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Invites to a vault.
    Invite {
        #[command(subcommand)]
        command: InviteCommand,
    },
    /// Devices of a vault: list, approve, revoke.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Documents of a vault.
    Doc {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Verify every stored signature and hash; report problems.
    Check,
    /// Run the daemon: listen, find peers, keep every vault in sync. Stops on Ctrl-C.
    Serve {
        /// Address to listen on (repeatable). Default: TCP, QUIC and WebSocket on every
        /// interface, on ports the system picks.
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// A peer to dial at start (repeatable), e.g. /ip4/192.168.1.7/tcp/4001/p2p/12D3KooW…
        #[arg(long = "peer", value_name = "MULTIADDR")]
        peers: Vec<Multiaddr>,
        /// A relay to reserve a slot at and meet members through (repeatable), e.g.
        /// /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…
        #[arg(long = "relay", value_name = "MULTIADDR")]
        relays: Vec<Multiaddr>,
        /// Do not look for peers on the local network.
        #[arg(long)]
        no_mdns: bool,
    },
    /// Show the daemon's peers and the sync state of each vault.
    Status,
    /// Known peers.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// Join a vault with an invite code from one of its admins.
    Join {
        /// The code (nexus1…).
        code: InviteCode,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Remember a peer and connect to it (now, if the daemon runs).
    Add {
        /// Its address, ending in /p2p/<DeviceId>.
        address: Multiaddr,
    },
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Create a vault with this device as its first admin; prints its VaultId.
    Create {
        /// A name people see.
        name: String,
    },
    /// List the vaults this device holds.
    List,
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Create a one-time invite code (admins only).
    Create {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// How long the code works: 30m, 1h, 2d…
        #[arg(long, default_value = "1h")]
        expires: String,
        /// The role the new device gets.
        #[arg(long, default_value = "member")]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// List members and revoked devices.
    List {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
    },
    /// Approve a device by its DeviceId (admins only).
    Approve {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The device to approve (12D3KooW…).
        device: DeviceId,
        /// Its role.
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// Revoke a device (admins only).
    Revoke {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The device to revoke.
        device: DeviceId,
    },
}

#[derive(Debug, Subcommand)]
enum DocCommand {
    /// Create a document, optionally from a JSON object in a file; prints its id.
    Create {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// A JSON object to start from.
        #[arg(long)]
        json_file: Option<PathBuf>,
    },
    /// List documents.
    List {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
    },
    /// Set KEY of a document's root to a JSON value.
    Put {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The document id.
        doc: DocId,
        /// The key.
        key: String,
        /// The value, as JSON (`'"text"'`, `3`, `'{"a":1}'`).
        value: String,
        /// Store a string as collaborative text (concurrent edits merge by character),
        /// as the web demo's note bodies are.
        #[arg(long)]
        text: bool,
    },
    /// Print a document (or one key of it) as JSON.
    Get {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The document id.
        doc: DocId,
        /// Only this key.
        key: Option<String>,
    },
}

/// Why a command failed.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    #[error("no device in {0}: run `nexus init` first")]
    NotInitialised(PathBuf),
    #[error("cannot create the home directory {path}: {source}")]
    Home {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    KeyFile(#[from] nexus::KeyFileError),
    #[error(transparent)]
    Storage(#[from] nexus::SqliteError),
    #[error("loading the vaults: {0}")]
    Load(String),
    #[error(transparent)]
    Vault(#[from] nexus_core::VaultError),
    #[error("no vault `{0}` here (see `nexus vault list`)")]
    UnknownVault(String),
    #[error("`{0}` names more than one vault; use its id")]
    AmbiguousVault(String),
    #[error("vault {vault} has no document {doc} (see `nexus doc list --vault {vault}`)")]
    UnknownDocument { vault: VaultId, doc: DocId },
    #[error("`{0}` is not a duration: use a number with s, m, h or d (30m, 1h, 7d)")]
    Duration(String),
    #[error("`{value}` is not JSON: {source} (quote strings: '\"text\"')")]
    Json {
        value: String,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    JsonFile { path: PathBuf, reason: String },
    #[error("--text takes a JSON string (`'\"hello\"'`), not {0}")]
    NotText(serde_json::Value),
    #[error("no randomness: {0}")]
    Random(#[from] nexus_core::KeyError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Peer(#[from] nexus::PeerError),
    #[error(transparent)]
    Control(#[from] nexus::ControlError),
    #[error("the daemon refused: {0}")]
    Daemon(String),
    #[error("`{0}` does not end in /p2p/<DeviceId>; a peer address must name the device")]
    AddressWithoutPeer(Multiaddr),
    #[error("{0}")]
    Join(String),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The platform data directory for Nexus.
fn default_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("nexus");
    }
    match std::env::var_os("HOME") {
        Some(home) if cfg!(target_os = "macos") => {
            PathBuf::from(home).join("Library/Application Support/nexus")
        }
        Some(home) => PathBuf::from(home).join(".local/share/nexus"),
        None => PathBuf::from(".nexus"),
    }
}

/// An opened home: key, store, node.
struct Home {
    key: DeviceKey,
    store: SqliteStore,
    node: Node,
}

impl Home {
    fn open(dir: &Path, create: bool) -> Result<(Self, bool), CliError> {
        let key_path = dir.join("device.key");
        if !create && !key_path.exists() {
            return Err(CliError::NotInitialised(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| CliError::Home {
            path: dir.to_owned(),
            source,
        })?;
        let (key, created) = load_or_create_key(&key_path)?;
        let store = SqliteStore::open(&dir.join("nexus.db"))?;
        let node = Node::load(&store, key.clone(), ActorId::random(), NodeConfig::new())
            .map_err(|e| CliError::Load(e.to_string()))?;
        Ok((Self { key, store, node }, created))
    }

    fn commit(&mut self, out: Output) -> Result<(), CliError> {
        self.store.commit(out.batch)?;
        Ok(())
    }

    fn vault_id(&self, name_or_id: &str) -> Result<VaultId, CliError> {
        if let Ok(id) = name_or_id.parse::<VaultId>()
            && self.node.vault(&id).is_some()
        {
            return Ok(id);
        }
        let matches: Vec<VaultId> = self
            .node
            .vaults()
            .filter(|v| v.membership().name() == name_or_id)
            .map(Vault::id)
            .collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(CliError::UnknownVault(name_or_id.to_owned())),
            _ => Err(CliError::AmbiguousVault(name_or_id.to_owned())),
        }
    }

    fn vault(&self, id: &VaultId) -> Result<&Vault, CliError> {
        self.node
            .vault(id)
            .ok_or_else(|| CliError::UnknownVault(id.to_string()))
    }
}

fn parse_duration_ms(text: &str) -> Result<u64, CliError> {
    let bad = || CliError::Duration(text.to_owned());
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).ok_or_else(bad)
}

fn parse_json(value: &str) -> Result<Value, CliError> {
    serde_json::from_str(value).map_err(|source| CliError::Json {
        value: value.to_owned(),
        source,
    })
}

pub(crate) fn run(cli: Cli) -> Result<Out, CliError> {
    let dir = cli.home.unwrap_or_else(default_home);
    if let Command::Init = cli.command {
        let (home, created) = Home::open(&dir, true)?;
        let id = home.key.device_id();
        let human = if created {
            format!("Created device {id}\nHome: {}", dir.display())
        } else {
            format!("Device {id} already exists in {}", dir.display())
        };
        return Ok(Out::new(
            json!({ "device_id": id.to_string(), "created": created, "home": dir }),
            human,
        ));
    }
    let (mut home, _) = Home::open(&dir, false)?;
    let now = now_ms();
    match cli.command {
        Command::Init => unreachable_init(),
        Command::Id { qr } => {
            let id = home.key.device_id().to_string();
            let mut human = id.clone();
            if qr && let Ok(code) = qrcode::QrCode::new(id.as_bytes()) {
                let art = code
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .quiet_zone(true)
                    .build();
                human = format!("{art}\n{id}");
            }
            Ok(Out::new(json!({ "device_id": id }), human))
        }
        Command::Vault { command } => match command {
            VaultCommand::Create { name } => {
                let (id, out) = home.node.create_vault(&name, random_bytes()?, now)?;
                home.commit(out)?;
                Ok(Out::new(
                    json!({ "vault_id": id.to_string(), "name": name }),
                    id.to_string(),
                ))
            }
            VaultCommand::List => {
                let me = home.key.device_id();
                let vaults: Vec<Value> = home
                    .node
                    .vaults()
                    .map(|v| {
                        json!({
                            "vault_id": v.id().to_string(),
                            "name": v.membership().name(),
                            "role": v.membership().role(&me).map(|r| r.to_string()),
                            "members": v.membership().members().len(),
                            "documents": v.documents().count(),
                        })
                    })
                    .collect();
                let human = vaults
                    .iter()
                    .map(|v| {
                        format!(
                            "{}  {}  ({}, {} members, {} documents)",
                            v["vault_id"].as_str().unwrap_or(""),
                            v["name"].as_str().unwrap_or(""),
                            v["role"].as_str().unwrap_or("not a member"),
                            v["members"],
                            v["documents"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(Out::new(Value::Array(vaults), human))
            }
        },
        Command::Invite { command } => match command {
            InviteCommand::Create {
                vault,
                expires,
                role,
            } => {
                let vault = home.vault_id(&vault)?;
                let expires_at_ms = now.saturating_add(parse_duration_ms(&expires)?);
                let secret: [u8; 32] = random_bytes()?;
                let (invite, out) =
                    home.node
                        .create_invite(vault, &secret, role, expires_at_ms, now)?;
                home.commit(out)?;
                let mut addresses: Vec<String> = match ask_daemon(&dir, &json!({ "op": "status" }))
                {
                    Ok(Some(status)) => status["listening"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                // Addresses another machine can use first (relayed, then LAN), loopback
                // last; a code carries a bounded number.
                addresses.sort_by_key(|a| {
                    (
                        !a.contains("/p2p-circuit"),
                        a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/"),
                    )
                });
                addresses.truncate(nexus_core::invite_code::MAX_ADDRESSES);
                let code = InviteCode {
                    vault,
                    invite,
                    secret,
                    expires_at_ms,
                    addresses,
                };
                Ok(Out::new(
                    json!({ "code": code.to_string(), "vault_id": vault.to_string(), "role": role.to_string(), "expires_at_ms": expires_at_ms }),
                    code.to_string(),
                ))
            }
        },
        Command::Devices { command } => match command {
            DevicesCommand::List { vault } => {
                let vault = home.vault_id(&vault)?;
                let v = home.vault(&vault)?;
                let me = home.key.device_id();
                let mut rows = Vec::new();
                for (device, member) in v.membership().members() {
                    rows.push(json!({ "device_id": device.to_string(), "role": member.role.to_string(), "status": "member", "this_device": *device == me }));
                }
                for device in v.membership().revoked().keys() {
                    rows.push(json!({ "device_id": device.to_string(), "role": null, "status": "revoked", "this_device": *device == me }));
                }
                let human = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}  {}{}",
                            r["device_id"].as_str().unwrap_or(""),
                            r["role"].as_str().unwrap_or("revoked"),
                            if r["this_device"] == true {
                                "  (this device)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(Out::new(Value::Array(rows), human))
            }
            DevicesCommand::Approve {
                vault,
                device,
                role,
            } => {
                let vault = home.vault_id(&vault)?;
                let out = home.node.add_device(vault, device, role, now)?;
                home.commit(out)?;
                Ok(Out::new(
                    json!({ "approved": device.to_string(), "role": role.to_string() }),
                    format!("Approved {device} as {role}"),
                ))
            }
            DevicesCommand::Revoke { vault, device } => {
                let vault = home.vault_id(&vault)?;
                let out = home.node.revoke_device(vault, device, now)?;
                home.commit(out)?;
                Ok(Out::new(
                    json!({ "revoked": device.to_string() }),
                    format!("Revoked {device}"),
                ))
            }
        },
        Command::Doc { command } => run_doc(&mut home, command, now),
        Command::Check => check(&home),
        Command::Serve {
            listen,
            peers,
            relays,
            no_mdns,
        } => serve(home, &dir, listen, peers, relays, !no_mdns, cli.json),
        Command::Status => status(&home, &dir),
        Command::Peer {
            command: PeerCommand::Add { address },
        } => peer_add(&mut home, &dir, address),
        Command::Join { code } => join(home, &dir, code),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Asks the daemon on `dir`, if one runs.
fn ask_daemon(dir: &Path, request: &Value) -> Result<Option<Value>, CliError> {
    if !daemon_running(dir) {
        return Ok(None);
    }
    let reply = runtime()?.block_on(control_request(dir, request))?;
    if reply["ok"] == false {
        let error = reply["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_owned();
        return Err(CliError::Daemon(error));
    }
    Ok(Some(reply))
}

fn default_listen() -> Vec<Multiaddr> {
    [
        "/ip4/0.0.0.0/tcp/0",
        "/ip4/0.0.0.0/udp/0/quic-v1",
        "/ip4/0.0.0.0/tcp/0/ws",
        "/ip4/0.0.0.0/udp/0/webrtc-direct",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

fn log_line(json: bool, event: &PeerEvent) {
    let now = now_ms();
    let (kind, text) = match event {
        PeerEvent::Listening(address) => ("listening", format!("listening on {address}")),
        PeerEvent::Connected(device) => ("connected", format!("connected to {device}")),
        PeerEvent::Disconnected(device) => ("disconnected", format!("disconnected from {device}")),
        PeerEvent::SessionReady { vault, peer } => {
            ("syncing", format!("syncing vault {vault} with {peer}"))
        }
        PeerEvent::SessionRefused { peer, reason } => (
            "refused",
            format!(
                "session with {peer} ended ({} {}): {}",
                if reason.by_us {
                    "we refused"
                } else {
                    "they refused"
                },
                format!("{:?}", reason.code).to_lowercase(),
                reason.reason
            ),
        ),
        PeerEvent::DocChanged { vault, doc, .. } => (
            "doc_changed",
            format!("document {doc} in vault {vault} changed"),
        ),
        PeerEvent::MembershipChanged(vault) => {
            ("membership", format!("membership of vault {vault} changed"))
        }
        PeerEvent::VaultJoined(vault) => ("joined", format!("now holding vault {vault}")),
        PeerEvent::Rejected { peer, error } => {
            ("rejected", format!("rejected from {peer}: {error}"))
        }
        PeerEvent::MailboxLeft {
            vault,
            changes,
            bytes,
        } => (
            "mailbox-left",
            format!(
                "left {changes} change(s) for offline members of {vault} at the relay ({bytes} encrypted bytes)"
            ),
        ),
        PeerEvent::MailboxPickedUp {
            vault,
            bundles,
            changes,
        } => (
            "mailbox-picked-up",
            format!("took {bundles} bundle(s) with {changes} change(s) for {vault} from the relay"),
        ),
        PeerEvent::Problem(text) => ("problem", text.clone()),
        _ => ("event", format!("{event:?}")),
    };
    if json {
        eprintln!(
            "{}",
            json!({ "at_ms": now, "event": kind, "message": text })
        );
    } else {
        eprintln!("{text}");
    }
}

fn serve(
    home: Home,
    dir: &Path,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
    mdns: bool,
    json_logs: bool,
) -> Result<Out, CliError> {
    let key = home.key.clone();
    drop(home);
    let config = PeerConfig {
        listen: if listen.is_empty() {
            default_listen()
        } else {
            listen
        },
        dial: peers,
        relays,
        mdns,
        ..PeerConfig::default()
    };
    runtime()?.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let peer = NativePeer::start(dir, key, config, Some(tx)).await?;
        let device = peer.device_id();
        if json_logs {
            println!("{}", json!({ "device_id": device.to_string() }));
        } else {
            println!("Device {device}");
        }
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let PeerEvent::Listening(address) = &event {
                    // Addresses go to stdout (one per line) so scripts can read them.
                    if json_logs {
                        println!("{}", json!({ "listening": address.to_string() }));
                    } else {
                        println!("Listening on {address}");
                    }
                }
                log_line(json_logs, &event);
            }
        });
        peer.run(nexus::shutdown_signal()).await?;
        Ok::<(), CliError>(())
    })?;
    Ok(Out::new(json!({ "stopped": true }), "Stopped"))
}

fn status(home: &Home, dir: &Path) -> Result<Out, CliError> {
    let value = match ask_daemon(dir, &json!({ "op": "status" }))? {
        Some(value) => value,
        None => {
            // No daemon: what the store knows.
            let (records, _) = PeerRecord::load_all(&home.store)?;
            let vaults: Vec<Value> = home
                .node
                .vaults()
                .map(|v| {
                    let last = records
                        .iter()
                        .filter_map(|r| r.last_synced.get(&v.id()).map(|(at, _)| *at))
                        .max();
                    json!({ "vault_id": v.id().to_string(), "name": v.membership().name(), "documents": v.documents().count(), "members": v.membership().members().len(), "sessions": [], "last_sync_ms": last })
                })
                .collect();
            let peers: Vec<Value> = records
                .iter()
                .map(|r| json!({ "device_id": r.device.to_string(), "connected": false, "addresses": r.addresses, "last_seen_ms": r.last_seen_ms, "failures": r.failures }))
                .collect();
            json!({ "running": false, "device_id": home.key.device_id().to_string(), "listening": [], "connected": [], "vaults": vaults, "peers": peers })
        }
    };
    let mut lines = vec![format!(
        "Device {} — daemon {}",
        value["device_id"].as_str().unwrap_or(""),
        if value["running"] == true {
            "running"
        } else {
            "not running (start it with `nexus serve`)"
        }
    )];
    for address in value["listening"].as_array().into_iter().flatten() {
        lines.push(format!("  listening on {}", address.as_str().unwrap_or("")));
    }
    let now = now_ms();
    let ago = |ms: &Value| match ms.as_u64() {
        Some(at) if at > 0 => format!("{}s ago", now.saturating_sub(at) / 1000),
        _ => "never".to_owned(),
    };
    for vault in value["vaults"].as_array().into_iter().flatten() {
        let sessions = vault["sessions"].as_array().map_or(0, Vec::len);
        lines.push(format!(
            "Vault {} {}: {} documents, {} members, {} live sessions, last sync {}",
            vault["vault_id"].as_str().unwrap_or(""),
            vault["name"],
            vault["documents"],
            vault["members"],
            sessions,
            ago(&vault["last_sync_ms"])
        ));
    }
    for peer in value["peers"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{} {} {} (last seen {}, {} failed attempts)",
            if peer["relay"] == true {
                "Relay"
            } else {
                "Peer"
            },
            peer["device_id"].as_str().unwrap_or(""),
            if peer["connected"] == true {
                "connected"
            } else {
                "not connected"
            },
            ago(&peer["last_seen_ms"]),
            peer["failures"]
        ));
    }
    Ok(Out::new(value, lines.join("\n")))
}

fn peer_add(home: &mut Home, dir: &Path, address: Multiaddr) -> Result<Out, CliError> {
    let device = match address.iter().last() {
        Some(Protocol::P2p(peer)) => nexus::device_of(&peer),
        _ => None,
    }
    .ok_or_else(|| CliError::AddressWithoutPeer(address.clone()))?;
    let mut bare = address.clone();
    bare.pop();
    let (records, _) = PeerRecord::load_all(&home.store)?;
    let mut record = records
        .into_iter()
        .find(|r| r.device == device)
        .unwrap_or_else(|| PeerRecord::new(device));
    record.add_address(&bare.to_string());
    home.store.commit(record.to_batch())?;
    let live = ask_daemon(
        dir,
        &json!({ "op": "dial", "address": address.to_string() }),
    )?
    .is_some();
    let human = if live {
        format!("Added {device}; the daemon is connecting")
    } else {
        format!("Added {device}; `nexus serve` will connect to it")
    };
    Ok(Out::new(
        json!({ "device_id": device.to_string(), "address": bare.to_string(), "daemon": live }),
        human,
    ))
}

fn join(home: Home, dir: &Path, code: InviteCode) -> Result<Out, CliError> {
    let vault = code.vault;
    if home.node.vault(&vault).is_some() {
        return Ok(Out::new(
            json!({ "vault_id": vault.to_string(), "already_member": true }),
            format!("Already holding vault {vault}"),
        ));
    }
    if code.addresses.is_empty() && !daemon_running(dir) {
        return Err(CliError::Join(
            "the invite carries no address: start `nexus serve` here, or ask for a code made while the inviter's daemon runs".into(),
        ));
    }
    let reply = if daemon_running(dir) {
        runtime()?.block_on(control_request(
            dir,
            &json!({ "op": "join", "code": code.to_string() }),
        ))?
    } else {
        // No daemon: run a short-lived peer until the vault arrives.
        let key = home.key.clone();
        drop(home);
        let config = PeerConfig {
            listen: Vec::new(),
            mdns: false,
            control_socket: false,
            ..PeerConfig::default()
        };
        runtime()?.block_on(async move {
            let mut peer = NativePeer::start(dir, key, config, None).await?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            peer.join(code, Some(tx));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let run = tokio::spawn(peer.run(async move {
                let _ = stop_rx.await;
            }));
            let reply = rx
                .await
                .unwrap_or_else(|_| json!({ "ok": false, "error": "the peer stopped" }));
            if reply["ok"] == true {
                // Give the first documents a moment to arrive.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            let _ = stop_tx.send(());
            let _ = run.await;
            Ok::<Value, CliError>(reply)
        })?
    };
    if reply["ok"] != true {
        return Err(CliError::Join(
            reply["error"]
                .as_str()
                .unwrap_or("joining failed")
                .to_owned(),
        ));
    }
    Ok(Out::new(
        json!({ "vault_id": vault.to_string(), "joined": true }),
        format!("Joined vault {vault}"),
    ))
}

fn unreachable_init() -> Result<Out, CliError> {
    // `init` returned above; kept total without a panic.
    Ok(Out::new(Value::Null, ""))
}

fn run_doc(home: &mut Home, command: DocCommand, now: u64) -> Result<Out, CliError> {
    match command {
        DocCommand::Create { vault, json_file } => {
            let vault = home.vault_id(&vault)?;
            let initial = match &json_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| CliError::JsonFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| CliError::JsonFile {
                            path: path.clone(),
                            reason: format!("not JSON: {e}"),
                        })?;
                    match value {
                        Value::Object(map) => Some(map),
                        _ => {
                            return Err(CliError::JsonFile {
                                path: path.clone(),
                                reason: "a document starts from a JSON object ({...})".into(),
                            });
                        }
                    }
                }
                None => None,
            };
            let doc = DocId::random()?;
            let mut out = home.node.create_document(vault, doc, now)?;
            if let Some(map) = initial {
                out.extend(home.node.change(vault, doc, |tx| {
                    for (key, value) in &map {
                        put_json(tx, &ROOT, key.as_str(), value)?;
                    }
                    Ok(())
                })?);
            }
            home.commit(out)?;
            Ok(Out::new(
                json!({ "doc_id": doc.to_string() }),
                doc.to_string(),
            ))
        }
        DocCommand::List { vault } => {
            let vault = home.vault_id(&vault)?;
            let v = home.vault(&vault)?;
            let docs: Vec<Value> = v
                .documents()
                .map(|d| json!({ "doc_id": d.id().to_string(), "changes": d.change_count(), "heads": d.heads().iter().map(|h| h.to_string()).collect::<Vec<_>>() }))
                .collect();
            let human = v
                .documents()
                .map(|d| {
                    let mut preview = d.to_json().to_string();
                    if preview.len() > 60 {
                        let cut = (0..=60)
                            .rev()
                            .find(|i| preview.is_char_boundary(*i))
                            .unwrap_or(0);
                        preview.truncate(cut);
                        preview.push('…');
                    }
                    format!("{}  {preview}", d.id())
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Out::new(Value::Array(docs), human))
        }
        DocCommand::Put {
            vault,
            doc,
            key,
            value,
            text,
        } => {
            let vault = home.vault_id(&vault)?;
            let value = parse_json(&value)?;
            if home.vault(&vault)?.document(&doc).is_none() {
                return Err(CliError::UnknownDocument { vault, doc });
            }
            let out = match (text, value.as_str()) {
                (false, _) => home
                    .node
                    .change(vault, doc, |tx| put_json(tx, &ROOT, key.as_str(), &value))?,
                (true, Some(string)) => home.node.change(vault, doc, |tx| {
                    let text = tx.put_object(ROOT, key.as_str(), ObjType::Text)?;
                    tx.splice_text(&text, 0, 0, string)
                })?,
                (true, None) => return Err(CliError::NotText(value)),
            };
            home.commit(out)?;
            Ok(Out::new(
                json!({ "doc_id": doc.to_string(), "key": key, "value": value }),
                "",
            ))
        }
        DocCommand::Get { vault, doc, key } => {
            let vault = home.vault_id(&vault)?;
            let d = home
                .vault(&vault)?
                .document(&doc)
                .ok_or(CliError::UnknownDocument { vault, doc })?;
            let mut value = d.to_json();
            if let Some(key) = key {
                value = value.get(&key).cloned().unwrap_or(Value::Null);
            }
            let human = serde_json::to_string_pretty(&value).unwrap_or_default();
            Ok(Out::new(value, human))
        }
    }
}

fn check(home: &Home) -> Result<Out, CliError> {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    for vault in home.node.vaults() {
        for doc in vault.documents() {
            checked += doc.change_count();
            for problem in doc.verify() {
                problems.push(json!({ "vault_id": vault.id().to_string(), "doc_id": doc.id().to_string(), "problem": format!("{problem:?}") }));
            }
        }
    }
    let human = if problems.is_empty() {
        format!(
            "OK: {checked} changes in {} vaults verified",
            home.node.vaults().count()
        )
    } else {
        format!(
            "{} problems:\n{}",
            problems.len(),
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    let ok = problems.is_empty();
    let mut out = Out::new(
        json!({ "ok": ok, "changes_checked": checked, "problems": problems }),
        human,
    );
    out.exit_code = if ok { 0 } else { 2 };
    Ok(out)
}
