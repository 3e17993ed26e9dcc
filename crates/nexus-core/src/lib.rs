//! The sans-IO core of Nexus: device identity, vaults with a signed membership log, and
//! Automerge documents whose every change is signed by its author device.
//!
//! Nothing here does I/O, reads a clock or draws randomness on its own (except the
//! explicit `generate`/`random` constructors): time comes in as `now_ms` arguments, and
//! storage is described as [`Batch`]es of records for the engine to commit. The same code
//! runs natively and in the browser (`wasm32-unknown-unknown`).
//!
//! - [`identity`]: [`DeviceKey`] and [`DeviceId`] (a libp2p `PeerId`).
//! - [`membership`]: the signed membership DAG and the rules deciding who is a member.
//! - [`document`]: signed Automerge changes, verification, compaction.
//! - [`vault`]: membership and documents together, producing storage batches.
//! - [`storage`]: the logical tables, [`Batch`], the [`Storage`] trait, [`MemoryStore`].
//! - [`node`]: the sync state machine, one session per (peer, vault).
//! - [`peering`]: the supervisor deciding which sessions to open, whom to dial and when.
//! - [`sim`]: the deterministic simulator driving both, as the engines do.
//!
//! A whole flow, by hand (the sync protocol automates the exchange):
//!
//! ```
//! use nexus_core::{ActorId, DeviceKey, DocId, Received, Role, Vault};
//! use automerge::{transaction::Transactable, ROOT};
//!
//! let alice = DeviceKey::from_secret_bytes(&[1; 32]);
//! let bob = DeviceKey::from_secret_bytes(&[2; 32]);
//! let (mut a, _) = Vault::create(&alice, "Home", [0; 16], 1_000, ActorId::random()).unwrap();
//! let _ = a.add_device(&alice, bob.device_id(), Role::Member, 2_000).unwrap();
//!
//! // Bob receives the log from Alice and becomes a replica.
//! let entries = a.log().entries().into_iter().cloned().collect();
//! let received = Received::from_peer(alice.device_id(), 2_000);
//! let (mut b, _) = Vault::from_entries(a.id(), entries, received, ActorId::random()).unwrap();
//! assert!(b.membership().is_member(&bob.device_id()));
//!
//! let doc = DocId([7; 16]);
//! let _ = a.create_document(&alice, doc, 3_000).unwrap();
//! let edit = a.change(&alice, doc, |tx| tx.put(ROOT, "milk", 2_i64).map(|_| ())).unwrap().unwrap();
//! let applied = b.apply_changes(doc, vec![edit.change], 3_000);
//! assert!(applied.rejected.is_empty());
//! assert_eq!(b.document(&doc).unwrap().heads(), a.document(&doc).unwrap().heads());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod actor;
mod arch;
pub mod bundle;
mod codec;
pub mod document;
mod hash;
pub mod identity;
mod ids;
pub mod invite_code;
pub mod json;
pub mod mailbox;
pub mod membership;
pub mod node;
pub mod peering;
pub mod peers;
pub mod protocol;
pub mod sealing;
mod signature_rule;
pub mod sim;
pub mod storage;
pub mod vault;

pub use automerge::{self, ActorId, ChangeHash};
pub use codec::DecodeError;
pub use document::{
    Applied, ApplyError, ChangeError, ChangeOptions, Document, LoadError, LocalChange, Problem,
    SignedChange,
};
pub use hash::Hash;
pub use identity::{DeviceId, DeviceKey, KeyError, ParseDeviceIdError, Signature, random_bytes};
pub use ids::{DocId, ParseIdError, VaultId};
pub use invite_code::{InviteCode, InviteCodeError};
pub use membership::{
    Action, Entry, EntryError, Invite, KeyInfo, Member, Membership, MembershipError, MembershipLog,
    Received, Revocation, Role, RuleViolation, SignedEntry, WorkSeen,
};
pub use node::{
    CloseReason, Event, Node, NodeConfig, NodeLoader, Output, PreparedBundle, SessionId,
};
pub use protocol::{JoinRequest, Message, RefuseCode};
pub use storage::{Batch, MemoryStore, MemoryStoreError, Op, Storage, Table, Touched};
pub use vault::{Ingested, Vault, VaultError, VaultLoadError};
