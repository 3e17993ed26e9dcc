//! `nexus-relay`: a circuit relay and rendezvous point for Nexus devices. It forwards the
//! devices' end-to-end encrypted traffic and never holds a vault key.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use libp2p::Multiaddr;
use nexus_core::mailbox::MailboxLimits;
use nexus_relay::{Limits, Relay, RelayConfig, RelayEvent};

/// The `nexus-relay` command line.
#[derive(Debug, Parser)]
#[command(
    name = "nexus-relay",
    version,
    about = "Nexus relay: circuit relay v2 and rendezvous; forwards ciphertext only"
)]
struct Args {
    /// The relay's identity key file (created, mode 0600, if missing).
    #[arg(long, default_value = "nexus-relay.key")]
    identity: PathBuf,
    /// The WebRTC-direct certificate file (created, mode 0600, if missing). Default: the
    /// identity file's name with `.cert.pem`.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// Address to listen on (repeatable). Default: TCP 4001, QUIC 4001, WebSocket 4002
    /// and WebRTC-direct 4003 (UDP, for browsers) on every interface.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Where to serve Prometheus metrics (`GET /metrics`); keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics: SocketAddr,
    /// Do not serve metrics.
    #[arg(long)]
    no_metrics: bool,
    /// Reservations held at once.
    #[arg(long, default_value_t = Limits::default().max_reservations)]
    max_reservations: usize,
    /// Reservations per peer.
    #[arg(long, default_value_t = Limits::default().max_reservations_per_peer)]
    max_reservations_per_peer: usize,
    /// Circuits open at once.
    #[arg(long, default_value_t = Limits::default().max_circuits)]
    max_circuits: usize,
    /// Circuits per peer.
    #[arg(long, default_value_t = Limits::default().max_circuits_per_peer)]
    max_circuits_per_peer: usize,
    /// Longest life of a circuit, in seconds.
    #[arg(long, default_value_t = Limits::default().max_circuit_duration.as_secs())]
    max_circuit_secs: u64,
    /// Most bytes a circuit may carry.
    #[arg(long, default_value_t = Limits::default().max_circuit_bytes)]
    max_circuit_bytes: u64,
    /// Mailbox space per mailbox (one per vault and key generation), in bytes.
    #[arg(long, default_value_t = MailboxLimits::default().max_bytes_per_mailbox)]
    mailbox_bytes: usize,
    /// Largest mailbox bundle, in bytes.
    #[arg(long, default_value_t = MailboxLimits::default().max_bundle_bytes)]
    mailbox_bundle_bytes: usize,
    /// Longest time a mailbox bundle is kept, in seconds.
    #[arg(long, default_value_t = MailboxLimits::default().max_ttl_secs)]
    mailbox_ttl_secs: u32,
    /// Mailboxes held at once.
    #[arg(long, default_value_t = MailboxLimits::default().max_mailboxes)]
    mailboxes: usize,
    /// Bytes held in all mailboxes; the oldest bundles are evicted to make room.
    #[arg(long, default_value_t = MailboxLimits::default().max_total_bytes)]
    mailbox_total_bytes: usize,
    /// Bytes the bundles put from one IP address may hold.
    #[arg(long, default_value_t = MailboxLimits::default().max_bytes_per_ip)]
    mailbox_bytes_per_ip: usize,
    /// Mailboxes one IP address may open.
    #[arg(long, default_value_t = MailboxLimits::default().max_mailboxes_per_ip)]
    mailboxes_per_ip: usize,
    /// Reservation requests one peer may make in a burst (then one every 2 minutes).
    #[arg(long, default_value_t = Limits::default().reservation_burst_per_peer)]
    reservation_burst_per_peer: u32,
    /// Circuits one peer may open in a burst (then one every 2 minutes).
    #[arg(long, default_value_t = Limits::default().circuit_burst_per_peer)]
    circuit_burst_per_peer: u32,
    /// Reservations one IP address may make in a burst (then one per minute).
    #[arg(long, default_value_t = Limits::default().reservation_burst_per_ip)]
    reservation_burst_per_ip: u32,
    /// Circuits one IP address may open in a burst (then one per minute).
    #[arg(long, default_value_t = Limits::default().circuit_burst_per_ip)]
    circuit_burst_per_ip: u32,
}

fn default_listen() -> Vec<Multiaddr> {
    [
        "/ip4/0.0.0.0/tcp/4001",
        "/ip4/0.0.0.0/udp/4001/quic-v1",
        "/ip4/0.0.0.0/tcp/4002/ws",
        "/ip4/0.0.0.0/udp/4003/webrtc-direct",
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let key = match nexus::load_or_create_key(&args.identity) {
        Ok((key, _)) => key,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let certificate_path = args
        .certificate
        .clone()
        .unwrap_or_else(|| args.identity.with_extension("cert.pem"));
    let webrtc_certificate = match nexus_relay::load_or_create_certificate(&certificate_path) {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = RelayConfig {
        webrtc_certificate: Some(webrtc_certificate),
        mailbox: MailboxLimits {
            max_bytes_per_mailbox: args.mailbox_bytes,
            max_bundle_bytes: args.mailbox_bundle_bytes,
            max_ttl_secs: args.mailbox_ttl_secs,
            max_mailboxes: args.mailboxes,
            max_total_bytes: args.mailbox_total_bytes,
            max_bytes_per_ip: args.mailbox_bytes_per_ip,
            max_mailboxes_per_ip: args.mailboxes_per_ip,
            ..MailboxLimits::default()
        },
        listen: if args.listen.is_empty() {
            default_listen()
        } else {
            args.listen
        },
        metrics: (!args.no_metrics).then_some(args.metrics),
        limits: Limits {
            max_reservations: args.max_reservations,
            max_reservations_per_peer: args.max_reservations_per_peer,
            max_circuits: args.max_circuits,
            max_circuits_per_peer: args.max_circuits_per_peer,
            max_circuit_duration: Duration::from_secs(args.max_circuit_secs),
            max_circuit_bytes: args.max_circuit_bytes,
            reservation_burst_per_peer: args.reservation_burst_per_peer,
            circuit_burst_per_peer: args.circuit_burst_per_peer,
            reservation_burst_per_ip: args.reservation_burst_per_ip,
            circuit_burst_per_ip: args.circuit_burst_per_ip,
            ..Limits::default()
        },
        tap: None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let relay = Relay::start(&key, config, Some(tx)).await?;
        println!("Relay {}", relay.peer_id());
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    // Full addresses on stdout, one per line, for people and scripts.
                    RelayEvent::Listening(address) => println!("Listening on {address}"),
                    RelayEvent::Metrics(address) => println!("Metrics on http://{address}/metrics"),
                    other => eprintln!("{other:?}"),
                }
            }
        });
        relay.run(nexus::shutdown_signal()).await;
        Ok::<(), nexus_relay::RelayError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
