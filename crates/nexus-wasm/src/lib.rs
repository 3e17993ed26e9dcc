//! The JavaScript binding of the Nexus browser engine.
//!
//! A thin `#[wasm_bindgen]` layer over [`nexus::WebHandle`]: it converts JavaScript
//! values (through `serde-wasm-bindgen`, as plain JSON-shaped objects) and errors, and
//! nothing else: every rule lives in `nexus-core`, every effect in `nexus`. Errors reach
//! JavaScript as `Error`s with a `code` a program can branch on:
//!
//! | code | meaning |
//! |---|---|
//! | `BAD_ARGUMENT` | an id, address, invite code or edit list could not be read |
//! | `QUOTA_EXCEEDED` | the browser refused to store more |
//! | `BLOCKED` | another tab keeps an older version of the database open |
//! | `STORAGE` | IndexedDB failed or holds something unreadable |
//! | `NETWORK` | the network stack could not be set up |
//! | `CONNECT` | a peer could not be reached |
//! | `JOIN` | no member accepted the invite in time, or the invite was refused |
//! | `UNKNOWN_VAULT` / `UNKNOWN_DOCUMENT` | not held by this device |
//! | `NOT_OFFERED` | no offer of that vault waits (never offered, answered, or pushed out) |
//! | `NOT_ALLOWED` | the membership rules refuse it (not an admin, revoked, …) |
//! | `EDIT` | the document refused an edit |
//! | `CLOSED` | the instance was closed |

#![cfg(target_arch = "wasm32")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::str::FromStr;

use futures::StreamExt;
use nexus::views::{DeviceSummary, InviteSummary, OfferSummary, VaultSummary};
use nexus::{EngineEvent, IdbError, WebEngine, WebError, WebHandle};
use nexus_core::invite_code::InviteCode;
use nexus_core::node::NodeConfig;
use nexus_core::{DeviceId, DocId, Role, VaultError, VaultId};
use serde_json::{Value as Json, json};
use wasm_bindgen::prelude::*;

fn js_error(code: &str, message: impl std::fmt::Display) -> JsValue {
    let error = js_sys::Error::new(&message.to_string());
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.into()
}

fn web_error(error: WebError) -> JsValue {
    let code = match &error {
        WebError::Storage(IdbError::QuotaExceeded(_)) => "QUOTA_EXCEEDED",
        WebError::Storage(IdbError::Blocked { .. }) => "BLOCKED",
        WebError::Storage(_) | WebError::Load(_) | WebError::PeerTable(_) => "STORAGE",
        WebError::Network(_) => "NETWORK",
        WebError::Connect { .. } => "CONNECT",
        WebError::Join(_) => "JOIN",
        WebError::Vault(e) => vault_error_code(e),
        WebError::Edit(_) => "EDIT",
        WebError::Stopped => "CLOSED",
        _ => "INTERNAL",
    };
    js_error(code, error)
}

fn vault_error_code(error: &VaultError) -> &'static str {
    match error {
        VaultError::UnknownVault { .. } => "UNKNOWN_VAULT",
        VaultError::NotOffered { .. } => "NOT_OFFERED",
        VaultError::UnknownDocument { .. } => "UNKNOWN_DOCUMENT",
        VaultError::Change { .. } => "EDIT",
        _ => "NOT_ALLOWED",
    }
}

fn bad_argument(what: &str, error: impl std::fmt::Display) -> JsValue {
    js_error("BAD_ARGUMENT", format!("{what}: {error}"))
}

fn parse<T: FromStr>(what: &str, text: &str) -> Result<T, JsValue>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| bad_argument(&format!("{what} `{text}`"), e))
}

fn to_js(value: &Json) -> Result<JsValue, JsValue> {
    use serde::Serialize as _;
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error("INTERNAL", e))
}

fn from_js(what: &str, value: JsValue) -> Result<Json, JsValue> {
    if value.is_undefined() {
        return Ok(Json::Null);
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| bad_argument(what, e))
}

fn event_json(event: &EngineEvent) -> Json {
    match event {
        EngineEvent::Connected(device) => {
            json!({ "type": "connected", "deviceId": device.to_string() })
        }
        EngineEvent::Disconnected(device) => {
            json!({ "type": "disconnected", "deviceId": device.to_string() })
        }
        EngineEvent::Reachable(address) => {
            json!({ "type": "reachable", "address": address.to_string() })
        }
        EngineEvent::SessionReady { vault, peer } => {
            json!({ "type": "syncing", "vaultId": vault.to_string(), "deviceId": peer.to_string() })
        }
        EngineEvent::SessionRefused {
            peer,
            vault,
            reason,
        } => json!({
            "type": "refused",
            "deviceId": peer.to_string(),
            "vaultId": vault.map(|v| v.to_string()),
            "code": reason.code.as_str(),
            "reason": reason.reason,
            "byUs": reason.by_us,
        }),
        EngineEvent::DocChanged { vault, doc, .. } => {
            json!({ "type": "docChanged", "vaultId": vault.to_string(), "docId": doc.to_string() })
        }
        EngineEvent::MembershipChanged(vault) => {
            json!({ "type": "membershipChanged", "vaultId": vault.to_string() })
        }
        EngineEvent::VaultJoined(vault) => {
            json!({ "type": "vaultJoined", "vaultId": vault.to_string() })
        }
        EngineEvent::VaultOffered { vault, name, by } => json!({
            "type": "vaultOffered",
            "vaultId": vault.to_string(),
            "name": name,
            "deviceId": by.to_string(),
        }),
        EngineEvent::Rejected { peer, error } => {
            json!({ "type": "rejected", "deviceId": peer.to_string(), "error": error })
        }
        EngineEvent::Online(online) => json!({ "type": "online", "online": online }),
        EngineEvent::Leader => json!({ "type": "leader" }),
        EngineEvent::Problem(message) => json!({ "type": "problem", "message": message }),
        _ => json!({ "type": "other" }),
    }
}

/// One device's Nexus in this browser profile: its key and vaults in IndexedDB, its
/// connections, its documents.
#[wasm_bindgen]
pub struct Nexus {
    handle: WebHandle,
}

#[wasm_bindgen]
impl Nexus {
    /// Opens (or creates) the IndexedDB database `name` and starts the peer.
    pub async fn open(name: String) -> Result<Nexus, JsValue> {
        let handle = WebEngine::start(&name, NodeConfig::new())
            .await
            .map_err(web_error)?;
        Ok(Nexus { handle })
    }

    /// This device's id (what an admin approves).
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.handle.device_id().to_string()
    }

    /// Creates a vault with this device as its admin; resolves with its id once stored.
    #[wasm_bindgen(js_name = createVault)]
    pub async fn create_vault(&self, name: String) -> Result<String, JsValue> {
        let nonce: [u8; 16] = nexus_core::random_bytes().map_err(|e| js_error("INTERNAL", e))?;
        let vault = self
            .handle
            .update(move |node, now| Ok(node.create_vault(&name, nonce, now)?))
            .await
            .map_err(web_error)?;
        Ok(vault.to_string())
    }

    /// The vaults this device holds: `[{ id, name, role, members }]`.
    pub async fn vaults(&self) -> Result<JsValue, JsValue> {
        let list = self
            .handle
            .read(|node| {
                let me = node.device_id();
                node.vaults()
                    .map(|v| {
                        let summary = VaultSummary::of(v, &me);
                        json!({
                            "id": summary.vault_id.to_string(),
                            "name": summary.name,
                            "role": summary.role.map(|r| r.to_string()),
                            "members": summary.members,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(web_error)?;
        to_js(&Json::Array(list))
    }

    /// The devices of a vault: `[{ deviceId, role, status: "member" | "revoked", thisDevice }]`.
    pub async fn devices(&self, vault: String) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let rows = self
            .handle
            .read(move |node| {
                let me = node.device_id();
                let v = node
                    .vault(&vault)
                    .ok_or(VaultError::UnknownVault { vault })?;
                let rows: Vec<Json> = DeviceSummary::all_of(v, &me)
                    .into_iter()
                    .map(|d| {
                        json!({
                            "deviceId": d.device_id.to_string(),
                            "role": d.role.map(|r| r.to_string()),
                            "status": d.status.as_str(),
                            "thisDevice": d.this_device,
                        })
                    })
                    .collect();
                Ok::<_, VaultError>(rows)
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&Json::Array(rows))
    }

    /// An admin makes an invite code for `role` ("member" or "admin") that expires after
    /// `expiresInSeconds`. The code carries the addresses at which this browser can be
    /// reached through relays.
    #[wasm_bindgen(js_name = createInvite)]
    pub async fn create_invite(
        &self,
        vault: String,
        expires_in_seconds: f64,
        role: String,
    ) -> Result<String, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let role: Role = parse("role", &role)?;
        if !(expires_in_seconds.is_finite() && expires_in_seconds > 0.0) {
            return Err(bad_argument(
                "expiresInSeconds",
                "must be a positive number of seconds",
            ));
        }
        let secret: [u8; 32] = nexus_core::random_bytes().map_err(|e| js_error("INTERNAL", e))?;
        let addresses: Vec<String> = self
            .handle
            .status()
            .await
            .map_err(web_error)?
            .reachable_at
            .iter()
            .map(ToString::to_string)
            .take(nexus_core::invite_code::MAX_ADDRESSES)
            .collect();
        let code = self
            .handle
            .update(move |node, now| {
                let expires_at_ms = now.saturating_add((expires_in_seconds * 1000.0) as u64);
                let (invite, out) = node.create_invite(vault, &secret, role, expires_at_ms, now)?;
                let code = InviteCode {
                    vault,
                    invite,
                    secret,
                    expires_at_ms,
                    inviter: node.device_id(),
                    addresses,
                };
                Ok((code, out))
            })
            .await
            .map_err(web_error)?;
        Ok(code.to_string())
    }

    /// The invites of a vault, newest first: `[{ id, createdBy, role, createdAt,
    /// expiresAt, state: "open" | "redeemed" | "cancelled" | "expired" | "void",
    /// redeemedBy }]` (times in milliseconds since the Unix epoch).
    pub async fn invites(&self, vault: String) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let rows = self
            .handle
            .read(move |node| {
                let v = node
                    .vault(&vault)
                    .ok_or(VaultError::UnknownVault { vault })?;
                let now = js_sys::Date::now() as u64;
                let rows: Vec<Json> = InviteSummary::all_of(v, now)
                    .into_iter()
                    .map(|i| {
                        json!({
                            "id": i.invite_id.to_string(),
                            "createdBy": i.created_by.to_string(),
                            "role": i.role.to_string(),
                            "createdAt": i.created_at_ms,
                            "expiresAt": i.expires_at_ms,
                            "state": i.state.as_str(),
                            "redeemedBy": i.redeemed_by.map(|d| d.to_string()),
                        })
                    })
                    .collect();
                Ok::<_, VaultError>(rows)
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&Json::Array(rows))
    }

    /// An admin cancels an invite by its id (from `invites`): a device that has not
    /// joined with it by the time the cancellation reaches the others cannot.
    #[wasm_bindgen(js_name = cancelInvite)]
    pub async fn cancel_invite(&self, vault: String, invite: String) -> Result<(), JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let invite: nexus_core::Hash = parse("invite id", invite.trim())?;
        self.handle
            .update(move |node, now| Ok(((), node.cancel_invite(vault, invite, now)?)))
            .await
            .map_err(web_error)
    }

    /// Vaults offered to this device by an approval it never asked for, waiting for an
    /// answer: `[{ vaultId, name, role, offeredBy, offeredAt }]`, oldest first. They wait
    /// in the tab that holds the connections.
    pub async fn offers(&self) -> Result<JsValue, JsValue> {
        let rows: Vec<Json> = self
            .handle
            .read(|node| {
                OfferSummary::all_of(node)
                    .into_iter()
                    .map(|o| {
                        json!({
                            "vaultId": o.vault_id.to_string(),
                            "name": o.name,
                            "role": o.role.to_string(),
                            "offeredBy": o.offered_by.to_string(),
                            "offeredAt": o.offered_at_ms,
                        })
                    })
                    .collect()
            })
            .await
            .map_err(web_error)?;
        to_js(&Json::Array(rows))
    }

    /// Takes in an offered vault: resolves once it is stored; it syncs from then on.
    #[wasm_bindgen(js_name = acceptOffer)]
    pub async fn accept_offer(&self, vault: String) -> Result<(), JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        self.handle
            .update(move |node, now| Ok(((), node.accept_offer(vault, now)?)))
            .await
            .map_err(web_error)
    }

    /// Declines an offered vault: it is dropped and refused from then on.
    #[wasm_bindgen(js_name = declineOffer)]
    pub async fn decline_offer(&self, vault: String) -> Result<(), JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        self.handle
            .update(move |node, _| {
                node.decline_offer(vault);
                Ok(((), nexus_core::node::Output::default()))
            })
            .await
            .map_err(web_error)
    }

    /// Redeems an invite code: resolves with the vault's id once a member let this device
    /// in and the vault is stored.
    pub async fn join(&self, code: String) -> Result<String, JsValue> {
        let code: InviteCode = parse("invite code", code.trim())?;
        let vault = self.handle.join(code).await.map_err(web_error)?;
        Ok(vault.to_string())
    }

    /// An admin approves a device by its id.
    pub async fn approve(
        &self,
        vault: String,
        device: String,
        role: String,
    ) -> Result<(), JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let device: DeviceId = parse("device id", device.trim())?;
        let role: Role = parse("role", &role)?;
        self.handle
            .update(move |node, now| Ok(((), node.add_device(vault, device, role, now)?)))
            .await
            .map_err(web_error)
    }

    /// An admin revokes a device: its later changes are refused everywhere.
    pub async fn revoke(&self, vault: String, device: String) -> Result<(), JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let device: DeviceId = parse("device id", device.trim())?;
        self.handle
            .update(move |node, now| Ok(((), node.revoke_device(vault, device, now)?)))
            .await
            .map_err(web_error)
    }

    /// Creates a document holding `initial` (a JSON object, a list of edits as for
    /// `change`, or nothing) in one signed change; resolves with its id once stored.
    #[wasm_bindgen(js_name = createDocument)]
    pub async fn create_document(
        &self,
        vault: String,
        initial: JsValue,
    ) -> Result<String, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let initial = from_js("initial", initial)?;
        let edits: Vec<Json> = match initial {
            Json::Null => Vec::new(),
            Json::Object(map) => map
                .iter()
                .map(|(k, v)| json!({ "op": "put", "path": [k], "value": v }))
                .collect(),
            Json::Array(edits) => edits,
            _ => {
                return Err(bad_argument(
                    "initial",
                    "must be an object or a list of edits",
                ));
            }
        };
        let doc = DocId::random().map_err(|e| js_error("INTERNAL", e))?;
        self.handle
            .update(move |node, now| {
                let mut out = node.create_document(vault, doc, now)?;
                if !edits.is_empty() {
                    let edits = Json::Array(edits);
                    let options = nexus_core::ChangeOptions::default();
                    out.extend(change_with_edits(node, vault, doc, &options, &edits)?.0);
                }
                Ok((doc, out))
            })
            .await
            .map_err(web_error)?;
        Ok(doc.to_string())
    }

    /// The ids of a vault's documents.
    pub async fn documents(&self, vault: String) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let ids = self
            .handle
            .read(move |node| {
                node.vault(&vault)
                    .map(|v| v.documents().map(|d| json!(d.id().to_string())).collect())
                    .ok_or(VaultError::UnknownVault { vault })
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&Json::Array(ids))
    }

    /// A document's content as plain JSON (text as strings, counters as numbers).
    pub async fn read(&self, vault: String, doc: String) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let doc: DocId = parse("document id", &doc)?;
        let content = self
            .handle
            .read(move |node| {
                node.vault(&vault)
                    .ok_or(VaultError::UnknownVault { vault })?
                    .document(&doc)
                    .map(|d| d.to_json())
                    .ok_or(VaultError::UnknownDocument { vault, doc })
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&content)
    }

    /// A document's heads (hex change hashes): equal on two devices that hold the same
    /// changes.
    pub async fn heads(&self, vault: String, doc: String) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let doc: DocId = parse("document id", &doc)?;
        let heads = self
            .handle
            .read(move |node| {
                node.vault(&vault)
                    .and_then(|v| v.document(&doc))
                    .map(|d| d.heads().iter().map(|h| json!(h.to_string())).collect())
                    .ok_or(VaultError::UnknownDocument { vault, doc })
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&Json::Array(heads))
    }

    /// What changed in a document since `since` (heads from `heads` or an earlier call):
    /// `{ heads, patches }`, the patches in `@automerge/automerge`'s shape (see
    /// `nexus_core::json::patches_to_json`), text positions in Unicode code points (the
    /// TypeScript layer hands them out in UTF-16 units). `since` empty gives the whole
    /// document.
    pub async fn patches(
        &self,
        vault: String,
        doc: String,
        since: JsValue,
    ) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let doc: DocId = parse("document id", &doc)?;
        let since = heads_from_js("since", since)?.unwrap_or_default();
        let diff = self
            .handle
            .read(move |node| {
                node.vault(&vault)
                    .and_then(|v| v.document(&doc))
                    .map(|d| {
                        let heads: Vec<Json> =
                            d.heads().iter().map(|h| json!(h.to_string())).collect();
                        json!({
                            "heads": heads,
                            "patches": nexus_core::json::patches_to_json(&d.patches_since(&since)),
                        })
                    })
                    .ok_or(VaultError::UnknownDocument { vault, doc })
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))?;
        to_js(&diff)
    }

    /// The document in Automerge's own `save()` format, history included, as
    /// `@automerge/automerge`'s `load` opens it.
    #[wasm_bindgen(js_name = exportDocument)]
    pub async fn export_document(&self, vault: String, doc: String) -> Result<Vec<u8>, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let doc: DocId = parse("document id", &doc)?;
        self.handle
            .read(move |node| {
                node.vault(&vault)
                    .and_then(|v| v.document(&doc))
                    .map(nexus_core::Document::export)
                    .ok_or(VaultError::UnknownDocument { vault, doc })
            })
            .await
            .map_err(web_error)?
            .map_err(|e| web_error(e.into()))
    }

    /// Applies a list of edits (see `nexus_core::json::apply_edits`) as one signed change.
    /// `at` (heads, or null for the current ones): the heads of the copy the edits were
    /// recorded on; the change is made there, so its list indexes and text positions mean
    /// what they meant on that copy. `message`: Automerge's commit message, or null.
    /// Resolves once the change is in IndexedDB, with the document's heads just before
    /// and just after it and the change's hash: `{ before, heads, change }` (a caller whose
    /// copy was at `before` knows that nothing else came in between; `change` is null
    /// when the edits changed nothing).
    pub async fn change(
        &self,
        vault: String,
        doc: String,
        edits: JsValue,
        at: JsValue,
        message: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let vault: VaultId = parse("vault id", &vault)?;
        let doc: DocId = parse("document id", &doc)?;
        let edits = from_js("edits", edits)?;
        if !edits.is_array() {
            return Err(bad_argument("edits", "must be an array"));
        }
        let options = nexus_core::ChangeOptions {
            at: heads_from_js("at", at)?,
            message,
        };
        let heads_of = move |node: &nexus_core::node::Node| -> Vec<Json> {
            node.vault(&vault)
                .and_then(|v| v.document(&doc))
                .map(|d| d.heads().iter().map(|h| json!(h.to_string())).collect())
                .unwrap_or_default()
        };
        let heads = self
            .handle
            .update(move |node, _| {
                let before = heads_of(node);
                let (out, change) = change_with_edits(node, vault, doc, &options, &edits)?;
                let after = heads_of(node);
                let change = change.map(|h| h.to_string());
                Ok((
                    json!({ "before": before, "heads": after, "change": change }),
                    out,
                ))
            })
            .await
            .map_err(web_error)?;
        to_js(&heads)
    }

    /// Connects to a peer or relay by multiaddr (WebSocket, WebRTC-direct or a relay
    /// circuit, ending in `/p2p/<id>`); resolves with its device id once connected, and at
    /// a relay once this browser holds a slot there.
    pub async fn connect(&self, address: String) -> Result<String, JsValue> {
        let address: nexus::libp2p::Multiaddr = parse("address", address.trim())?;
        let device = self.handle.connect(address).await.map_err(web_error)?;
        Ok(device.to_string())
    }

    /// What the peer is doing: `{ deviceId, online, leader, peers: [{ deviceId, connected,
    /// relay, syncing: [vaultId] }], reachableAt: [address], joining }`.
    pub async fn status(&self) -> Result<JsValue, JsValue> {
        let status = self.handle.status().await.map_err(web_error)?;
        let peers: Vec<Json> = status
            .peers
            .iter()
            .map(|p| {
                json!({
                    "deviceId": p.device.to_string(),
                    "connected": p.connected,
                    "relay": p.relay,
                    "syncing": p.syncing.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        to_js(&json!({
            "deviceId": status.device.to_string(),
            "online": status.online,
            "leader": status.leader,
            "peers": peers,
            "reachableAt": status.reachable_at.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "joining": status.joining,
        }))
    }

    /// Calls `listener` with each event from now on (`{ type, ... }`: `connected`,
    /// `disconnected`, `reachable`, `syncing`, `refused`, `docChanged`,
    /// `membershipChanged`, `vaultJoined`, `vaultOffered`, `rejected`, `online`, `leader`, `problem`).
    pub async fn subscribe(&self, listener: js_sys::Function) -> Result<(), JsValue> {
        let mut events = self.handle.events().await.map_err(web_error)?;
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.next().await {
                if let Ok(value) = to_js(&event_json(&event)) {
                    let _ = listener.call1(&JsValue::NULL, &value);
                }
            }
        });
        Ok(())
    }

    /// Stops the peer and closes IndexedDB. Everything already resolved is stored.
    pub async fn close(&self) -> Result<(), JsValue> {
        self.handle.close().await.map_err(web_error)
    }
}

fn change_with_edits(
    node: &mut nexus_core::node::Node,
    vault: VaultId,
    doc: DocId,
    options: &nexus_core::ChangeOptions,
    edits: &Json,
) -> Result<(nexus_core::node::Output, Option<nexus_core::ChangeHash>), WebError> {
    let mut failure = None;
    let out = node.change_with(vault, doc, options, |tx| {
        nexus_core::json::apply_edits(tx, edits).map_err(|e| {
            failure = Some(e);
            nexus_core::automerge::AutomergeError::Fail
        })
    });
    match (out, failure) {
        (_, Some(edit)) => Err(WebError::Edit(edit)),
        (Ok(out), None) => Ok(out),
        (Err(e), None) => Err(e.into()),
    }
}

/// Heads given from JavaScript: an array of hex hashes, or null/undefined (`None`).
fn heads_from_js(
    what: &str,
    value: JsValue,
) -> Result<Option<Vec<nexus_core::ChangeHash>>, JsValue> {
    let heads: Vec<String> = match from_js(what, value)? {
        Json::Null => return Ok(None),
        value => serde_json::from_value(value)
            .map_err(|e| bad_argument(what, format!("must be an array of heads: {e}")))?,
    };
    heads
        .iter()
        .map(|h| parse::<nexus_core::ChangeHash>("head", h))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
