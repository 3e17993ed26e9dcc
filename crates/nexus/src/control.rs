//! The control socket's wire format: what a `nexus` command asks the daemon running on
//! the same home, and what the daemon answers. Only the messages live here; the socket
//! itself is native (`nexus::control_request`, and the daemon's side in `NativeEngine`).
//!
//! One JSON object per line each way. A [`Request`] names its operation in `op`:
//!
//! ```text
//! {"op":"status"}
//! {"address":"/ip4/192.168.1.7/tcp/4001/p2p/12D3KooW…","op":"dial"}
//! {"code":"nexus1…","op":"join"}
//! {"op":"accept","vault":"…"}
//! ```
//!
//! A [`Reply`] says `"ok": true` with the answer's fields beside it (a [`Status`], a
//! [`Joined`], or nothing for a dial), or `"ok": false` with an `error`. Keys are written
//! in sorted order, so a message is the same line however it was built.
//!
//! ```
//! use nexus::control::{Reply, Request};
//!
//! let request = Request::from_json(r#"{"op":"status"}"#).unwrap();
//! assert_eq!(request, Request::Status);
//! let refused = Reply::Failed("the daemon is stopping".into());
//! assert_eq!(refused.to_json().unwrap(), r#"{"error":"the daemon is stopping","ok":false}"#);
//! assert_eq!(Reply::from_json(r#"{"ok":true}"#).unwrap(), Reply::Dialed);
//! ```

use std::path::PathBuf;

use libp2p::Multiaddr;
use nexus_core::node::Node;
use nexus_core::peers::PeerRecord;
use nexus_core::{DeviceId, InviteCode, VaultId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::as_text;
use crate::views::{OfferSummary, VaultSummary};

/// What a command asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Request {
    /// What the daemon is doing; answered with [`Reply::Status`].
    Status,
    /// Connect to a peer now; answered with [`Reply::Dialed`] once the dial started.
    Dial {
        /// The peer's address, ending in `/p2p/<DeviceId>`.
        #[serde(with = "as_text")]
        address: Multiaddr,
    },
    /// Try an invite; answered with [`Reply::Joined`] once this device holds the vault,
    /// or [`Reply::Failed`] when no member let it in in time.
    Join {
        /// The invite code (`nexus1…`).
        #[serde(with = "as_text")]
        code: InviteCode,
    },
    /// Take in a vault offered to this device ([`Status::offers`]); answered with
    /// [`Reply::Joined`].
    Accept {
        /// The vault.
        #[serde(with = "as_text")]
        vault: VaultId,
    },
    /// Decline a vault offered to this device: it is dropped and refused from then on;
    /// answered with [`Reply::Status`].
    Decline {
        /// The vault.
        #[serde(with = "as_text")]
        vault: VaultId,
    },
}

/// Why a line is not a request.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The line is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but no request this daemon knows (an unknown `op`, a missing or unreadable
    /// field).
    #[error("unknown request: {0}")]
    Unknown(serde_json::Error),
}

impl Request {
    /// Reads one request line (without its newline).
    pub fn from_json(line: &str) -> Result<Self, RequestError> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(RequestError::NotJson)?;
        serde_json::from_value(value).map_err(RequestError::Unknown)
    }

    /// The request as one line of JSON (without a newline).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        sorted_json(self)
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// To [`Request::Status`].
    Status(Box<Status>),
    /// To [`Request::Dial`]: the dial started.
    Dialed,
    /// To [`Request::Join`]: this device holds the vault.
    Joined(Joined),
    /// The request could not be carried out.
    Failed(String),
}

impl Reply {
    /// [`Reply::Joined`]: this device holds `vault_id` (and did before it asked, if
    /// `already_member`).
    pub fn joined(vault_id: VaultId, already_member: bool) -> Self {
        Reply::Joined(Joined {
            vault_id,
            already_member,
        })
    }

    /// Reads one reply line (without its newline).
    pub fn from_json(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// The reply as one line of JSON (without a newline).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        sorted_json(self)
    }
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The vault.
    #[serde(with = "as_text")]
    pub vault_id: VaultId,
    /// This device held the vault before it asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_member: bool,
}

/// What `nexus status` shows: the device, its daemon's addresses and connections, the
/// sync state of each vault and the peers it knows. A running daemon fills every field;
/// without one, [`Status::stored`] tells what the store knows, and leaves out what only
/// a daemon knows (`home`, [`VaultStatus::member`], [`PeerStatus::relay`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Whether a daemon answered.
    pub running: bool,
    /// This device.
    #[serde(with = "as_text")]
    pub device_id: DeviceId,
    /// The daemon's home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    /// Where the daemon listens, each address ending in `/p2p/<DeviceId>`.
    #[serde(with = "as_text::vec")]
    pub listening: Vec<Multiaddr>,
    /// The devices connected now.
    #[serde(with = "as_text::vec")]
    pub connected: Vec<DeviceId>,
    /// Every vault this device holds.
    pub vaults: Vec<VaultStatus>,
    /// Every peer this device remembers.
    pub peers: Vec<PeerStatus>,
    /// Vaults offered to this device and waiting for an answer (a running daemon only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<OfferSummary>,
}

impl Status {
    /// What the store of `node` tells with no daemon running: nothing listens, nothing
    /// is connected, the vaults' last syncs as `records` (the peer table) remember them.
    pub fn stored(node: &Node, records: &[PeerRecord]) -> Self {
        let me = node.device_id();
        Self {
            running: false,
            device_id: me,
            home: None,
            listening: Vec::new(),
            connected: Vec::new(),
            vaults: node
                .vaults()
                .map(|v| VaultStatus::stored(VaultSummary::of(v, &me), records))
                .collect(),
            peers: records.iter().map(PeerStatus::stored).collect(),
            offers: Vec::new(),
        }
    }
}

/// The sync state of one vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultStatus {
    /// The vault.
    #[serde(with = "as_text")]
    pub vault_id: VaultId,
    /// Its name.
    pub name: String,
    /// Whether this device is a member (shown by a running daemon only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<bool>,
    /// How many documents it holds.
    pub documents: usize,
    /// How many devices are members.
    pub members: usize,
    /// Its sessions open now, one per peer.
    pub sessions: Vec<SessionStatus>,
    /// When it last finished a sync with any peer (ms since the Unix epoch), if ever.
    pub last_sync_ms: Option<u64>,
}

impl VaultStatus {
    /// The vault of `summary` as the store knows it: no sessions, membership left out,
    /// and the latest sync any of `records` remembers.
    pub fn stored<'a>(
        summary: VaultSummary,
        records: impl IntoIterator<Item = &'a PeerRecord>,
    ) -> Self {
        let last_sync_ms = records
            .into_iter()
            .filter_map(|r| r.last_synced.get(&summary.vault_id).map(|(at, _)| *at))
            .max();
        Self {
            vault_id: summary.vault_id,
            name: summary.name,
            member: None,
            documents: summary.documents,
            members: summary.members,
            sessions: Vec::new(),
            last_sync_ms,
        }
    }
}

/// One open session of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The peer.
    #[serde(with = "as_text")]
    pub device_id: DeviceId,
    /// Whether its handshake is done and documents sync.
    pub syncing: bool,
}

/// One remembered peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer.
    #[serde(with = "as_text")]
    pub device_id: DeviceId,
    /// Whether it is one of the daemon's relays (shown by a running daemon only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<bool>,
    /// Whether it is connected now.
    pub connected: bool,
    /// Where it was reachable, most recent first.
    pub addresses: Vec<String>,
    /// When it was last connected (ms since the Unix epoch; 0 for never).
    pub last_seen_ms: u64,
    /// Connection attempts that failed since the last success.
    pub failures: u32,
}

impl PeerStatus {
    /// What `record` remembers: not connected, relay or not left out.
    pub fn stored(record: &PeerRecord) -> Self {
        Self {
            device_id: record.device,
            relay: None,
            connected: false,
            addresses: record.addresses.clone(),
            last_seen_ms: record.last_seen_ms,
            failures: record.failures,
        }
    }
}

/// JSON with sorted keys: through `serde_json::Value`, whose maps are sorted.
fn sorted_json(value: &impl Serialize) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_value(value)?.to_string())
}

/// A reply as it travels: `ok`, and the answer's fields (or `error`) beside it.
#[derive(Serialize, Deserialize)]
struct Wire<T> {
    ok: bool,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Nothing {}

/// The fields beside `ok` of a reply read back. The wire names no kind of answer (the
/// asker knows what it asked), so the first shape that fits is taken: a failure (with
/// `error`), a status, a join, or nothing.
#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Failed { error: String },
    Status(Box<Status>),
    Joined(Joined),
    Nothing(Nothing),
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Status(status) => Wire {
                ok: true,
                body: status,
            }
            .serialize(serializer),
            Reply::Dialed => Wire {
                ok: true,
                body: Nothing {},
            }
            .serialize(serializer),
            Reply::Joined(joined) => Wire {
                ok: true,
                body: joined,
            }
            .serialize(serializer),
            Reply::Failed(error) => Wire {
                ok: false,
                body: Failure { error },
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Wire { ok, body } = Wire::<Answer>::deserialize(deserializer)?;
        Ok(match (ok, body) {
            (_, Answer::Failed { error }) => Reply::Failed(error),
            (false, _) => Reply::Failed("the daemon refused without saying why".into()),
            (true, Answer::Status(status)) => Reply::Status(status),
            (true, Answer::Joined(joined)) => Reply::Joined(joined),
            (true, Answer::Nothing(Nothing {})) => Reply::Dialed,
        })
    }
}

#[cfg(test)]
mod tests;
