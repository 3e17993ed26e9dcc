//! The commands: each opens the home, does its work through `nexus_core` (or asks the
//! daemon), commits, and returns what came of it as a [`Report`]. Nothing here prints;
//! `render` turns a report into text for people or `--json` output.

mod daemon;
mod doc;
mod serve;
mod vault;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nexus::views::{DeviceSummary, InviteSummary, OfferSummary, VaultSummary};
use nexus_core::{DeviceId, DocId, Hash, InviteCode, Role, VaultId};
use serde_json::Value;

pub(crate) use daemon::{PeerAdded, StatusReport};
pub(crate) use doc::{CheckProblem, Checked, Listed};
pub(crate) use serve::ServeNote;

use crate::args::{Command, PeerCommand};
use crate::error::CliError;
use crate::home::Home;

/// What a command did or found.
pub(crate) enum Report {
    /// `init`: this device, whether it was made now, and its home.
    Init {
        device: DeviceId,
        created: bool,
        home: PathBuf,
    },
    /// `id`: this device, drawn as a QR code too if `qr`.
    Id { device: DeviceId, qr: bool },
    /// `vault create`.
    VaultCreated { vault: VaultId, name: String },
    /// `vault list`.
    Vaults(Vec<VaultSummary>),
    /// `vault pending`.
    Offers(Vec<OfferSummary>),
    /// `vault accept`: the vault now held.
    OfferAccepted(VaultId),
    /// `vault decline`.
    OfferDeclined(VaultId),
    /// `invite create`: the code, and the role it grants.
    Invite { code: Box<InviteCode>, role: Role },
    /// `invite list`.
    Invites(Vec<InviteSummary>),
    /// `invite cancel`.
    InviteCancelled(Hash),
    /// `devices list`.
    Devices(Vec<DeviceSummary>),
    /// `devices approve`.
    Approved { device: DeviceId, role: Role },
    /// `devices revoke`.
    Revoked(DeviceId),
    /// `doc create`.
    DocCreated(DocId),
    /// `doc export`: the document, the file, how many bytes.
    Exported {
        doc: DocId,
        path: std::path::PathBuf,
        bytes: usize,
    },
    /// `doc list`.
    Documents(Vec<Listed>),
    /// `doc put`: the key set and its value.
    Put {
        doc: DocId,
        key: String,
        value: Value,
    },
    /// `doc get`: the document, or the value of one key.
    Document(Value),
    /// `check`.
    Check(Checked),
    /// `serve`, after it was told to stop.
    Stopped,
    /// `status`.
    Status(StatusReport),
    /// `peer add`.
    PeerAdded(PeerAdded),
    /// `join`: the vault, and whether this device held it already.
    Joined {
        vault: VaultId,
        already_member: bool,
    },
}

impl Report {
    /// The process's exit code: 2 when `check` found problems, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Report::Check(checked) if !checked.problems.is_empty() => 2,
            _ => 0,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `command` on the home `dir`. `serve` tells `note` what happens while it runs.
pub(crate) fn run(
    command: Command,
    dir: &Path,
    note: impl Fn(ServeNote) + Send + 'static,
) -> Result<Report, CliError> {
    let open = || Home::open(dir, false).map(|(home, _)| home);
    let now = now_ms();
    match command {
        Command::Init => {
            let (home, created) = Home::open(dir, true)?;
            Ok(Report::Init {
                device: home.key.device_id(),
                created,
                home: dir.to_owned(),
            })
        }
        Command::Id { qr } => Ok(Report::Id {
            device: open()?.key.device_id(),
            qr,
        }),
        Command::Vault { command } => vault::vault(dir, command, now),
        Command::Invite { command } => vault::invite(&mut open()?, dir, command, now),
        Command::Devices { command } => vault::devices(&mut open()?, command, now),
        Command::Doc { command } => doc::doc(&mut open()?, command, now),
        Command::Check => Ok(Report::Check(doc::check(&open()?))),
        Command::Serve {
            listen,
            peers,
            relays,
            no_mdns,
        } => {
            let options = serve::Options {
                listen,
                peers,
                relays,
                mdns: !no_mdns,
            };
            serve::serve(open()?, dir, options, note)
        }
        Command::Status => daemon::status(&open()?, dir).map(Report::Status),
        Command::Peer {
            command: PeerCommand::Add { address },
        } => daemon::peer_add(&mut open()?, dir, address).map(Report::PeerAdded),
        Command::Join { code } => daemon::join(open()?, dir, code),
    }
}
