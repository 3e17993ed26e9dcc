//! The native libp2p swarm: TCP and QUIC (Noise, Yamux), WebSocket, identify, ping,
//! optional mDNS, a circuit-relay client with DCUtR hole punching, a rendezvous client,
//! and the `/nexus/sync/1` stream protocol. The device key is the libp2p identity, so the
//! `PeerId` that Noise authenticates is the peer's `DeviceId`.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, Swarm, dcutr, identify, identity, mdns, noise, ping, relay, rendezvous,
    tcp, yamux,
};
use nexus_core::{DeviceId, DeviceKey};
use thiserror::Error;

/// The sync protocol's libp2p name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new(nexus_core::protocol::PROTOCOL_NAME);
/// What identify announces as our protocol version.
const IDENTIFY_PROTOCOL: &str = "/nexus/1.0.0";

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
    /// Carries `/nexus/sync/1`.
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

/// The libp2p keypair for a device key.
pub fn keypair(key: &DeviceKey) -> identity::Keypair {
    let mut secret = key.secret_bytes();
    // `ed25519_from_bytes` zeroes the buffer it is given.
    match identity::Keypair::ed25519_from_bytes(&mut secret) {
        Ok(pair) => pair,
        // Unreachable: any 32 bytes are an Ed25519 secret key.
        Err(_) => identity::Keypair::generate_ed25519(),
    }
}

/// The `DeviceId` of a libp2p peer, if it is an Ed25519 peer (every Nexus device is).
pub fn device_of(peer: &PeerId) -> Option<DeviceId> {
    DeviceId::from_peer_id_bytes(&peer.to_bytes()).ok()
}

/// The libp2p `PeerId` of a device.
pub fn peer_of(device: &DeviceId) -> Option<PeerId> {
    PeerId::from_bytes(&device.to_peer_id_bytes()).ok()
}

/// Chooses rustls's cryptography (used by QUIC and WebRTC) for the whole process. When a
/// program links more than one provider, rustls cannot choose by itself and would panic
/// at the first handshake; every swarm builder here calls this first. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the swarm. Call from inside a tokio runtime.
pub async fn build_swarm(key: &DeviceKey, mdns: bool) -> Result<Swarm<PeerBehaviour>, SwarmError> {
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
                match mdns::tokio::Behaviour::new(mdns::Config::default(), local) {
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
