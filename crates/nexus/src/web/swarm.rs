//! The browser's libp2p swarm: WebSocket (`libp2p-websocket-websys`, Noise and Yamux on
//! top) and WebRTC-direct (`libp2p-webrtc-websys`, reached by certificate hash, no CA
//! needed), both dial only; the circuit-relay client, through which two browsers reach
//! each other and through which a browser is reachable at all; rendezvous (to meet the
//! members of its vaults at a relay), identify, ping and the `/nexus/sync/2` streams.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, Future as _};

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
    /// Carries `/nexus/sync/2`.
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
                    .map(|connection, _| BrowserSocket::new(connection))
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

/// How often a WebSocket that is still opening is looked at again (see [`BrowserSocket`]).
const OPENING_RECHECK: Duration = Duration::from_millis(100);

/// A browser WebSocket from `libp2p-websocket-websys` 0.6, with two of its waits cut.
///
/// - Flush: the crate answers a flush with "pending" while the browser still holds
///   unsent bytes, and looks again only every 100 ms; every Noise handshake message and
///   every flushed Yamux frame then waited up to 100 ms (three such waits made up a third
///   of a fresh browser's initial sync). A write has already handed its bytes to the
///   browser, which sends them in order, so there is nothing to wait for; writes still
///   wait when the buffer is full.
/// - Opening: while the socket connects, the crate wakes its reader and writer only when
///   the socket opens, not when it fails, so a refused connection hung until the
///   connect timeout (20 s). Until the socket has carried its first bytes, a pending read
///   or write is polled again every [`OPENING_RECHECK`], which sees the closed socket
///   and fails the dial at once.
struct BrowserSocket<C> {
    inner: C,
    /// Until the first read or write went through: the next look at the socket.
    opening: Option<futures_timer::Delay>,
}

impl<C> BrowserSocket<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            opening: Some(futures_timer::Delay::new(OPENING_RECHECK)),
        }
    }

    /// Keeps a pending read or write of a socket that is still opening looked at, and
    /// says what it means when such a socket fails.
    fn recheck_while_opening<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(result) = poll {
            if self.opening.take().is_some()
                && let Err(e) = &result
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "the WebSocket closed before it opened: refused, or nothing listens there ({e})"
                    ),
                )));
            }
            return Poll::Ready(result);
        }
        if let Some(timer) = &mut self.opening
            && Pin::new(&mut *timer).poll(cx).is_ready()
        {
            *timer = futures_timer::Delay::new(OPENING_RECHECK);
            cx.waker().wake_by_ref();
        }
        poll
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for BrowserSocket<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.recheck_while_opening(cx, poll)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for BrowserSocket<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.recheck_while_opening(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
