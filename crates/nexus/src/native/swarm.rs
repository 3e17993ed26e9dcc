//! The native libp2p swarm: TCP and QUIC (Noise, Yamux), WebSocket, WebRTC-direct (what
//! browsers on the LAN dial), identify, ping,
//! optional mDNS, a circuit-relay client with DCUtR hole punching, a rendezvous client,
//! and the `/nexus/sync/2` stream protocol. The device key is the libp2p identity, so the
//! `PeerId` that Noise authenticates is the peer's `DeviceId`.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, Swarm, dcutr, identify, identity, mdns, noise, ping, relay, rendezvous, tcp, yamux,
};
use nexus_core::DeviceKey;

use crate::p2p::{IDENTIFY_PROTOCOL, keypair};
use thiserror::Error;

/// The behaviours a Nexus peer runs.
#[derive(NetworkBehaviour)]
pub struct PeerBehaviour {
    /// Learns peers' listen addresses.
    pub identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub ping: ping::Behaviour,
    /// Finds peers on the local network (off with `--no-mdns`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Reserves slots at relays and dials peers through their circuits.
    pub relay_client: relay::client::Behaviour,
    /// Upgrades relayed connections to direct ones where the network allows.
    pub dcutr: dcutr::Behaviour,
    /// Registers at and discovers through a relay's rendezvous point.
    pub rendezvous: rendezvous::client::Behaviour,
    /// Carries `/nexus/sync/2`.
    pub stream: libp2p_stream::Behaviour,
}

/// Why the swarm could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// A transport could not be set up.
    #[error("setting up the {transport} transport: {reason}")]
    Transport {
        /// Which one.
        transport: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// mDNS could not start (for example, no multicast-capable interface).
    #[error("starting mDNS discovery: {0} (run with --no-mdns to go without)")]
    Mdns(String),
}

/// Why the WebRTC certificate file could not be used.
#[derive(Debug, Error)]
#[error("WebRTC certificate {path}: {reason}")]
pub struct CertificateError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Reads the WebRTC-direct certificate from `path`, or makes one and writes it there
/// (mode 0600: it holds a private key). Returns the PEM text.
pub fn load_or_create_certificate(path: &std::path::Path) -> Result<String, CertificateError> {
    let err = |reason: String| CertificateError {
        path: path.to_owned(),
        reason,
    };
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        libp2p_webrtc::tokio::Certificate::from_pem(&pem)
            .map_err(|e| err(format!("not a certificate: {e}")))?;
        return Ok(pem);
    }
    let certificate = libp2p_webrtc::tokio::Certificate::generate(&mut rand::rng())
        .map_err(|e| err(e.to_string()))?;
    let pem = certificate.serialize_pem();
    let temp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| err(e.to_string()))?;
        file.write_all(pem.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&temp, path).map_err(|e| err(e.to_string()))?;
    Ok(pem)
}

/// The WebRTC-direct transport under `certificate` (PEM; a fresh one when `None`), ready
/// for `SwarmBuilder::with_other_transport`.
pub fn webrtc_transport(
    keypair: &identity::Keypair,
    certificate: Option<&str>,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::Transport;
    use libp2p::core::muxing::StreamMuxerBox;
    let certificate = match certificate {
        Some(pem) => libp2p_webrtc::tokio::Certificate::from_pem(pem)?,
        None => libp2p_webrtc::tokio::Certificate::generate(&mut rand::rng())?,
    };
    Ok(
        libp2p_webrtc::tokio::Transport::new(keypair.clone(), certificate)
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
            .boxed(),
    )
}

/// Chooses rustls's cryptography (used by QUIC and WebRTC) for the whole process. When a
/// program links more than one provider, rustls cannot choose by itself and would panic
/// at the first handshake; every swarm builder here calls this first. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the swarm with a fresh WebRTC certificate. Call from inside a tokio runtime.
pub async fn build_swarm(key: &DeviceKey, mdns: bool) -> Result<Swarm<PeerBehaviour>, SwarmError> {
    build_swarm_with_certificate(key, mdns, None).await
}

/// Builds the swarm; `webrtc_certificate` (PEM) keeps the WebRTC-direct address's
/// `/certhash/` stable across restarts (see [`load_or_create_certificate`]).
pub async fn build_swarm_with_certificate(
    key: &DeviceKey,
    mdns: bool,
    webrtc_certificate: Option<&str>,
) -> Result<Swarm<PeerBehaviour>, SwarmError> {
    install_crypto_provider();
    let transport = |transport: &'static str| {
        move |e: &dyn std::fmt::Display| SwarmError::Transport {
            transport,
            reason: e.to_string(),
        }
    };
    let mut mdns_error = None;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(key))
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport("TCP")(&e))?
        .with_quic()
        .with_other_transport(|keypair| webrtc_transport(keypair, webrtc_certificate))
        .map_err(|e| transport("WebRTC-direct")(&e))?
        .with_dns()
        .map_err(|e| transport("DNS")(&e))?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(|e| transport("WebSocket")(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| transport("relay client")(&e))?
        .with_behaviour(|keypair, relay_client| {
            let local = keypair.public().to_peer_id();
            let mdns = if mdns {
                match mdns::tokio::Behaviour::new(
                    // Ask again every 20 s (libp2p's default is 5 minutes): two devices
                    // that start together and miss each other's first query still meet
                    // soon, for one small multicast packet per interval.
                    mdns::Config {
                        query_interval: std::time::Duration::from_secs(20),
                        ..mdns::Config::default()
                    },
                    local,
                ) {
                    Ok(behaviour) => Some(behaviour),
                    Err(e) => {
                        mdns_error = Some(e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            PeerBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_owned(),
                    keypair.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                mdns: Toggle::from(mdns),
                relay_client,
                dcutr: dcutr::Behaviour::new(local),
                rendezvous: rendezvous::client::Behaviour::new(keypair.clone()),
                stream: libp2p_stream::Behaviour::new(),
            }
        })
        .map_err(|e| transport("behaviour")(&e))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    if let Some(e) = mdns_error {
        return Err(SwarmError::Mdns(e));
    }
    Ok(swarm)
}
