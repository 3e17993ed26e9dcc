//! What goes into the peering supervisor ([`Input`]) and what it asks of its engine
//! ([`Actions`]).

use crate::document::ApplyError;
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::invite_code::InviteCode;
use crate::node::{CloseReason, Output, SessionId};
use crate::peers::PeerRecord;
use crate::storage::Batch;

/// Names a stream the peer opened, chosen by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(pub u64);

/// Names a stream the supervisor asked the engine to open ([`Open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenId(pub u64);

/// Names an invite being tried, chosen by the engine ([`Input::Join`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JoinId(pub u64);

/// Something that happened, for [`super::Peering::handle`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// A deadline from [`super::Peering::poll_timeout`] or the node's own came (the
    /// node is ticked too).
    Tick,
    /// A turn for one slice of the node's pending work ([`crate::Node::work`]).
    Work,
    /// The output of a node operation the engine called itself (a local edit, an
    /// invite, a vault reloaded from the store): its closed sessions and events are
    /// taken into account and it is handed back in [`Actions::out`].
    NodeOutput(Output),
    /// A connection to `device` came up. `dialed` is the address, when this side dialed.
    Connected {
        /// The device.
        device: DeviceId,
        /// The address dialed (without `/p2p/<device>`), if this side dialed.
        dialed: Option<String>,
    },
    /// The last connection to `device` went down.
    Disconnected {
        /// The device.
        device: DeviceId,
    },
    /// A connection attempt to `device` failed.
    DialFailed {
        /// The device.
        device: DeviceId,
    },
    /// A [`Dial`] to `device` could not even start (no address the transports take).
    DialNotStarted {
        /// The device.
        device: DeviceId,
    },
    /// Dial an address (a user's, the configuration's, an invite's): remembered in the
    /// peer table; a circuit address waits for its relay's connection.
    Dial {
        /// The multiaddr, as text.
        address: String,
    },
    /// `device` was found on the local network (mDNS) at `addresses` (without
    /// `/p2p/<device>`, all it announced at once): dialed now unless connected, and again
    /// with backoff a few times when that fails, without a place in the peer table (see
    /// [`super::MAX_NEIGHBOURS`]).
    Discovered {
        /// The device.
        device: DeviceId,
        /// Where it said it listens.
        addresses: Vec<String>,
    },
    /// `device` serves as a relay: connections to it are kept, no invite is shown to it.
    Relay {
        /// The relay.
        device: DeviceId,
    },
    /// `device` says it listens at `addresses` (only those this target can dial):
    /// remembered once a session with it is ready.
    Identified {
        /// The device.
        device: DeviceId,
        /// Its addresses.
        addresses: Vec<String>,
    },
    /// `device` opened a sync stream to this device.
    Inbound {
        /// The engine's name for the stream.
        stream: InboundId,
        /// The device.
        device: DeviceId,
    },
    /// The stream of an [`Open`] is up.
    Opened {
        /// Which.
        open: OpenId,
    },
    /// The stream of an [`Open`] could not be opened.
    OpenFailed {
        /// Which.
        open: OpenId,
        /// Why.
        error: String,
    },
    /// A frame arrived on a session's stream.
    Frame {
        /// The session.
        session: SessionId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A session's stream ended (closed by the peer, or broken).
    StreamEnded {
        /// The session.
        session: SessionId,
    },
    /// A session's stream carried something that is not a frame (an oversized length):
    /// the peer is banned.
    BadFrame {
        /// The session.
        session: SessionId,
        /// What was wrong.
        error: String,
    },
    /// Try an invite until this device holds the vault or the join times out.
    Join {
        /// The engine's name for it, echoed in [`PeeringEvent::JoinFinished`].
        id: JoinId,
        /// The invite.
        code: InviteCode,
    },
    /// The network went away (`false`) or came back (`true`): when it is back, every
    /// known peer is dialed at once, failures forgotten.
    Online(bool),
    /// This instance now holds the device's connections (a browser tab became the
    /// profile's leader): every known peer is dialed, pending invites too.
    HoldConnections,
    /// Peer records read from the store (written by another process or tab): they
    /// replace the ones held, and devices not known before are dialed now.
    PeerRecords(Vec<PeerRecord>),
    /// A commit failed and the engine reloads the node from the store: every session is
    /// dropped, and opened again at the next [`Input::Tick`] (due at once), on the
    /// reloaded node.
    StorageFailed,
}

/// Open a sync stream to `device` for `vault`; answer with [`Input::Opened`] or
/// [`Input::OpenFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The name to answer with.
    pub id: OpenId,
    /// The device.
    pub device: DeviceId,
    /// The vault the session is for.
    pub vault: VaultId,
}

/// Dial a device at some addresses (multiaddrs as text), or one address whose device
/// is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The device, when known apart from the addresses (a redial of a known peer).
    pub device: Option<DeviceId>,
    /// Where (without `/p2p/<device>` when `device` is given).
    pub addresses: Vec<String>,
}

/// How a join ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// This device now holds the vault.
    Joined,
    /// It held the vault already.
    AlreadyMember,
    /// No member accepted the invite in time, or one judged it bad.
    Failed(String),
}

/// What the engine reports to the app, besides the node's events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeeringEvent {
    /// A session ended with a refusal (either side).
    SessionRefused {
        /// The peer.
        peer: DeviceId,
        /// The vault the session was about, once the peer's first message named it.
        vault: Option<VaultId>,
        /// Why.
        reason: CloseReason,
    },
    /// A peer's changes were rejected.
    Rejected {
        /// The peer.
        peer: DeviceId,
        /// Why.
        error: ApplyError,
    },
    /// An invite was tried to the end.
    JoinFinished {
        /// The engine's name for it.
        id: JoinId,
        /// The vault.
        vault: VaultId,
        /// How it ended.
        outcome: JoinOutcome,
    },
    /// Something went wrong that the supervisor recovered from.
    Problem(String),
}

/// What the supervisor asks of its engine, carried out in this order:
/// 1. commit `out.batch` (on failure: send nothing, hand [`Input::StorageFailed`] in and
///    reload the node);
/// 2. attach the streams named in `attach_inbound`/`attach_opened` to their sessions,
///    drop those in `reject_inbound`/`discard_opened`;
/// 3. send `out.transmits` in order;
/// 4. close the streams of `detach` once what was queued on them is written;
/// 5. save `peer_records` (a failure there loses only the peer table's news);
/// 6. `disconnect`, `dial`, `open`;
/// 7. report `out.events` (its `Rejected` events are reported as
///    [`PeeringEvent::Rejected`] instead), then `events`; renew rendezvous if asked.
#[derive(Debug, Default)]
#[must_use = "actions do nothing until the engine carries them out"]
pub struct Actions {
    /// The node's output: commit, send, report (its closed sessions are in `detach`).
    pub out: Output,
    /// Inbound streams to attach to their new sessions.
    pub attach_inbound: Vec<(InboundId, SessionId)>,
    /// Inbound streams to drop (a banned peer).
    pub reject_inbound: Vec<InboundId>,
    /// Opened streams to attach to their new sessions.
    pub attach_opened: Vec<(OpenId, SessionId)>,
    /// Opened streams no longer wanted (the peer's own session got there first).
    pub discard_opened: Vec<OpenId>,
    /// Sessions that ended: close their streams after what is queued.
    pub detach: Vec<SessionId>,
    /// Peer table records to save.
    pub peer_records: Batch,
    /// Connections to close.
    pub disconnect: Vec<DeviceId>,
    /// Dials to make.
    pub dial: Vec<Dial>,
    /// Streams to open.
    pub open: Vec<Open>,
    /// What to report.
    pub events: Vec<PeeringEvent>,
    /// Renew registrations and lookups at connected relays' rendezvous points now.
    pub rendezvous: bool,
}

impl Actions {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.out.batch.is_empty()
            && self.out.transmits.is_empty()
            && self.out.events.is_empty()
            && self.attach_inbound.is_empty()
            && self.reject_inbound.is_empty()
            && self.attach_opened.is_empty()
            && self.discard_opened.is_empty()
            && self.detach.is_empty()
            && self.peer_records.is_empty()
            && self.disconnect.is_empty()
            && self.dial.is_empty()
            && self.open.is_empty()
            && self.events.is_empty()
            && !self.rendezvous
    }
}
