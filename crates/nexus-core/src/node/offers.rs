//! Vaults offered to this device by an approval it never asked for: a member approved
//! this device's id and sent the vault's log. The vault is held aside, with no document
//! data and nothing stored, until the person accepts it ([`Node::accept_offer`]) or
//! declines it ([`Node::decline_offer`]): a stranger who makes a vault and approves us
//! cannot enrol us in it. At most [`MAX_OFFERS`] wait at a time; a new one pushes out the
//! oldest, and a declined vault is refused from then on. An approval the person expects
//! ([`Node::expect_offers_from`]: the device they told this one to connect to) is taken
//! in at once.

use std::collections::{BTreeSet, VecDeque};

use super::session::Phase;
use super::{Event, Node, Output, SessionId};
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::membership::Role;
use crate::storage::Batch;
use crate::vault::{Vault, VaultError};

/// Most vault offers waiting for an answer.
pub const MAX_OFFERS: usize = 8;
/// Most declined vaults remembered (the oldest is forgotten first).
pub const MAX_DECLINED: usize = 256;

/// A vault waiting for the person's answer.
#[derive(Debug, Clone)]
pub(super) struct Offer {
    pub(super) vault: Vault,
    /// The records that accepting it stores.
    pub(super) batch: Batch,
    pub(super) offered_by: DeviceId,
    pub(super) offered_at_ms: u64,
}

/// What a person is asked about an offered vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultOffer {
    /// The vault.
    pub vault: VaultId,
    /// Its name, as its log says.
    pub name: String,
    /// The role its log gives this device.
    pub role: Role,
    /// The member that sent it.
    pub offered_by: DeviceId,
    /// When it arrived (this device's clock, ms since the Unix epoch).
    pub offered_at_ms: u64,
}

/// Offers waiting, and vaults declined.
#[derive(Debug, Clone, Default)]
pub(super) struct Offers {
    waiting: VecDeque<Offer>,
    declined: VecDeque<VaultId>,
    /// Devices whose offers are taken in without asking.
    pub(super) expected_from: BTreeSet<DeviceId>,
}

impl Offers {
    pub(super) fn is_declined(&self, vault: &VaultId) -> bool {
        self.declined.contains(vault)
    }

    pub(super) fn is_waiting(&self, vault: &VaultId) -> bool {
        self.waiting.iter().any(|o| o.vault.id() == *vault)
    }

    /// Holds an offer aside; the oldest goes when [`MAX_OFFERS`] already wait. One offer
    /// per offering device: a new one from the same device replaces its last.
    pub(super) fn hold(&mut self, offer: Offer) {
        self.waiting
            .retain(|o| o.vault.id() != offer.vault.id() && o.offered_by != offer.offered_by);
        while self.waiting.len() >= MAX_OFFERS {
            self.waiting.pop_front();
        }
        self.waiting.push_back(offer);
    }

    /// Takes more of an offered vault's log into the held offer (a member's entries that
    /// arrive while the person has not answered: a revocation the first offerer left out).
    pub(super) fn add_entries(
        &mut self,
        vault: &VaultId,
        entries: Vec<crate::membership::SignedEntry>,
        received: crate::membership::Received,
    ) {
        if let Some(offer) = self.waiting.iter_mut().find(|o| o.vault.id() == *vault) {
            let ingested = offer.vault.ingest_entries(entries, received);
            offer.batch.extend(ingested.batch);
        }
    }

    /// Forgets an offer of a vault that was taken in another way (joined by invite, or
    /// offered again by an expected device).
    pub(super) fn forget(&mut self, vault: &VaultId) {
        self.take(vault);
    }

    fn take(&mut self, vault: &VaultId) -> Option<Offer> {
        let at = self.waiting.iter().position(|o| o.vault.id() == *vault)?;
        self.waiting.remove(at)
    }
}

impl Node {
    /// Takes in at once every vault `device` offers, without asking: the person named
    /// that device (a daemon told to dial it, say), so its approval is expected.
    /// A vault the person declined stays declined.
    pub fn expect_offers_from(&mut self, device: DeviceId) {
        self.offers.expected_from.insert(device);
    }

    /// The vaults offered to this device and waiting for an answer, oldest first.
    pub fn offers(&self) -> Vec<VaultOffer> {
        let me = self.device_id();
        self.offers
            .waiting
            .iter()
            .map(|o| VaultOffer {
                vault: o.vault.id(),
                name: o.vault.membership().name().to_owned(),
                role: o.vault.membership().role(&me).unwrap_or(Role::Member),
                offered_by: o.offered_by,
                offered_at_ms: o.offered_at_ms,
            })
            .collect()
    }

    /// Takes in an offered vault: it is stored and syncs from now on
    /// ([`Event::VaultJoined`]); a session that brought the offer and is still open
    /// starts syncing at once.
    pub fn accept_offer(&mut self, vault: VaultId, now_ms: u64) -> Result<Output, VaultError> {
        let offer = self
            .offers
            .take(&vault)
            .ok_or(VaultError::NotOffered { vault })?;
        if self.vaults.contains_key(&vault) {
            // Taken in meanwhile (joined by invite): what the offer held is older.
            return Ok(Output::default());
        }
        self.vaults.insert(vault, offer.vault);
        let mut out = Output {
            batch: offer.batch,
            ..Output::default()
        };
        out.events.push(Event::VaultJoined { vault });
        let waiting: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.vault == Some(vault) && s.phase == Phase::Membership)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.sent_entries = true;
                session.got_entries = true;
            }
            self.check_ready(id, now_ms, &mut out);
            // The peer was ready first and its reconciliation was dropped: reconcile
            // now rather than at its next interval.
            if self
                .sessions
                .get(&id)
                .is_some_and(|s| s.phase == Phase::Ready && !s.initiator && s.dropped_early)
            {
                self.send_root_reconcile(id, now_ms, &mut out);
            }
        }
        Ok(out)
    }

    /// Declines an offered vault: it is dropped, and refused if offered again. Declining a
    /// vault that is not waiting also refuses it from then on.
    pub fn decline_offer(&mut self, vault: VaultId) {
        self.offers.take(&vault);
        if !self.offers.is_declined(&vault) {
            if self.offers.declined.len() >= MAX_DECLINED {
                self.offers.declined.pop_front();
            }
            self.offers.declined.push_back(vault);
        }
    }
}
