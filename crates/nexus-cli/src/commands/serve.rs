//! `nexus serve`: runs the daemon on the home until Ctrl-C or SIGTERM, telling the
//! caller what happens as it happens.

use std::path::Path;

use nexus::libp2p::Multiaddr;
use nexus::{EngineEvent, NativeConfig, NativeEngine};
use nexus_core::DeviceId;

use super::daemon::runtime;
use super::{Report, now_ms};
use crate::error::CliError;
use crate::home::Home;

/// How `serve` was asked to run.
pub(super) struct Options {
    /// Addresses to listen on; none means [`default_listen`].
    pub(super) listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub(super) peers: Vec<Multiaddr>,
    /// Relays to reserve a slot at.
    pub(super) relays: Vec<Multiaddr>,
    /// Whether to look for peers on the local network.
    pub(super) mdns: bool,
}

/// What `serve` reports while it runs.
pub(crate) enum ServeNote {
    /// The daemon started as this device.
    Started(DeviceId),
    /// Something happened (at ms since the Unix epoch).
    Event { at_ms: u64, event: EngineEvent },
}

/// TCP, QUIC, WebSocket and WebRTC-direct on every interface, on ports the system picks.
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

pub(super) fn serve(
    home: Home,
    dir: &Path,
    options: Options,
    note: impl Fn(ServeNote) + Send + 'static,
) -> Result<Report, CliError> {
    let key = home.key.clone();
    drop(home);
    let config = NativeConfig {
        listen: if options.listen.is_empty() {
            default_listen()
        } else {
            options.listen
        },
        dial: options.peers,
        relays: options.relays,
        mdns: options.mdns,
        ..NativeConfig::default()
    };
    runtime()?.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let peer = NativeEngine::start(dir, key, config, Some(tx)).await?;
        note(ServeNote::Started(peer.device_id()));
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                note(ServeNote::Event {
                    at_ms: now_ms(),
                    event,
                });
            }
        });
        peer.run(nexus::shutdown_signal()).await?;
        Ok::<(), CliError>(())
    })?;
    Ok(Report::Stopped)
}
