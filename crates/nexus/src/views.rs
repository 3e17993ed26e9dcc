//! What a person is shown about a vault, its devices and its documents: plain summaries
//! built from `nexus_core` types, computed once for every place that shows them (the
//! `nexus` command line, the daemon's status, the JavaScript binding).
//!
//! They serialize to the snake_case JSON that `nexus --json` prints (ids as text); the
//! JavaScript binding names the same fields its own way.
//!
//! ```
//! use nexus::views::{DeviceSummary, Standing, VaultSummary};
//! use nexus_core::{ActorId, DeviceKey, Role, Vault};
//!
//! let key = DeviceKey::from_secret_bytes(&[1; 32]);
//! let (vault, _batch) = Vault::create(&key, "Home", [0; 16], 0, ActorId::random()).unwrap();
//! let me = key.device_id();
//! let summary = VaultSummary::of(&vault, &me);
//! assert_eq!((summary.name.as_str(), summary.role, summary.members), ("Home", Some(Role::Admin), 1));
//! let devices = DeviceSummary::all_of(&vault, &me);
//! assert_eq!(devices[0].status, Standing::Member);
//! assert!(devices[0].this_device);
//! ```

use nexus_core::{ChangeHash, DeviceId, DocId, Document, Hash, Invite, Role, Vault, VaultId};
use serde::{Deserialize, Serialize};

use crate::as_text;

/// One vault as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultSummary {
    /// The vault.
    #[serde(with = "as_text")]
    pub vault_id: VaultId,
    /// The name people see.
    pub name: String,
    /// This device's role; `None` when it is not a member (any more).
    #[serde(with = "as_text::option")]
    pub role: Option<Role>,
    /// How many devices are members.
    pub members: usize,
    /// How many documents it holds.
    pub documents: usize,
}

impl VaultSummary {
    /// `vault` as seen by the device `me`.
    pub fn of(vault: &Vault, me: &DeviceId) -> Self {
        let membership = vault.membership();
        Self {
            vault_id: vault.id(),
            name: membership.name().to_owned(),
            role: membership.role(me),
            members: membership.members().len(),
            documents: vault.documents().count(),
        }
    }
}

/// Whether a device belongs to a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// A current member.
    Member,
    /// Revoked (and not a member again).
    Revoked,
}

impl Standing {
    /// `"member"` or `"revoked"`, as the JSON says.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Member => "member",
            Standing::Revoked => "revoked",
        }
    }
}

/// One device of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSummary {
    /// The device.
    #[serde(with = "as_text")]
    pub device_id: DeviceId,
    /// Its role; `None` for a revoked device.
    #[serde(with = "as_text::option")]
    pub role: Option<Role>,
    /// Member or revoked.
    pub status: Standing,
    /// Whether it is the device asking.
    pub this_device: bool,
}

impl DeviceSummary {
    /// Every device `vault` knows, as seen by `me`: the members (by device id), then the
    /// revoked devices.
    pub fn all_of(vault: &Vault, me: &DeviceId) -> Vec<Self> {
        let membership = vault.membership();
        let members = membership.members().iter().map(|(device, member)| Self {
            device_id: *device,
            role: Some(member.role),
            status: Standing::Member,
            this_device: device == me,
        });
        let revoked = membership.revoked().keys().map(|device| Self {
            device_id: *device,
            role: None,
            status: Standing::Revoked,
            this_device: device == me,
        });
        members.chain(revoked).collect()
    }
}

/// Where an invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteState {
    /// It can still admit a device.
    Open,
    /// A device joined with it.
    Redeemed,
    /// An admin cancelled it.
    Cancelled,
    /// Its time is up.
    Expired,
    /// Its creator is no longer an admin, so it admits nobody.
    Void,
}

impl InviteState {
    /// The word the JSON says.
    pub fn as_str(self) -> &'static str {
        match self {
            InviteState::Open => "open",
            InviteState::Redeemed => "redeemed",
            InviteState::Cancelled => "cancelled",
            InviteState::Expired => "expired",
            InviteState::Void => "void",
        }
    }
}

/// A vault offered to this device by an approval it never asked for, waiting for the
/// person to accept or decline it (`nexus vault pending|accept|decline`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferSummary {
    /// The vault.
    #[serde(with = "as_text")]
    pub vault_id: VaultId,
    /// Its name, as its log says (chosen by whoever made it).
    pub name: String,
    /// The role it gives this device.
    #[serde(with = "as_text")]
    pub role: Role,
    /// The member that offered it.
    #[serde(with = "as_text")]
    pub offered_by: DeviceId,
    /// When it arrived (milliseconds since the Unix epoch).
    pub offered_at_ms: u64,
}

impl OfferSummary {
    /// Every offer waiting at `node`, oldest first.
    pub fn all_of(node: &nexus_core::node::Node) -> Vec<Self> {
        node.offers()
            .into_iter()
            .map(|o| Self {
                vault_id: o.vault,
                name: o.name,
                role: o.role,
                offered_by: o.offered_by,
                offered_at_ms: o.offered_at_ms,
            })
            .collect()
    }
}

/// One invite of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InviteSummary {
    /// The invite's id (its `CreateInvite` entry), for `nexus invite cancel`.
    #[serde(with = "as_text")]
    pub invite_id: Hash,
    /// The admin that made it.
    #[serde(with = "as_text")]
    pub created_by: DeviceId,
    /// The role it grants.
    #[serde(with = "as_text")]
    pub role: Role,
    /// When it was made (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// When it stops working.
    pub expires_at_ms: u64,
    /// Where it stands now.
    pub state: InviteState,
    /// The device that joined with it.
    #[serde(with = "as_text::option")]
    pub redeemed_by: Option<DeviceId>,
}

impl InviteSummary {
    /// Every invite of `vault` at `now_ms`, newest first.
    pub fn all_of(vault: &Vault, now_ms: u64) -> Vec<Self> {
        let membership = vault.membership();
        let state = |invite: &Invite| {
            if invite.redeemed_by.is_some() {
                InviteState::Redeemed
            } else if invite.cancelled_by.is_some() {
                InviteState::Cancelled
            } else if !membership.is_admin(&invite.created_by) {
                InviteState::Void
            } else if now_ms > invite.expires_at_ms {
                InviteState::Expired
            } else {
                InviteState::Open
            }
        };
        let mut all: Vec<Self> = membership
            .invites()
            .iter()
            .map(|(hash, invite)| Self {
                invite_id: *hash,
                created_by: invite.created_by,
                role: invite.role,
                created_at_ms: invite.created_at_ms,
                expires_at_ms: invite.expires_at_ms,
                state: state(invite),
                redeemed_by: invite.redeemed_by,
            })
            .collect();
        all.sort_by_key(|i| std::cmp::Reverse((i.created_at_ms, i.invite_id)));
        all
    }
}

/// One document of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentSummary {
    /// The document.
    #[serde(with = "as_text")]
    pub doc_id: DocId,
    /// How many changes it holds.
    pub changes: usize,
    /// Its heads, sorted (equal on two devices that hold the same changes).
    #[serde(with = "as_text::vec")]
    pub heads: Vec<ChangeHash>,
}

impl DocumentSummary {
    /// The summary of `doc`.
    pub fn of(doc: &Document) -> Self {
        Self {
            doc_id: doc.id(),
            changes: doc.change_count(),
            heads: doc.heads(),
        }
    }
}

#[cfg(test)]
mod tests {
    use nexus_core::automerge::ROOT;
    use nexus_core::automerge::transaction::Transactable;
    use nexus_core::{ActorId, DeviceKey, Vault};
    use serde_json::json;

    use super::*;

    /// A vault "Home" made by `admin`, where `admin` approved `member` and revoked
    /// `gone`, holding one document with one change.
    fn small_vault() -> (Vault, DeviceKey, DeviceKey, DeviceKey, DocId) {
        let (admin, member, gone) = (
            DeviceKey::from_secret_bytes(&[1; 32]),
            DeviceKey::from_secret_bytes(&[2; 32]),
            DeviceKey::from_secret_bytes(&[3; 32]),
        );
        let (mut vault, _) = Vault::create(&admin, "Home", [7; 16], 10, ActorId::random()).unwrap();
        let doc = DocId([9; 16]);
        // The batches are not stored: the summaries read the vault in memory.
        let _ = vault
            .add_device(&admin, member.device_id(), Role::Member, 20)
            .unwrap();
        let _ = vault
            .add_device(&admin, gone.device_id(), Role::Admin, 30)
            .unwrap();
        let _ = vault.revoke_device(&admin, gone.device_id(), 40).unwrap();
        let _ = vault.create_document(&admin, doc, 50).unwrap();
        let _ = vault
            .change(&admin, doc, |tx| tx.put(ROOT, "title", "plan").map(drop))
            .unwrap();
        (vault, admin, member, gone, doc)
    }

    #[test]
    fn a_vault_summary_counts_members_and_documents_and_knows_my_role() {
        let (vault, admin, member, gone, _) = small_vault();
        let of = |key: &DeviceKey| VaultSummary::of(&vault, &key.device_id());
        assert_eq!(
            of(&admin),
            VaultSummary {
                vault_id: vault.id(),
                name: "Home".into(),
                role: Some(Role::Admin),
                members: 2,
                documents: 1,
            }
        );
        assert_eq!(of(&member).role, Some(Role::Member));
        assert_eq!(of(&gone).role, None, "a revoked device has no role");
        assert_eq!(
            serde_json::to_value(of(&admin)).unwrap(),
            json!({ "vault_id": vault.id().to_string(), "name": "Home", "role": "admin", "members": 2, "documents": 1 })
        );
        assert_eq!(
            serde_json::to_value(of(&gone)).unwrap()["role"],
            json!(null)
        );
    }

    #[test]
    fn the_devices_of_a_vault_are_its_members_then_the_revoked() {
        let (vault, admin, member, gone, _) = small_vault();
        let devices = DeviceSummary::all_of(&vault, &member.device_id());
        let mut members = [admin.device_id(), member.device_id()];
        members.sort();
        assert_eq!(
            devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
            [members[0], members[1], gone.device_id()]
        );
        let mine: Vec<_> = devices.iter().filter(|d| d.this_device).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].device_id, member.device_id());
        assert_eq!(
            serde_json::to_value(&devices[2]).unwrap(),
            json!({ "device_id": gone.device_id().to_string(), "role": null, "status": "revoked", "this_device": false })
        );
        assert_eq!(
            serde_json::to_value(&devices[0]).unwrap()["status"],
            "member"
        );
    }

    #[test]
    fn a_document_summary_has_its_changes_and_heads() {
        let (vault, _, _, _, doc) = small_vault();
        let document = vault.document(&doc).unwrap();
        let summary = DocumentSummary::of(document);
        assert_eq!(summary.doc_id, doc);
        assert_eq!(summary.changes, 1);
        assert_eq!(summary.heads.len(), 1);
        assert_eq!(summary.heads, document.heads());
        let heads: Vec<String> = document.heads().iter().map(ToString::to_string).collect();
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({ "doc_id": doc.to_string(), "changes": 1, "heads": heads })
        );
    }
}
