//! What applying, editing and loading a document give back: [`Applied`], [`LocalChange`],
//! [`Problem`], and the errors [`ApplyError`], [`ChangeError`] and [`LoadError`].

use automerge::{AutomergeError, ChangeHash};
use thiserror::Error;

use super::SignedChange;
use crate::codec::DecodeError;
use crate::identity::DeviceId;
use crate::ids::DocId;
use crate::storage::Batch;

/// Why a remote change was rejected. Rejected changes are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The bytes are not an Automerge change.
    #[error("malformed change from {author}: {reason}")]
    Malformed {
        /// The claimed author.
        author: DeviceId,
        /// What is wrong.
        reason: String,
    },
    /// A document snapshot sent by a peer does not decode or load.
    #[error("malformed document snapshot: {reason}")]
    MalformedSnapshot {
        /// What is wrong.
        reason: String,
    },
    /// The author is not a member of the vault.
    #[error("change {change} is by {author}, who is not a member of this vault")]
    NotMember {
        /// The change.
        change: ChangeHash,
        /// Its author.
        author: DeviceId,
    },
    /// The change is written under an Automerge actor of another device (see
    /// [`crate::actor`]): a member writing as someone else.
    #[error("change {change} is signed by {author} but written under another device's actor")]
    ForeignActor {
        /// The change.
        change: ChangeHash,
        /// Its signer.
        author: DeviceId,
    },
    /// The author was revoked and the change lies outside what its revocation had seen.
    #[error(
        "change {change} is by {author}, who was revoked, and the revoking admin had not seen it"
    )]
    Revoked {
        /// The change.
        change: ChangeHash,
        /// Its author.
        author: DeviceId,
    },
    /// The signature does not verify for this vault, document and author.
    #[error(
        "change {change} has a signature that does not verify for author {author} in this document (forged, tampered or sent to the wrong document)"
    )]
    BadSignature {
        /// The change.
        change: ChangeHash,
        /// Its claimed author.
        author: DeviceId,
    },
    /// The change nests objects deeper than [`super::MAX_DEPTH`] (or inside an object
    /// that does not exist): every reader would have to recurse that deep.
    #[error(
        "change {change} nests maps or lists {depth} deep, over the limit of {}",
        super::MAX_DEPTH
    )]
    TooDeep {
        /// The change.
        change: ChangeHash,
        /// The depth it reaches (0: inside an object that does not exist).
        depth: usize,
    },
    /// Automerge refused the change (for example a reused sequence number).
    #[error("change {change} was refused by the document: {reason}")]
    Refused {
        /// The change.
        change: ChangeHash,
        /// Automerge's reason.
        reason: String,
    },
}

/// What [`Document::apply`](super::Document::apply) did.
#[derive(Debug, Clone, Default)]
#[must_use = "the batch must be committed before the changes are acknowledged or forwarded"]
pub struct Applied {
    /// Records to commit, atomically, before acting on the rest.
    pub batch: Batch,
    /// Changes that are new and valid (applied, or stored while they wait for their
    /// dependencies).
    pub accepted: Vec<ChangeHash>,
    /// Changes refused, with why.
    pub rejected: Vec<ApplyError>,
    /// Whether the whole batch was refused because of a forgery (all-or-nothing mode).
    pub aborted: bool,
}

/// A local edit: the signed change and the batch that persists it.
#[derive(Debug)]
#[must_use = "the batch must be committed for the change to be durable"]
pub struct LocalChange {
    /// The signed change, to send to peers.
    pub change: SignedChange,
    /// Its hash.
    pub hash: ChangeHash,
    /// The record to commit.
    pub batch: Batch,
}

/// Why a local edit failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The edit function returned an error; the document is unchanged.
    #[error("the edit failed and was rolled back: {0}")]
    Edit(Box<AutomergeError>),
    /// The edit nests maps or lists deeper than [`super::MAX_DEPTH`]; it was undone.
    #[error(
        "the edit nests maps or lists {depth} deep, over the limit of {}; it was undone",
        super::MAX_DEPTH
    )]
    TooDeep {
        /// The depth it reached.
        depth: usize,
    },
    /// The change was to be made on heads this document does not hold (yet).
    #[error("the change was made on heads this device does not hold: {heads}")]
    UnknownHeads {
        /// The heads, as hex.
        heads: String,
    },
}

/// How a local change is made ([`super::Document::change_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeOptions {
    /// Make it on these heads (the change depends on them only, and its edits read the
    /// document as it was there: an edit recorded on an older copy lands where it was
    /// meant, concurrent with what arrived since). `None`: the current heads.
    pub at: Option<Vec<ChangeHash>>,
    /// Automerge's commit message.
    pub message: Option<String>,
}

/// Why stored records could not be loaded into a document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A record does not decode.
    #[error("document {doc}: corrupt {record} record: {source}")]
    Corrupt {
        /// The document.
        doc: DocId,
        /// Which record.
        record: &'static str,
        /// The decoding error.
        source: DecodeError,
    },
    /// Automerge could not load the snapshot.
    #[error("document {doc}: the snapshot does not load: {reason}")]
    Snapshot {
        /// The document.
        doc: DocId,
        /// Automerge's reason.
        reason: String,
    },
}

/// A problem found by [`Document::verify`](super::Document::verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A change has no recorded signature.
    Unsigned(ChangeHash),
    /// A change's signature does not verify.
    BadSignature(ChangeHash),
}
