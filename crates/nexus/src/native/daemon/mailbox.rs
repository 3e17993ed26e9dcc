//! Store-and-forward through a relay's mailbox for members who are offline.
//!
//! Once a second, for each vault whose documents moved since the last bundle, the peer
//! checks whether every other member is in a live session; if one is not, it leaves a
//! [`Bundle`] of the new changes (and the membership entries) at its first connected
//! relay, encrypted under the vault's current key in that key's mailbox. When the
//! membership changed, a key notice (the current key sealed to each member, recipients
//! left out: [`nexus_core::bundle::KeyNotice`]) also goes under the two previous keys, so
//! that a member who was offline during a rotation learns its new key, and a device
//! revoked since learns nothing. Every 30 seconds, and as
//! soon as a relay connection comes up, the peer lists the mailboxes of the keys it holds
//! and takes in the bundles it has not seen through [`Node::receive_bundle`], the same
//! checks as a peer's. On shutdown it waits (a few seconds at most) for bundles it is
//! still leaving.

use std::collections::{BTreeMap, HashMap, HashSet};

use libp2p::PeerId;
use nexus_core::bundle::{KeyNotice, MailboxItem};
use nexus_core::mailbox::{BundleId, MailboxRequest, MailboxResponse};
use nexus_core::sealing::{BUNDLE_OVERHEAD, VaultKey};
use nexus_core::{ChangeHash, DocId, Hash, VaultId, random_bytes};

use super::{EngineEvent, Internal, NativeEngine, now_ms};
use crate::native::mailbox_client::mailbox_request;

/// Largest bundle plaintext left at a relay: what a relay with default limits takes.
const DEPOSIT_MAX_PLAINTEXT: usize = 1024 * 1024 - BUNDLE_OVERHEAD;
/// How long a relay is asked to keep a bundle (it may keep it less).
const BUNDLE_TTL_SECS: u32 = 7 * 24 * 3600;
/// How often mailboxes are checked for bundles.
const FETCH_INTERVAL_MS: u64 = 30_000;
/// How soon a failed mailbox read, or a deposit whose stream failed, is tried again.
const FETCH_RETRY_MS: u64 = 2_000;
/// How long a vault waits after a failed deposit before trying again.
const RETRY_AFTER_FAILURE_MS: u64 = 30_000;
/// Mailboxes read per vault: the newest keys this device holds.
const KEYS_READ: usize = 3;
/// Keys learned from key notices and kept per vault until the log brings a newer one.
const MAX_NOTICE_KEYS: usize = 4;
/// Bundle ids remembered as seen before the memory is cleared.
const MAX_SEEN: usize = 100_000;

/// What a finished deposit reports back to the peer's loop.
pub(crate) struct Deposited {
    vault: VaultId,
    heads: BTreeMap<DocId, Vec<ChangeHash>>,
    log_heads: Vec<Hash>,
    changes: usize,
    bytes: usize,
    /// `Err((why, refused))`: `refused` when the relay said no (a limit), not when the
    /// stream failed (a connection that closed as it came up is tried again soon).
    result: Result<(), (String, bool)>,
}

/// What a finished mailbox read reports back.
pub(crate) struct Fetched {
    vault: VaultId,
    key: VaultKey,
    bundles: Vec<(BundleId, Vec<u8>)>,
    error: Option<String>,
}

/// The peer's mailbox state.
#[derive(Default)]
pub(super) struct Mailboxes {
    /// Per vault, per document, the heads as of the last bundle left (or of start-up).
    since: HashMap<VaultId, BTreeMap<DocId, Vec<ChangeHash>>>,
    /// Per vault, the membership heads as of the last entries-only bundle.
    log_since: HashMap<VaultId, Vec<Hash>>,
    /// Vaults with a deposit under way.
    depositing: HashSet<VaultId>,
    /// Vaults not to deposit for before a time (after a failure).
    retry_at: HashMap<VaultId, u64>,
    /// Mailbox reads under way.
    fetching: usize,
    last_fetch_ms: u64,
    /// Bundles already taken in (or left by this device).
    seen: HashSet<BundleId>,
    /// Per vault, keys learned from key notices and not yet in the log (the log's own
    /// copy comes in the bundles under them).
    notice_keys: HashMap<VaultId, Vec<VaultKey>>,
}

impl Mailboxes {
    /// Whether bundles are still being left (what shutdown waits for).
    pub(super) fn busy(&self) -> bool {
        !self.depositing.is_empty()
    }

    /// Reads the mailboxes at the next round.
    pub(super) fn fetch_soon(&mut self) {
        self.last_fetch_ms = 0;
    }
}

fn heads_of(peer: &NativeEngine, vault: &VaultId) -> BTreeMap<DocId, Vec<ChangeHash>> {
    peer.core
        .node
        .vault(vault)
        .map(|v| v.documents().map(|d| (d.id(), d.heads())).collect())
        .unwrap_or_default()
}

impl NativeEngine {
    /// Starts counting changes from what the vaults hold now: what was written before
    /// start-up reaches members by sync sessions.
    pub(super) fn init_mailboxes(&mut self) {
        let ids: Vec<VaultId> = self.core.node.vaults().map(|v| v.id()).collect();
        for vault in ids {
            let heads = heads_of(self, &vault);
            self.mailboxes.since.insert(vault, heads);
            let log = self.core.node.vault(&vault).map(|v| v.log().heads());
            self.mailboxes
                .log_since
                .insert(vault, log.unwrap_or_default());
        }
    }

    /// The relay whose mailbox this peer uses: the first connected one.
    fn mailbox_relay(&self) -> Option<PeerId> {
        let mut relays: Vec<PeerId> = self
            .relays
            .keys()
            .filter(|r| self.is_connected(r))
            .copied()
            .collect();
        relays.sort();
        relays.first().copied()
    }

    /// One round: leave bundles where members are offline, and read mailboxes when due.
    pub(super) fn mailbox_round(&mut self, now: u64) {
        let Some(relay) = self.mailbox_relay() else {
            return;
        };
        let ids: Vec<VaultId> = self.core.node.vaults().map(|v| v.id()).collect();
        for vault in &ids {
            self.deposit(relay, *vault, now);
        }
        if self.mailboxes.fetching == 0
            && now.saturating_sub(self.mailboxes.last_fetch_ms) >= FETCH_INTERVAL_MS
        {
            self.mailboxes.last_fetch_ms = now;
            for vault in ids {
                self.fetch(relay, vault);
            }
        }
    }

    fn deposit(&mut self, relay: PeerId, vault: VaultId, now: u64) {
        if self.mailboxes.depositing.contains(&vault)
            || self
                .mailboxes
                .retry_at
                .get(&vault)
                .is_some_and(|at| *at > now)
        {
            return;
        }
        let me = self.core.node.device_id();
        let Some(v) = self.core.node.vault(&vault) else {
            return;
        };
        if !v.membership().is_member(&me) {
            return;
        }
        let Some(since) = self.mailboxes.since.get(&vault) else {
            // A vault joined while running: its peers just gave it everything.
            let heads = heads_of(self, &vault);
            self.mailboxes.since.insert(vault, heads);
            return;
        };
        let Some(prepared) = self
            .core
            .node
            .bundle_since(&vault, since, DEPOSIT_MAX_PLAINTEXT)
        else {
            return;
        };
        let ready = self.core.node.ready_peers(&vault);
        let offline = v
            .membership()
            .members()
            .keys()
            .any(|d| *d != me && !ready.contains(d));
        let log_heads = v.log().heads();
        if !offline {
            // Everyone got the changes live.
            let entry = self.mailboxes.since.entry(vault).or_default();
            entry.extend(prepared.heads);
            self.mailboxes.log_since.insert(vault, log_heads);
            return;
        }
        for doc in &prepared.too_large {
            self.emit(EngineEvent::Problem(format!(
                "document {doc} changed by more than a relay bundle holds; it reaches offline members when they connect"
            )));
        }
        let keys = v.held_keys(self.core.node.key());
        let Some((current_hash, current)) = v.current_key(self.core.node.key()) else {
            return; // no key yet: an admin makes one
        };
        let mut puts: Vec<(BundleId, MailboxRequest)> = Vec::new();
        let id: BundleId = match random_bytes() {
            Ok(id) => id,
            Err(e) => {
                self.emit(EngineEvent::Problem(format!(
                    "no randomness for a bundle id: {e}"
                )));
                return;
            }
        };
        match prepared.bundle.seal(&current, &vault, &id) {
            Ok(bytes) => puts.push((
                id,
                MailboxRequest::put(&current.mailbox_writer(&vault), id, BUNDLE_TTL_SECS, bytes),
            )),
            Err(e) => {
                self.emit(EngineEvent::Problem(format!("sealing a bundle: {e}")));
                return;
            }
        }
        // Members who missed a rotation find their copy of the new key in the old mailbox;
        // nothing else is left there.
        if self.mailboxes.log_since.get(&vault) != Some(&log_heads)
            && let Some(notice) = v.key_notice()
        {
            for (_, key) in keys.iter().filter(|(h, _)| *h != current_hash).take(2) {
                if let Some(put) = seal_notice(&notice, key, &vault) {
                    puts.push(put);
                }
            }
        }
        let changes = prepared.bundle.change_count();
        let bytes: usize = puts
            .iter()
            .map(|(_, put)| match put {
                MailboxRequest::Put { bytes, .. } => bytes.len(),
                _ => 0,
            })
            .sum();
        for (id, _) in &puts {
            self.mailboxes.seen.insert(*id);
        }
        self.mailboxes.depositing.insert(vault);
        let mut control = self.core.control().clone();
        let tx = self.internal_tx.clone();
        let heads = prepared.heads;
        crate::rt::spawn(async move {
            let mut result = Ok(());
            for (_, request) in puts {
                match mailbox_request(&mut control, relay, &request).await {
                    Ok(MailboxResponse::Stored) => {}
                    Ok(MailboxResponse::Refused(why)) => {
                        result = Err((format!("relay {relay} refused a bundle: {why}"), true));
                        break;
                    }
                    Ok(other) => {
                        result =
                            Err((format!("relay {relay} answered a put with {other:?}"), true));
                        break;
                    }
                    Err(e) => {
                        result = Err((e.to_string(), false));
                        break;
                    }
                }
            }
            let _ = tx.send(Internal::Deposited(Box::new(Deposited {
                vault,
                heads,
                log_heads,
                changes,
                bytes,
                result,
            })));
        });
    }

    /// Reads the mailboxes of the newest keys this device holds for `vault`.
    fn fetch(&mut self, relay: PeerId, vault: VaultId) {
        let Some(v) = self.core.node.vault(&vault) else {
            return;
        };
        let mut keys: Vec<VaultKey> = v
            .held_keys(self.core.node.key())
            .into_iter()
            .take(KEYS_READ)
            .map(|(_, key)| key)
            .collect();
        let newest = keys.first().map(VaultKey::generation);
        if let Some(learned) = self.mailboxes.notice_keys.get_mut(&vault) {
            // A key the log now holds needs no notice any more.
            learned.retain(|k| newest.is_none_or(|n| k.generation() > n));
            keys.extend(learned.iter().cloned());
        }
        for key in keys {
            self.mailboxes.fetching += 1;
            let mailbox = key.mailbox_id(&vault);
            let seen = self.mailboxes.seen.clone();
            let mut control = self.core.control().clone();
            let tx = self.internal_tx.clone();
            crate::rt::spawn(async move {
                let mut bundles = Vec::new();
                let mut error = None;
                match mailbox_request(&mut control, relay, &MailboxRequest::List { mailbox }).await
                {
                    Ok(MailboxResponse::Listing(items)) => {
                        for item in items.iter().filter(|i| !seen.contains(&i.bundle)) {
                            let get = MailboxRequest::Get {
                                mailbox,
                                bundle: item.bundle,
                            };
                            match mailbox_request(&mut control, relay, &get).await {
                                Ok(MailboxResponse::Bundle(bytes)) => {
                                    bundles.push((item.bundle, bytes));
                                }
                                Ok(_) => {} // expired meanwhile
                                Err(e) => {
                                    error = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => error = Some(e.to_string()),
                }
                let _ = tx.send(Internal::Fetched(Box::new(Fetched {
                    vault,
                    key,
                    bundles,
                    error,
                })));
            });
        }
    }

    pub(super) fn on_deposited(&mut self, done: Deposited) {
        self.mailboxes.depositing.remove(&done.vault);
        match done.result {
            Ok(()) => {
                self.mailboxes
                    .since
                    .entry(done.vault)
                    .or_default()
                    .extend(done.heads);
                self.mailboxes.log_since.insert(done.vault, done.log_heads);
                self.emit(EngineEvent::MailboxLeft {
                    vault: done.vault,
                    changes: done.changes,
                    bytes: done.bytes,
                });
            }
            Err((e, refused)) => {
                // A refusal waits; a stream that failed (its connection closed as it came
                // up, say) is tried again shortly.
                let wait = if refused {
                    RETRY_AFTER_FAILURE_MS
                } else {
                    FETCH_RETRY_MS
                };
                self.mailboxes.retry_at.insert(done.vault, now_ms() + wait);
                self.emit(EngineEvent::Problem(format!(
                    "leaving changes at the relay for offline members: {e}"
                )));
            }
        }
    }

    pub(super) fn on_fetched(&mut self, fetched: Fetched) {
        self.mailboxes.fetching = self.mailboxes.fetching.saturating_sub(1);
        if let Some(e) = fetched.error {
            self.emit(EngineEvent::Problem(format!(
                "reading the relay mailbox: {e}"
            )));
            // A stream that failed as the connection came up: try again shortly.
            self.mailboxes.last_fetch_ms =
                now_ms().saturating_sub(FETCH_INTERVAL_MS - FETCH_RETRY_MS);
        }
        let vault = fetched.vault;
        let key = fetched.key;
        let keys_before = self.held_key_count(&vault);
        let mut learned = false;
        if self.mailboxes.seen.len() > MAX_SEEN {
            self.mailboxes.seen.clear();
        }
        let (mut bundles, mut changes) = (0, 0);
        for (id, bytes) in fetched.bundles {
            self.mailboxes.seen.insert(id);
            match MailboxItem::open(&bytes, &key, &vault, &id) {
                Ok(MailboxItem::Notice(notice)) => learned |= self.learn_key(vault, &notice),
                Ok(MailboxItem::Bundle(bundle)) => {
                    bundles += 1;
                    changes += bundle.change_count();
                    let out = self.core.node.receive_bundle(vault, bundle, now_ms());
                    if self.take_output(out).is_err() {
                        // Storage failed and the node reloaded: read the bundle again later.
                        self.mailboxes.seen.remove(&id);
                    }
                }
                Err(e) => self.emit(EngineEvent::Problem(format!(
                    "a bundle in the relay mailbox does not open: {e}"
                ))),
            }
        }
        if bundles > 0 {
            self.emit(EngineEvent::MailboxPickedUp {
                vault,
                bundles,
                changes,
            });
        }
        if learned || self.held_key_count(&vault) != keys_before {
            // A bundle or a notice brought a newer key: its mailbox may hold more.
            self.mailboxes.fetch_soon();
        }
    }

    /// Keeps the key a notice holds for this device, if it is newer than every key the
    /// log gives it. Returns whether it was new.
    fn learn_key(&mut self, vault: VaultId, notice: &KeyNotice) -> bool {
        let Some(key) = notice.open_for(&vault, self.core.node.key()) else {
            return false; // no copy for this device: it was revoked, or is new
        };
        let newest_held = self.core.node.vault(&vault).and_then(|v| {
            v.held_keys(self.core.node.key())
                .first()
                .map(|(_, k)| k.generation())
        });
        let learned = self.mailboxes.notice_keys.entry(vault).or_default();
        // At most a few, so that notices a revoked device writes under an old key (it
        // holds that key too) cost a bounded number of extra mailbox reads.
        if newest_held.is_some_and(|n| key.generation() <= n)
            || learned.iter().any(|k| k.generation() == key.generation())
            || learned.len() >= MAX_NOTICE_KEYS
        {
            return false;
        }
        learned.push(key);
        true
    }

    fn held_key_count(&self, vault: &VaultId) -> usize {
        self.core
            .node
            .vault(vault)
            .map_or(0, |v| v.held_keys(self.core.node.key()).len())
    }
}

fn seal_notice(
    notice: &KeyNotice,
    key: &VaultKey,
    vault: &VaultId,
) -> Option<(BundleId, MailboxRequest)> {
    let id: BundleId = random_bytes().ok()?;
    let bytes = notice.seal(key, vault, &id).ok()?;
    let put = MailboxRequest::put(&key.mailbox_writer(vault), id, BUNDLE_TTL_SECS, bytes);
    Some((id, put))
}
