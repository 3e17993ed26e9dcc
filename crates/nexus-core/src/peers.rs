//! The persisted peer table and the reconnect schedule.
//!
//! A [`PeerRecord`] remembers, per device met: where it was reachable, when it was last
//! seen, how many connection attempts in a row failed, and per vault when it last synced
//! and the vault's reconciliation fingerprint then. [`Backoff`] turns failures into the
//! next retry delay: `base · 2^failures`, capped, plus jitter drawn by the caller (the
//! core draws no randomness), so that devices that lost the same relay do not all retry
//! at once.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::storage::{Batch, Storage, Table};

const VERSION: u64 = 1;
/// Most addresses remembered per peer.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address kept, in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;
const MAX_VAULTS: usize = 1024;

/// What this device remembers about another device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The device.
    pub device: DeviceId,
    /// Addresses it was reachable at (multiaddrs), most recent first.
    pub addresses: Vec<String>,
    /// When it was last connected (milliseconds since the Unix epoch).
    pub last_seen_ms: u64,
    /// Connection attempts that failed since the last success.
    pub failures: u32,
    /// Per vault: when the last sync finished, and the vault fingerprint then.
    pub last_synced: BTreeMap<VaultId, (u64, [u8; 16])>,
}

impl PeerRecord {
    /// A record for a device never connected yet.
    pub fn new(device: DeviceId) -> Self {
        Self {
            device,
            addresses: Vec::new(),
            last_seen_ms: 0,
            failures: 0,
            last_synced: BTreeMap::new(),
        }
    }

    /// Remembers an address (most recent first, bounded).
    pub fn add_address(&mut self, address: &str) {
        if address.len() > MAX_ADDRESS_LEN {
            return;
        }
        self.addresses.retain(|a| a != address);
        self.addresses.insert(0, address.to_owned());
        self.addresses.truncate(MAX_ADDRESSES);
    }

    /// The batch that stores this record.
    pub fn to_batch(&self) -> Batch {
        let mut w = Writer::new();
        w.varint(VERSION)
            .raw(self.device.public_key())
            .varint(self.last_seen_ms)
            .varint(self.failures.into())
            .len(self.addresses.len());
        for address in &self.addresses {
            w.str(address);
        }
        w.len(self.last_synced.len());
        for (vault, (at, fingerprint)) in &self.last_synced {
            w.raw(vault.as_bytes()).varint(*at).raw(fingerprint);
        }
        let mut batch = Batch::new();
        batch.put(Table::Peers, self.device.public_key().to_vec(), w.finish());
        batch
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("peer record version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "peer record",
                version,
                supported: VERSION,
            });
        }
        let device = DeviceId::from_public_key(r.array("peer device")?).map_err(|e| {
            DecodeError::Invalid {
                what: "peer device",
                reason: e.to_string(),
            }
        })?;
        let last_seen_ms = r.varint("peer last seen")?;
        let failures = u32::try_from(r.varint("peer failures")?).unwrap_or(u32::MAX);
        let n = r.count(MAX_ADDRESSES, 1, "peer addresses")?;
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            addresses.push(r.str(MAX_ADDRESS_LEN, "peer address")?.to_owned());
        }
        let n = r.count(MAX_VAULTS, 49, "peer vaults")?;
        let mut last_synced = BTreeMap::new();
        for _ in 0..n {
            let vault = VaultId(Hash(r.array("peer vault")?));
            let at = r.varint("peer sync time")?;
            last_synced.insert(vault, (at, r.array("peer fingerprint")?));
        }
        r.finish("peer record")?;
        Ok(Self {
            device,
            addresses,
            last_seen_ms,
            failures,
            last_synced,
        })
    }

    /// Every peer record in a store; unreadable records are skipped and counted.
    pub fn load_all<S: Storage>(store: &S) -> Result<(Vec<PeerRecord>, usize), S::Error> {
        let mut records = Vec::new();
        let mut unreadable = 0;
        for (_, value) in store.scan(Table::Peers, &[])? {
            match Self::decode(&value) {
                Ok(record) => records.push(record),
                Err(_) => unreadable += 1,
            }
        }
        Ok((records, unreadable))
    }
}

/// Exponential backoff with a cap: `base · 2^failures`, at most `cap`, plus jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (milliseconds).
    pub base_ms: u64,
    /// Longest delay (milliseconds).
    pub cap_ms: u64,
}

impl Backoff {
    /// Defaults: 1 s, doubling, capped at 5 minutes.
    pub fn new() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 300_000,
        }
    }

    /// The delay before retrying after `failures` failures in a row. `jitter` is any
    /// random number from the caller; up to half the delay is added from it.
    pub fn delay_ms(&self, failures: u32, jitter: u64) -> u64 {
        let exponent = failures.saturating_sub(1).min(32);
        let delay = self
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.cap_ms);
        delay + jitter % (delay / 2 + 1)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;
    use crate::storage::MemoryStore;

    #[test]
    fn peer_records_round_trip_through_storage() {
        let mut record = PeerRecord::new(DeviceKey::from_secret_bytes(&[1; 32]).device_id());
        for i in 0..20 {
            record.add_address(&format!("/ip4/127.0.0.1/tcp/{i}"));
        }
        record.add_address("/ip4/127.0.0.1/tcp/3");
        assert_eq!(record.addresses.len(), MAX_ADDRESSES);
        assert_eq!(record.addresses[0], "/ip4/127.0.0.1/tcp/3");
        record.last_seen_ms = 99;
        record.failures = 3;
        record
            .last_synced
            .insert(VaultId(Hash([4; 32])), (98, [5; 16]));
        let mut store = MemoryStore::new();
        store.commit(record.to_batch()).unwrap();
        let mut garbage = Batch::new();
        garbage.put(Table::Peers, vec![0], vec![1, 2, 3]);
        store.commit(garbage).unwrap();
        let (records, unreadable) = PeerRecord::load_all(&store).unwrap();
        assert_eq!(records, vec![record]);
        assert_eq!(unreadable, 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff::new();
        assert_eq!(backoff.delay_ms(1, 0), 1_000);
        assert_eq!(backoff.delay_ms(2, 0), 2_000);
        assert_eq!(backoff.delay_ms(5, 0), 16_000);
        assert_eq!(backoff.delay_ms(40, 0), 300_000);
        assert_eq!(
            backoff.delay_ms(u32::MAX, u64::MAX),
            300_000 + u64::MAX % 150_001
        );
        for jitter in [0, 1, 499, 500, 501, u64::MAX] {
            let d = backoff.delay_ms(1, jitter);
            assert!((1_000..=1_500).contains(&d), "{d}");
        }
    }
}
