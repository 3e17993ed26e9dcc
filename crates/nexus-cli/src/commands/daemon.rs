//! The commands that talk to the daemon when one runs on the home, and make do with the
//! store when none does: `status`, `peer add`, `join`.

use std::path::Path;
use std::time::Duration;

use nexus::control::{Reply, Request, Status};
use nexus::libp2p::Multiaddr;
use nexus::libp2p::multiaddr::Protocol;
use nexus::views::OfferSummary;
use nexus::{NativeConfig, NativeEngine, control_request, daemon_running};
use nexus_core::peers::PeerRecord;
use nexus_core::{DeviceId, InviteCode, Storage};

use super::{Report, now_ms};
use crate::error::CliError;
use crate::home::Home;

/// How long a joining device without a daemon stays after it got the vault, so that
/// the first documents arrive too.
const SETTLE_AFTER_JOIN: Duration = Duration::from_secs(2);

/// What `status` found.
pub(crate) struct StatusReport {
    /// From the daemon when one runs (`running`), else from the store.
    pub(crate) status: Box<Status>,
    /// When it was asked (ms since the Unix epoch), to tell how long ago things were.
    pub(crate) now_ms: u64,
}

/// What `peer add` did.
pub(crate) struct PeerAdded {
    pub(crate) device: DeviceId,
    /// The address remembered (without `/p2p/…`).
    pub(crate) address: Multiaddr,
    /// Whether a running daemon was told to connect now.
    pub(crate) daemon: bool,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Asks the daemon on `dir`, if one runs; its refusal is an error.
fn ask_daemon(dir: &Path, request: &Request) -> Result<Option<Reply>, CliError> {
    if !daemon_running(dir) {
        return Ok(None);
    }
    match runtime()?.block_on(control_request(dir, request))? {
        Reply::Failed(error) => Err(CliError::Daemon(error)),
        reply => Ok(Some(reply)),
    }
}

/// The status of the daemon on `dir`, if one runs.
pub(super) fn daemon_status(dir: &Path) -> Result<Option<Box<Status>>, CliError> {
    match ask_daemon(dir, &Request::Status)? {
        None => Ok(None),
        Some(Reply::Status(status)) => Ok(Some(status)),
        Some(other) => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}

/// The vaults offered to this device, waiting in the daemon.
pub(super) fn offers(dir: &Path) -> Result<Vec<OfferSummary>, CliError> {
    let status = daemon_status(dir)?.ok_or(CliError::OffersNeedDaemon)?;
    Ok(status.offers)
}

/// Accepts or declines the offered vault named `vault` (its id or its name).
pub(super) fn answer_offer(dir: &Path, vault: &str, accept: bool) -> Result<Report, CliError> {
    let offers = offers(dir)?;
    let offer = offers
        .iter()
        .find(|o| o.vault_id.to_string() == vault)
        .or_else(|| offers.iter().find(|o| o.name == vault))
        .ok_or_else(|| CliError::UnknownOffer(vault.to_owned()))?;
    let vault = offer.vault_id;
    let request = if accept {
        Request::Accept { vault }
    } else {
        Request::Decline { vault }
    };
    match ask_daemon(dir, &request)? {
        None => Err(CliError::OffersNeedDaemon),
        Some(Reply::Joined(_)) if accept => Ok(Report::OfferAccepted(vault)),
        Some(Reply::Status(_)) if !accept => Ok(Report::OfferDeclined(vault)),
        Some(other) => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}

pub(super) fn status(home: &Home, dir: &Path) -> Result<StatusReport, CliError> {
    let status = match daemon_status(dir)? {
        Some(status) => status,
        None => {
            let (records, _) = PeerRecord::load_all(&home.store)?;
            Box::new(Status::stored(&home.node, &records))
        }
    };
    Ok(StatusReport {
        status,
        now_ms: now_ms(),
    })
}

pub(super) fn peer_add(
    home: &mut Home,
    dir: &Path,
    address: Multiaddr,
) -> Result<PeerAdded, CliError> {
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
    let daemon = ask_daemon(dir, &Request::Dial { address })?.is_some();
    Ok(PeerAdded {
        device,
        address: bare,
        daemon,
    })
}

pub(super) fn join(home: Home, dir: &Path, code: InviteCode) -> Result<Report, CliError> {
    let vault = code.vault;
    if home.node.vault(&vault).is_some() {
        return Ok(Report::Joined {
            vault,
            already_member: true,
        });
    }
    if code.addresses.is_empty() && !daemon_running(dir) {
        return Err(CliError::Join(
            "the invite carries no address: start `nexus serve` here, or ask for a code made while the inviter's daemon runs".into(),
        ));
    }
    let reply = if daemon_running(dir) {
        runtime()?.block_on(control_request(dir, &Request::Join { code }))?
    } else {
        join_without_daemon(home, dir, code)?
    };
    match reply {
        Reply::Joined(_) => Ok(Report::Joined {
            vault,
            already_member: false,
        }),
        Reply::Failed(error) => Err(CliError::Join(error)),
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}

/// Runs a short-lived peer on the home until the vault arrives (or the join fails).
fn join_without_daemon(home: Home, dir: &Path, code: InviteCode) -> Result<Reply, CliError> {
    let key = home.key.clone();
    drop(home);
    let config = NativeConfig {
        listen: Vec::new(),
        mdns: false,
        control_socket: false,
        ..NativeConfig::default()
    };
    runtime()?.block_on(async move {
        let mut peer = NativeEngine::start(dir, key, config, None).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        peer.join(code, Some(tx));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(peer.run(async move {
            let _ = stop_rx.await;
        }));
        let reply = rx
            .await
            .unwrap_or_else(|_| Reply::Failed("the peer stopped".into()));
        if let Reply::Joined(_) = reply {
            tokio::time::sleep(SETTLE_AFTER_JOIN).await;
        }
        let _ = stop_tx.send(());
        let _ = run.await;
        Ok(reply)
    })
}
