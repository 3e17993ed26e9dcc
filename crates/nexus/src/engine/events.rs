//! What an engine reports as it goes, the same on every target (a target reports only
//! what it has: a browser is never `Listening`, a desktop never `Leader`).

use libp2p::Multiaddr;
use nexus_core::node::CloseReason;
use nexus_core::{ChangeHash, DeviceId, DocId, VaultId};

/// What the engine reports as it goes (the daemon logs these; the browser binding turns
/// them into JavaScript events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// Listening on an address (with `/p2p/<DeviceId>` appended).
    Listening(Multiaddr),
    /// A connection to a device (or relay) came up.
    Connected(DeviceId),
    /// The last connection to a device went down.
    Disconnected(DeviceId),
    /// A relay holds a slot for this device: others can reach it at this address.
    Reachable(Multiaddr),
    /// A vault session finished its handshake.
    SessionReady {
        /// The vault.
        vault: VaultId,
        /// The peer.
        peer: DeviceId,
    },
    /// A session ended with a refusal (either side).
    SessionRefused {
        /// The peer.
        peer: DeviceId,
        /// The vault the session was about, when known.
        vault: Option<VaultId>,
        /// The reason.
        reason: CloseReason,
    },
    /// A document changed because of a peer (or another tab).
    DocChanged {
        /// The vault.
        vault: VaultId,
        /// The document.
        doc: DocId,
        /// Its heads now.
        heads: Vec<ChangeHash>,
    },
    /// The vault's membership changed.
    MembershipChanged(VaultId),
    /// A member approved this device by id and offered a vault it does not hold: it waits
    /// for the person to accept or decline it.
    VaultOffered {
        /// The vault.
        vault: VaultId,
        /// Its name, as its log says.
        name: String,
        /// The member that offered it.
        by: DeviceId,
    },
    /// This device now holds a vault it did not have.
    VaultJoined(VaultId),
    /// A peer's changes were rejected.
    Rejected {
        /// The peer.
        peer: DeviceId,
        /// Why.
        error: String,
    },
    /// Changes were left at a relay for members who are offline.
    MailboxLeft {
        /// The vault.
        vault: VaultId,
        /// Changes in the bundle.
        changes: usize,
        /// Encrypted bytes left.
        bytes: usize,
    },
    /// Bundles left by other members were taken from a relay's mailbox.
    MailboxPickedUp {
        /// The vault.
        vault: VaultId,
        /// Bundles opened.
        bundles: usize,
        /// Changes they carried (some may have been known already).
        changes: usize,
    },
    /// The network went away (`false`) or came back (`true`).
    Online(bool),
    /// This tab now holds the profile's network connections (the previous leader tab
    /// closed, or this is the first tab).
    Leader,
    /// Something went wrong that the engine recovered from.
    Problem(String),
}
