//! The command line's shape: every command, argument and flag of `nexus`, as clap
//! parses them. No behaviour: `commands` carries them out.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nexus::libp2p::Multiaddr;
use nexus_core::{DeviceId, DocId, Hash, InviteCode, Role};

/// The `nexus` command line.
#[derive(Debug, Parser)]
#[command(
    name = "nexus",
    version,
    about = "Nexus desktop peer: local-first, end-to-end signed sync"
)]
pub(crate) struct Cli {
    /// The home directory (device key and database). Default: $NEXUS_HOME, else the
    /// platform data directory.
    #[arg(long, global = true, env = "NEXUS_HOME")]
    pub(crate) home: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create this device's identity (once); prints its DeviceId.
    Init,
    /// Print this device's DeviceId.
    Id {
        /// Also draw it as a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Vaults: create and list.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Invites to a vault.
    Invite {
        #[command(subcommand)]
        command: InviteCommand,
    },
    /// Devices of a vault: list, approve, revoke.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Documents of a vault.
    Doc {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Verify every stored signature and hash; report problems.
    Check,
    /// Run the daemon: listen, find peers, keep every vault in sync. Stops on Ctrl-C.
    Serve {
        /// Address to listen on (repeatable). Default: TCP, QUIC and WebSocket on every
        /// interface, on ports the system picks.
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// A peer to dial at start (repeatable), e.g. /ip4/192.168.1.7/tcp/4001/p2p/12D3KooW…
        #[arg(long = "peer", value_name = "MULTIADDR")]
        peers: Vec<Multiaddr>,
        /// A relay to reserve a slot at and meet members through (repeatable), e.g.
        /// /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…
        #[arg(long = "relay", value_name = "MULTIADDR")]
        relays: Vec<Multiaddr>,
        /// Do not look for peers on the local network.
        #[arg(long)]
        no_mdns: bool,
    },
    /// Show the daemon's peers and the sync state of each vault.
    Status,
    /// Known peers.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// Join a vault with an invite code from one of its admins.
    Join {
        /// The code (nexus1…).
        code: InviteCode,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCommand {
    /// Remember a peer and connect to it (now, if the daemon runs).
    Add {
        /// Its address, ending in /p2p/<DeviceId>.
        address: Multiaddr,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Create a vault with this device as its first admin; prints its VaultId.
    Create {
        /// A name people see.
        name: String,
    },
    /// List the vaults this device holds.
    List,
    /// List the vaults offered to this device by an approval it never asked for (needs
    /// the daemon: offers wait in it).
    Pending,
    /// Take in an offered vault: it is stored and syncs from now on.
    Accept {
        /// The offered vault (id or name, as `vault pending` shows it).
        vault: String,
    },
    /// Decline an offered vault: it is dropped and refused from then on.
    Decline {
        /// The offered vault (id or name, as `vault pending` shows it).
        vault: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InviteCommand {
    /// Create a one-time invite code (admins only).
    Create {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// How long the code works: 30m, 1h, 2d…
        #[arg(long, default_value = "1h")]
        expires: String,
        /// The role the new device gets.
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// List a vault's invites: open, redeemed, cancelled, expired or void.
    List {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
    },
    /// Cancel an invite (admins only): a device that has not joined with it by the time
    /// the cancellation reaches the other devices cannot join with it.
    Cancel {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The invite's id, as `nexus invite list` shows it.
        invite: Hash,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// List members and revoked devices.
    List {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
    },
    /// Approve a device by its DeviceId (admins only).
    Approve {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The device to approve (12D3KooW…).
        device: DeviceId,
        /// Its role.
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// Revoke a device (admins only).
    Revoke {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The device to revoke.
        device: DeviceId,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DocCommand {
    /// Create a document, optionally from a JSON object in a file; prints its id.
    Create {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// A JSON object to start from.
        #[arg(long)]
        json_file: Option<PathBuf>,
    },
    /// List documents.
    List {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
    },
    /// Set KEY of a document's root to a JSON value.
    Put {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The document id.
        doc: DocId,
        /// The key.
        key: String,
        /// The value, as JSON (`'"text"'`, `3`, `'{"a":1}'`).
        value: String,
        /// Store a string as collaborative text (concurrent edits merge by character),
        /// as the web demo's note bodies are.
        #[arg(long)]
        text: bool,
    },
    /// Write a document in Automerge's own format (`save()` bytes, history included), as
    /// `@automerge/automerge`'s `load` opens it.
    Export {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The document id.
        doc: DocId,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a document (or one key of it) as JSON.
    Get {
        /// The vault (id or name).
        #[arg(long)]
        vault: String,
        /// The document id.
        doc: DocId,
        /// Only this key.
        key: Option<String>,
    },
}
