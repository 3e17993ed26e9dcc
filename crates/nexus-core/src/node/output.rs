//! What a node hands its engine: [`Output`] (records, messages, closes, [`Event`]s) and
//! the names it uses in it ([`SessionId`], [`CloseReason`]).

use crate::document::ApplyError;
use crate::identity::DeviceId;
use crate::ids::{DocId, VaultId};
use crate::protocol::{Message, RefuseCode};
use crate::storage::Batch;

/// Names one session of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// For programs.
    pub code: RefuseCode,
    /// For people.
    pub reason: String,
    /// Whether this side refused the peer (`false`: the peer refused this side).
    pub by_us: bool,
}

/// Something the app should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A document changed because of a peer.
    DocChanged {
        /// The vault.
        vault: VaultId,
        /// The document.
        doc: DocId,
    },
    /// The vault's membership changed.
    MembershipChanged {
        /// The vault.
        vault: VaultId,
    },
    /// A member approved this device by id and offered a vault it does not hold: it waits
    /// for the person to accept or decline it ([`Node::offers`](super::Node::offers)).
    VaultOffered {
        /// The vault.
        vault: VaultId,
        /// The member that offered it.
        by: DeviceId,
    },
    /// This device now holds a vault it did not have (joined, or an offer accepted).
    VaultJoined {
        /// The vault.
        vault: VaultId,
    },
    /// A session finished its handshake and is syncing documents.
    SessionReady {
        /// The session.
        session: SessionId,
        /// The vault.
        vault: VaultId,
        /// The peer.
        peer: DeviceId,
    },
    /// A peer sent changes that were rejected (not necessarily its fault: it may not
    /// know of a revocation yet).
    Rejected {
        /// The session.
        session: SessionId,
        /// Why.
        error: ApplyError,
    },
}

/// What a node asks its engine to do. See the [module doc](super) for the order.
#[derive(Debug, Default)]
#[must_use = "an output does nothing until the engine carries it out"]
pub struct Output {
    /// Records to commit first.
    pub batch: Batch,
    /// Messages to send, in order.
    pub transmits: Vec<(SessionId, Vec<u8>)>,
    /// Sessions to close.
    pub closed: Vec<(SessionId, CloseReason)>,
    /// Events for the app.
    pub events: Vec<Event>,
}

impl Output {
    pub(super) fn send(&mut self, session: SessionId, message: &Message) {
        self.transmits.push((session, message.encode()));
    }

    /// Appends another output after this one.
    pub fn extend(&mut self, other: Output) {
        self.batch.extend(other.batch);
        self.transmits.extend(other.transmits);
        self.closed.extend(other.closed);
        self.events.extend(other.events);
    }
}
