//! The browser's libp2p swarm: WebSocket (`libp2p-websocket-websys`, Noise and Yamux on
//! top) and WebRTC-direct (`libp2p-webrtc-websys`, reached by certificate hash, no CA
//! needed), both dial only; the circuit-relay client, through which two browsers reach
//! each other and through which a browser is reachable at all; rendezvous (to meet the
//! members of its vaults at a relay), identify, ping and the `/nexus/sync/1` streams.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};

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
                    .map(|connection, _| PromptFlush(connection))
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

/// A browser WebSocket whose flush does not wait for the socket's buffer to drain.
///
/// `libp2p-websocket-websys` 0.6 answers a flush with "pending" while the browser still
/// holds unsent bytes, and looks again only every 100 ms; every Noise handshake message
/// and every flushed Yamux frame then waits up to 100 ms (three such waits made up a
/// third of a fresh browser's initial sync). A write has already handed its bytes to
/// the browser, which sends them in order, so there is nothing to wait for; writes
/// still wait when the buffer is full.
struct PromptFlush<C>(C);

impl<C: AsyncRead + Unpin> AsyncRead for PromptFlush<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for PromptFlush<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
