//! Why a command failed: every error `nexus` prints before it exits non-zero.

use std::path::PathBuf;

use nexus::control::Reply;
use nexus::libp2p::Multiaddr;
use nexus_core::{DocId, VaultId};
use thiserror::Error;

/// Why a command failed.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// The home holds no device key yet.
    #[error("no device in {0}: run `nexus init` first")]
    NotInitialised(PathBuf),
    /// The home directory could not be created.
    #[error("cannot create the home directory {path}: {source}")]
    Home {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The device key file could not be read or written.
    #[error(transparent)]
    KeyFile(#[from] nexus::KeyFileError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] nexus::SqliteError),
    /// The vaults in the database could not be loaded.
    #[error("loading the vaults: {0}")]
    Load(String),
    /// The membership rules or a document refused the operation.
    #[error(transparent)]
    Vault(#[from] nexus_core::VaultError),
    /// `--vault` names no vault held here.
    #[error("no vault `{0}` here (see `nexus vault list`)")]
    UnknownVault(String),
    /// `--vault` names several vaults.
    #[error("`{0}` names more than one vault; use its id")]
    AmbiguousVault(String),
    /// The vault holds no such document.
    #[error("vault {vault} has no document {doc} (see `nexus doc list --vault {vault}`)")]
    UnknownDocument { vault: VaultId, doc: DocId },
    /// `--expires` is not a duration.
    #[error("`{0}` is not a duration: use a number with s, m, h or d (30m, 1h, 7d)")]
    Duration(String),
    /// A value given on the command line is not JSON.
    #[error("`{value}` is not JSON: {source} (quote strings: '\"text\"')")]
    Json {
        value: String,
        source: serde_json::Error,
    },
    /// `--json-file` could not be read or is not a JSON object.
    #[error("{path}: {reason}")]
    JsonFile { path: PathBuf, reason: String },
    /// A file could not be written (`doc export --out`).
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// `--text` was given something other than a string.
    #[error("--text takes a JSON string (`'\"hello\"'`), not {0}")]
    NotText(serde_json::Value),
    /// The system gave no randomness for a new id or secret.
    #[error("no randomness: {0}")]
    Random(#[from] nexus_core::KeyError),
    /// The async runtime for network work could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The peer runtime failed.
    #[error(transparent)]
    Peer(#[from] nexus::NativeError),
    /// Talking to the daemon failed.
    #[error(transparent)]
    Control(#[from] nexus::ControlError),
    /// Vault offers wait in the daemon; none runs.
    #[error(
        "no daemon runs in this home: vault offers arrive and wait only while `nexus daemon` runs"
    )]
    OffersNeedDaemon,
    /// No waiting offer has this id or name.
    #[error("no vault offer matches `{0}`; `nexus vault pending` lists them")]
    UnknownOffer(String),
    /// The daemon refused a request.
    #[error("the daemon refused: {0}")]
    Daemon(String),
    /// The daemon answered with a reply of another kind than the request asked for.
    #[error("the daemon answered something else than what was asked: {0:?}")]
    UnexpectedReply(Box<Reply>),
    /// `peer add` was given an address that names no device.
    #[error("`{0}` does not end in /p2p/<DeviceId>; a peer address must name the device")]
    AddressWithoutPeer(Multiaddr),
    /// Joining a vault failed.
    #[error("{0}")]
    Join(String),
    /// The `--json` output could not be written.
    #[error("writing the JSON output: {0}")]
    Output(serde_json::Error),
}
