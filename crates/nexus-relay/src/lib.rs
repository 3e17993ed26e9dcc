//! The Nexus relay: a libp2p circuit relay (v2) server and a rendezvous point.
//! (One file, a little over 600 lines: the relay's swarm and its event loop read as one.)
//!
//! Devices that cannot reach each other directly (different networks, browsers that
//! cannot listen) reserve a slot here and are dialled through the relay's circuit. The
//! circuit carries the devices' own end-to-end Noise session, so the relay forwards
//! ciphertext only. Devices find the other members of a vault by registering under, and
//! looking up, a rendezvous name derived from secrets only members hold
//! ([`nexus_core::Vault::rendezvous_namespace`]), so the relay never learns vault ids.
//!
//! It also keeps a mailbox (`/nexus/mailbox/2`, [`nexus_core::mailbox`]): encrypted
//! bundles that members leave for members who are offline, under opaque ids, with limits
//! on space, size, time to live and writer rate. It can read none of them.
//!
//! Limits (reservations, circuits, bytes and duration per circuit) are configurable;
//! the defaults carry whole sync sessions rather than libp2p's signalling-sized ones
//! (2 minutes and 128 KiB per circuit). Counters are served as Prometheus text on a
//! separate loopback port.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod tap;

pub use tap::Tap;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, ping, relay, rendezvous, tcp, yamux};
use nexus_core::DeviceKey;
use nexus_core::mailbox::{MailboxLimits, MailboxRequest, MailboxResponse, MailboxStore};
use std::sync::Mutex;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Limits the relay enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reservations held at once, in all.
    pub max_reservations: usize,
    /// Reservations held at once by one peer.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before it must be renewed.
    pub reservation_duration: Duration,
    /// Circuits open at once, in all.
    pub max_circuits: usize,
    /// Circuits open at once per peer.
    pub max_circuits_per_peer: usize,
    /// Longest life of one circuit.
    pub max_circuit_duration: Duration,
    /// Most bytes one circuit may carry (both directions).
    pub max_circuit_bytes: u64,
    /// Reservation requests (renewals included) one peer may make in a burst; then one
    /// more every 2 minutes.
    pub reservation_burst_per_peer: u32,
    /// Circuits one peer may open in a burst; then one more every 2 minutes.
    pub circuit_burst_per_peer: u32,
    /// Reservations one IP address may make in a burst; then one more per minute.
    pub reservation_burst_per_ip: u32,
    /// Circuits one IP address may open in a burst; then one more per minute.
    pub circuit_burst_per_ip: u32,
}

impl Default for Limits {
    /// Sized for sync traffic: an hour and 1 GiB per circuit, 128 reservations and 256
    /// circuits in all, 4 circuits per peer; per IP address, bursts of 60 reservations
    /// and 60 circuits, then one of each per minute (and per peer, bursts of 30, then one
    /// every 2 minutes).
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 256,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(3600),
            max_circuit_bytes: 1 << 30,
            reservation_burst_per_peer: 30,
            circuit_burst_per_peer: 30,
            reservation_burst_per_ip: 60,
            circuit_burst_per_ip: 60,
        }
    }
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Where to serve `/metrics` (keep it on loopback); `None` for no endpoint.
    pub metrics: Option<SocketAddr>,
    /// The limits.
    pub limits: Limits,
    /// Records what the relay can read (audits and tests). With a tap the relay speaks
    /// TCP only.
    pub tap: Option<Tap>,
    /// Mailbox limits (space per mailbox, bundle size, time to live, writer rate).
    pub mailbox: MailboxLimits,
    /// The WebRTC-direct certificate (PEM, private key included). Browsers dial the relay
    /// by its hash (`/certhash/…` in the address), so it must stay the same across
    /// restarts: see [`load_or_create_certificate`]. `None` makes a fresh one.
    pub webrtc_certificate: Option<String>,
}

pub use nexus::{CertificateError, load_or_create_certificate};

/// What the relay reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// Listening on an address (with `/p2p/<relay id>`).
    Listening(Multiaddr),
    /// The metrics endpoint is up.
    Metrics(SocketAddr),
    /// A peer reserved a slot.
    Reserved(PeerId),
    /// A reservation was refused (over a limit).
    ReservationDenied(PeerId),
    /// A circuit opened between two peers.
    CircuitOpened {
        /// Who dialled.
        src: PeerId,
        /// Who was dialled.
        dst: PeerId,
    },
    /// A circuit was refused (over a limit, or no reservation).
    CircuitDenied {
        /// Who dialled.
        src: PeerId,
        /// Who was asked for.
        dst: PeerId,
    },
}

/// Why the relay could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The transports could not be set up.
    #[error("setting up the {what}: {reason}")]
    Transport {
        /// Which part.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The metrics endpoint could not be bound.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The relay's behaviours.
#[derive(NetworkBehaviour)]
pub(crate) struct RelayBehaviour {
    /// Circuit relay v2 server.
    relay: relay::Behaviour,
    /// Rendezvous point.
    rendezvous: rendezvous::server::Behaviour,
    /// Tells peers their observed addresses (and ours).
    identify: identify::Behaviour,
    /// Keeps connections alive.
    ping: ping::Behaviour,
    /// Carries `/nexus/mailbox/2`.
    stream: libp2p_stream::Behaviour,
}

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicU64,
    reservations_accepted: AtomicU64,
    reservations_denied: AtomicU64,
    circuits_opened: AtomicU64,
    circuits_closed: AtomicU64,
    circuits_denied: AtomicU64,
    rendezvous_registrations: AtomicU64,
    rendezvous_discoveries: AtomicU64,
    mailbox_bundles: AtomicU64,
    mailbox_bytes: AtomicU64,
    mailbox_refused: AtomicU64,
    mailbox_evicted: AtomicU64,
    mailbox_refused_capability: AtomicU64,
    mailbox_refused_address: AtomicU64,
    mailbox_refused_rate: AtomicU64,
}

impl Metrics {
    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let rows = [
            (
                "nexus_relay_connections",
                "gauge",
                "Open connections",
                &self.connections,
            ),
            (
                "nexus_relay_reservations_accepted_total",
                "counter",
                "Reservations accepted",
                &self.reservations_accepted,
            ),
            (
                "nexus_relay_reservations_denied_total",
                "counter",
                "Reservations refused by a limit",
                &self.reservations_denied,
            ),
            (
                "nexus_relay_circuits_opened_total",
                "counter",
                "Circuits opened",
                &self.circuits_opened,
            ),
            (
                "nexus_relay_circuits_closed_total",
                "counter",
                "Circuits closed",
                &self.circuits_closed,
            ),
            (
                "nexus_relay_circuits_denied_total",
                "counter",
                "Circuits refused",
                &self.circuits_denied,
            ),
            (
                "nexus_relay_rendezvous_registrations_total",
                "counter",
                "Rendezvous registrations served",
                &self.rendezvous_registrations,
            ),
            (
                "nexus_relay_rendezvous_discoveries_total",
                "counter",
                "Rendezvous lookups served",
                &self.rendezvous_discoveries,
            ),
            (
                "nexus_relay_mailbox_bundles",
                "gauge",
                "Bundles held in mailboxes",
                &self.mailbox_bundles,
            ),
            (
                "nexus_relay_mailbox_bytes",
                "gauge",
                "Bytes held in mailboxes",
                &self.mailbox_bytes,
            ),
            (
                "nexus_relay_mailbox_refused_total",
                "counter",
                "Mailbox writes refused by a limit",
                &self.mailbox_refused,
            ),
            (
                "nexus_relay_mailbox_evicted_total",
                "counter",
                "Mailbox bundles evicted to stay under the global byte cap",
                &self.mailbox_evicted,
            ),
            (
                "nexus_relay_mailbox_refused_no_capability_total",
                "counter",
                "Mailbox writes refused for lack of the mailbox's write key",
                &self.mailbox_refused_capability,
            ),
            (
                "nexus_relay_mailbox_refused_address_full_total",
                "counter",
                "Mailbox writes refused because their address holds its share",
                &self.mailbox_refused_address,
            ),
            (
                "nexus_relay_mailbox_refused_rate_limited_total",
                "counter",
                "Mailbox writes refused for coming too fast",
                &self.mailbox_refused_rate,
            ),
        ];
        let mut text = String::new();
        for (name, kind, help, value) in rows {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        text
    }
}

/// Builds the relay's swarm. Call inside a tokio runtime.
pub(crate) async fn build_relay_swarm(
    key: &DeviceKey,
    limits: Limits,
    tap: Option<Tap>,
    webrtc_certificate: Option<&str>,
) -> Result<Swarm<RelayBehaviour>, RelayError> {
    nexus::install_crypto_provider();
    let err = |what: &'static str| {
        move |e: &dyn std::fmt::Display| RelayError::Transport {
            what,
            reason: e.to_string(),
        }
    };
    let behaviour = move |keypair: &libp2p::identity::Keypair| {
        let local = keypair.public().to_peer_id();
        let config = relay::Config {
            max_reservations: limits.max_reservations,
            max_reservations_per_peer: limits.max_reservations_per_peer,
            reservation_duration: limits.reservation_duration,
            max_circuits: limits.max_circuits,
            max_circuits_per_peer: limits.max_circuits_per_peer,
            max_circuit_duration: limits.max_circuit_duration,
            max_circuit_bytes: limits.max_circuit_bytes,
            reservation_rate_limiters: Vec::new(),
            circuit_src_rate_limiters: Vec::new(),
        };
        let burst =
            |n: u32| std::num::NonZeroU32::new(n.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let config = config
            .reservation_rate_per_peer(
                burst(limits.reservation_burst_per_peer),
                Duration::from_secs(120),
            )
            .reservation_rate_per_ip(
                burst(limits.reservation_burst_per_ip),
                Duration::from_secs(60),
            )
            .circuit_src_per_peer(
                burst(limits.circuit_burst_per_peer),
                Duration::from_secs(120),
            )
            .circuit_src_per_ip(burst(limits.circuit_burst_per_ip), Duration::from_secs(60));
        RelayBehaviour {
            relay: relay::Behaviour::new(local, config),
            rendezvous: rendezvous::server::Behaviour::new(rendezvous::server::Config::default()),
            identify: identify::Behaviour::new(identify::Config::new(
                "/nexus-relay/1.0.0".to_owned(),
                keypair.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
            stream: libp2p_stream::Behaviour::new(),
        }
    };
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(120));
    if let Some(tap) = tap {
        use libp2p::Transport;
        use libp2p::core::muxing::StreamMuxerBox;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(nexus::keypair(key))
            .with_tokio()
            .with_other_transport(|keypair| {
                let transport =
                    libp2p::tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .upgrade(libp2p::core::upgrade::Version::V1)
                        .authenticate(noise::Config::new(keypair)?)
                        .multiplex(yamux::Config::default())
                        .map(move |(peer, muxer), _| {
                            let tapped = tap::TapMuxer {
                                inner: muxer,
                                tap: tap.clone(),
                            };
                            (peer, StreamMuxerBox::new(tapped))
                        });
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(transport)
            })
            .map_err(|e| err("tapped TCP transport")(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err("behaviour")(&e))?
            .with_swarm_config(idle)
            .build();
        return Ok(swarm);
    }
    let swarm = libp2p::SwarmBuilder::with_existing_identity(nexus::keypair(key))
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| err("TCP transport")(&e))?
        .with_quic()
        .with_other_transport(|keypair| nexus::webrtc_transport(keypair, webrtc_certificate))
        .map_err(|e| err("WebRTC-direct transport")(&e))?
        .with_dns()
        .map_err(|e| err("DNS transport")(&e))?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(|e| err("WebSocket transport")(&e))?
        .with_behaviour(behaviour)
        .map_err(|e| err("behaviour")(&e))?
        .with_swarm_config(idle)
        .build();
    Ok(swarm)
}

/// A relay, started and listening.
pub struct Relay {
    swarm: Swarm<RelayBehaviour>,
    mailbox: libp2p_stream::IncomingStreams,
    store: Arc<Mutex<MailboxStore>>,
    /// The address each connected peer came from, for the mailbox's per-address limits.
    addresses: Arc<Mutex<HashMap<PeerId, IpAddr>>>,
    metrics: Arc<Metrics>,
    events: Option<mpsc::UnboundedSender<RelayEvent>>,
}

impl Relay {
    /// Builds the swarm, listens, and starts the metrics endpoint.
    pub async fn start(
        key: &DeviceKey,
        config: RelayConfig,
        events: Option<mpsc::UnboundedSender<RelayEvent>>,
    ) -> Result<Self, RelayError> {
        let mut swarm = build_relay_swarm(
            key,
            config.limits,
            config.tap,
            config.webrtc_certificate.as_deref(),
        )
        .await?;
        for address in &config.listen {
            swarm
                .listen_on(address.clone())
                .map_err(|e| RelayError::Listen {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
        }
        let metrics = Arc::new(Metrics::default());
        if let Some(address) = config.metrics {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| RelayError::Metrics { address, source })?;
            if let (Some(events), Ok(bound)) = (&events, listener.local_addr()) {
                let _ = events.send(RelayEvent::Metrics(bound));
            }
            tokio::spawn(serve_metrics(listener, metrics.clone()));
        }
        let mailbox = swarm
            .behaviour()
            .stream
            .new_control()
            .accept(nexus::MAILBOX)
            .map_err(|_| RelayError::Transport {
                what: "mailbox protocol",
                reason: "registered twice".into(),
            })?;
        Ok(Self {
            swarm,
            mailbox,
            store: Arc::new(Mutex::new(MailboxStore::new(config.mailbox))),
            addresses: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            events,
        })
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn emit(&self, event: RelayEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Runs until `shutdown` resolves, then closes every connection.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = self.swarm.select_next_some() => self.on_event(event),
                Some((peer, stream)) = self.mailbox.next() => {
                    let ip = self.addresses.lock().ok().and_then(|a| a.get(&peer).copied());
                    tokio::spawn(serve_mailbox(peer, ip, stream, self.store.clone(), self.metrics.clone()));
                }
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<RelayBehaviourEvent>) {
        let m = &self.metrics;
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                // Reservations hand these to the reserving peers: they are where others
                // dial the relay to reach them.
                self.swarm.add_external_address(address.clone());
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                self.emit(RelayEvent::Listening(full));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                m.connections.fetch_add(1, Ordering::Relaxed);
                if let Some(ip) = ip_of(endpoint.get_remote_address())
                    && let Ok(mut addresses) = self.addresses.lock()
                {
                    addresses.insert(peer_id, ip);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                m.connections.fetch_sub(1, Ordering::Relaxed);
                if num_established == 0
                    && let Ok(mut addresses) = self.addresses.lock()
                {
                    addresses.remove(&peer_id);
                }
            }
            SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                    m.reservations_accepted.fetch_add(1, Ordering::Relaxed);
                    self.emit(RelayEvent::Reserved(src_peer_id));
                }
                relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                    m.reservations_denied.fetch_add(1, Ordering::Relaxed);
                    self.emit(RelayEvent::ReservationDenied(src_peer_id));
                }
                relay::Event::CircuitReqAccepted {
                    src_peer_id,
                    dst_peer_id,
                } => {
                    m.circuits_opened.fetch_add(1, Ordering::Relaxed);
                    self.emit(RelayEvent::CircuitOpened {
                        src: src_peer_id,
                        dst: dst_peer_id,
                    });
                }
                relay::Event::CircuitReqDenied {
                    src_peer_id,
                    dst_peer_id,
                    ..
                } => {
                    m.circuits_denied.fetch_add(1, Ordering::Relaxed);
                    self.emit(RelayEvent::CircuitDenied {
                        src: src_peer_id,
                        dst: dst_peer_id,
                    });
                }
                relay::Event::CircuitClosed { .. } => {
                    m.circuits_closed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            SwarmEvent::Behaviour(RelayBehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::server::Event::PeerRegistered { .. } => {
                    m.rendezvous_registrations.fetch_add(1, Ordering::Relaxed);
                }
                rendezvous::server::Event::DiscoverServed { .. } => {
                    m.rendezvous_discoveries.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// The IP address an address (of a direct connection) starts with, for the mailbox's
/// per-address limits: an IPv6 address stands for its /64, which one host holds whole.
fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => {
            let prefix = u128::from(ip) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(std::net::Ipv6Addr::from(prefix)))
        }
        _ => None,
    })
}

/// Answers mailbox requests on one stream until it ends.
async fn serve_mailbox(
    peer: PeerId,
    ip: Option<IpAddr>,
    mut stream: libp2p::Stream,
    store: Arc<Mutex<MailboxStore>>,
    metrics: Arc<Metrics>,
) {
    let Some(writer) = nexus::device_of(&peer) else {
        return;
    };
    while let Ok(Some(frame)) = nexus::frames::read_frame(&mut stream).await {
        let response = match MailboxRequest::decode(&frame) {
            Ok(request) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let Ok(mut store) = store.lock() else {
                    return;
                };
                let response = store.handle(writer, ip, request, now);
                metrics
                    .mailbox_bundles
                    .store(store.bundles() as u64, Ordering::Relaxed);
                metrics
                    .mailbox_bytes
                    .store(store.bytes() as u64, Ordering::Relaxed);
                if matches!(response, MailboxResponse::Refused(_)) {
                    metrics.mailbox_refused.fetch_add(1, Ordering::Relaxed);
                }
                let count = |reason| store.refused().get(reason).copied().unwrap_or(0);
                metrics
                    .mailbox_refused_capability
                    .store(count("no_capability"), Ordering::Relaxed);
                metrics
                    .mailbox_refused_address
                    .store(count("address_full"), Ordering::Relaxed);
                metrics
                    .mailbox_refused_rate
                    .store(count("rate_limited"), Ordering::Relaxed);
                metrics
                    .mailbox_evicted
                    .store(store.evicted(), Ordering::Relaxed);
                response
            }
            // Not a request: say so and hang up.
            Err(e) => {
                let refusal = MailboxResponse::Refused(format!("malformed request: {e}"));
                let _ = nexus::frames::write_frame(&mut stream, &refusal.encode()).await;
                return;
            }
        };
        if nexus::frames::write_frame(&mut stream, &response.encode())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "only /metrics is served here\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
