//! The browser's libp2p swarm: WebSocket (`libp2p-websocket-websys`, Noise and Yamux on
//! top) and WebRTC-direct (`libp2p-webrtc-websys`, reached by certificate hash, no CA
//! needed), both dial only; the circuit-relay client, through which two browsers reach
//! each other and through which a browser is reachable at all; rendezvous (to meet the
//! members of its vaults at a relay), identify, ping and the `/nexus/sync/1` streams.

use std::time::Duration;

use libp2p::core::Transport as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::upgrade::Version;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, identify, noise, ping, relay, rendezvous, yamux};
use nexus_core::DeviceKey;

use crate::p2p::{IDENTIFY_PROTOCOL, keypair};

/// The behaviours a browser peer runs.
#[derive(NetworkBehaviour)]
pub struct WebBehaviour {
    /// Learns what peers are (a relay announces its hop protocol).
    pub identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub ping: ping::Behaviour,
    /// Reserves a slot at relays and dials peers through their circuits.
    pub relay_client: relay::client::Behaviour,
    /// Registers at and discovers through a relay's rendezvous point.
    pub rendezvous: rendezvous::client::Behaviour,
    /// Carries `/nexus/sync/1`.
    pub stream: libp2p_stream::Behaviour,
}

/// Builds the browser swarm for a device.
pub fn build_web_swarm(key: &DeviceKey) -> Result<Swarm<WebBehaviour>, String> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(key))
        .with_wasm_bindgen()
        .with_other_transport(|keypair| {
            let noise = noise::Config::new(keypair)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                libp2p_websocket_websys::Transport::default()
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default())
                    .boxed(),
            )
        })
        .map_err(|e| format!("setting up WebSocket: {e}"))?
        .with_other_transport(|keypair| {
            libp2p_webrtc_websys::Transport::new(libp2p_webrtc_websys::Config::new(keypair))
                .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
        })
        .map_err(|e| format!("setting up WebRTC-direct: {e}"))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("setting up the relay client: {e}"))?
        .with_behaviour(|keypair, relay_client| WebBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.to_owned(),
                keypair.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
            relay_client,
            rendezvous: rendezvous::client::Behaviour::new(keypair.clone()),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| format!("setting up the behaviours: {e}"))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}
