//! The relay mailbox: store-and-forward of opaque, encrypted bundles (`/nexus/mailbox/1`).
//!
//! A device that has changes for a member who is offline leaves them at a relay as a
//! bundle encrypted with the vault key ([`crate::sealing::encrypt_bundle`]); the member
//! fetches it when it comes back, even if the writer is gone by then. The relay sees only
//! a mailbox id (32 opaque bytes, derived by members from the vault key), a bundle id,
//! sizes and times.
//!
//! This module is the protocol (requests and responses, each one frame) and the relay's
//! store ([`MailboxStore`]), sans-IO: limits on bundle size, space and bundles per
//! mailbox, number of mailboxes and a time to live, plus a per-writer rate limit so one
//! peer cannot flood the relay while others keep using it.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::identity::DeviceId;

/// The libp2p protocol name.
pub const MAILBOX_PROTOCOL: &str = "/nexus/mailbox/1";
const VERSION: u64 = 1;
/// Largest bundle accepted by the codec, whatever the store's limits.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
const MAX_LISTING: usize = 4096;
const MAX_REASON: usize = 1024;

/// A mailbox id: opaque to the relay.
pub type MailboxId = [u8; 32];
/// A bundle id, chosen by the writer.
pub type BundleId = [u8; 16];

/// What a device asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxRequest {
    /// Store a bundle.
    Put {
        /// Where.
        mailbox: MailboxId,
        /// Its id.
        bundle: BundleId,
        /// How long to keep it (seconds; the relay may cut it down).
        ttl_secs: u32,
        /// The encrypted bundle.
        bytes: Vec<u8>,
    },
    /// List a mailbox.
    List {
        /// Which.
        mailbox: MailboxId,
    },
    /// Fetch one bundle.
    Get {
        /// Where.
        mailbox: MailboxId,
        /// Which.
        bundle: BundleId,
    },
}

/// One listed bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Its id.
    pub bundle: BundleId,
    /// Its size in bytes.
    pub size: u32,
    /// When it was stored (milliseconds since the Unix epoch, relay clock).
    pub stored_at_ms: u64,
}

/// What the relay answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxResponse {
    /// The bundle was stored (or already was).
    Stored,
    /// The mailbox's bundles, oldest first.
    Listing(Vec<Listed>),
    /// The bundle asked for.
    Bundle(Vec<u8>),
    /// No such bundle (or mailbox).
    NotFound,
    /// Refused, with why (a limit).
    Refused(String),
}

impl MailboxRequest {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(VERSION);
        match self {
            MailboxRequest::Put {
                mailbox,
                bundle,
                ttl_secs,
                bytes,
            } => {
                w.u8(0)
                    .raw(mailbox)
                    .raw(bundle)
                    .varint((*ttl_secs).into())
                    .bytes(bytes);
            }
            MailboxRequest::List { mailbox } => {
                w.u8(1).raw(mailbox);
            }
            MailboxRequest::Get { mailbox, bundle } => {
                w.u8(2).raw(mailbox).raw(bundle);
            }
        }
        w.finish()
    }

    /// Reads [`MailboxRequest::encode`]'s output; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("mailbox request version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "mailbox request",
                version,
                supported: VERSION,
            });
        }
        let request = match r.u8("mailbox request")? {
            0 => MailboxRequest::Put {
                mailbox: r.array("mailbox id")?,
                bundle: r.array("bundle id")?,
                ttl_secs: u32::try_from(r.varint("bundle ttl")?).unwrap_or(u32::MAX),
                bytes: r.bytes(MAX_BUNDLE_BYTES, "bundle")?.to_vec(),
            },
            1 => MailboxRequest::List {
                mailbox: r.array("mailbox id")?,
            },
            2 => MailboxRequest::Get {
                mailbox: r.array("mailbox id")?,
                bundle: r.array("bundle id")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "mailbox request",
                    tag: tag.into(),
                });
            }
        };
        r.finish("mailbox request")?;
        Ok(request)
    }
}

impl MailboxResponse {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(VERSION);
        match self {
            MailboxResponse::Stored => {
                w.u8(0);
            }
            MailboxResponse::Listing(items) => {
                w.u8(1).len(items.len());
                for item in items {
                    w.raw(&item.bundle)
                        .varint(item.size.into())
                        .varint(item.stored_at_ms);
                }
            }
            MailboxResponse::Bundle(bytes) => {
                w.u8(2).bytes(bytes);
            }
            MailboxResponse::NotFound => {
                w.u8(3);
            }
            MailboxResponse::Refused(reason) => {
                let mut cut = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                w.u8(4).str(&reason[..cut]);
            }
        }
        w.finish()
    }

    /// Reads [`MailboxResponse::encode`]'s output; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.varint("mailbox response version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "mailbox response",
                version,
                supported: VERSION,
            });
        }
        let response = match r.u8("mailbox response")? {
            0 => MailboxResponse::Stored,
            1 => {
                let n = r.count(MAX_LISTING, 18, "mailbox listing")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Listed {
                        bundle: r.array("bundle id")?,
                        size: u32::try_from(r.varint("bundle size")?).unwrap_or(u32::MAX),
                        stored_at_ms: r.varint("bundle time")?,
                    });
                }
                MailboxResponse::Listing(items)
            }
            2 => MailboxResponse::Bundle(r.bytes(MAX_BUNDLE_BYTES, "bundle")?.to_vec()),
            3 => MailboxResponse::NotFound,
            4 => MailboxResponse::Refused(r.str(MAX_REASON, "refusal reason")?.to_owned()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "mailbox response",
                    tag: tag.into(),
                });
            }
        };
        r.finish("mailbox response")?;
        Ok(response)
    }
}

/// The relay's mailbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Largest bundle.
    pub max_bundle_bytes: usize,
    /// Space per mailbox (one mailbox per vault and key generation).
    pub max_bytes_per_mailbox: usize,
    /// Bundles per mailbox.
    pub max_bundles_per_mailbox: usize,
    /// Mailboxes in all.
    pub max_mailboxes: usize,
    /// Longest time a bundle is kept (seconds).
    pub max_ttl_secs: u32,
    /// Puts one writer may make in a burst; then one more every `refill_ms`.
    pub put_burst_per_writer: u32,
    /// How often a writer earns one more put (milliseconds).
    pub put_refill_ms: u64,
}

impl Default for MailboxLimits {
    /// 1 MiB bundles, 64 MiB and 1,024 bundles per mailbox, 1,024 mailboxes, kept up to
    /// 30 days; 60 puts in a burst per writer, then one a second.
    fn default() -> Self {
        Self {
            max_bundle_bytes: 1024 * 1024,
            max_bytes_per_mailbox: 64 * 1024 * 1024,
            max_bundles_per_mailbox: 1024,
            max_mailboxes: 1024,
            max_ttl_secs: 30 * 24 * 3600,
            put_burst_per_writer: 60,
            put_refill_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    bundle: BundleId,
    bytes: Vec<u8>,
    stored_at_ms: u64,
    expires_at_ms: u64,
}

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MailboxRefusal {
    /// The bundle is over the size limit.
    #[error("bundle of {size} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The mailbox has no room left.
    #[error("the mailbox is full ({bundles} bundles, {bytes} bytes)")]
    MailboxFull {
        /// Bundles held.
        bundles: usize,
        /// Bytes held.
        bytes: usize,
    },
    /// The relay holds as many mailboxes as it may.
    #[error("this relay holds its limit of {0} mailboxes")]
    TooManyMailboxes(usize),
    /// The writer is putting too fast.
    #[error("too many bundles from this device; try again later")]
    RateLimited,
}

/// The relay's mailboxes, in memory.
#[derive(Debug, Default)]
pub struct MailboxStore {
    limits: MailboxLimits,
    mailboxes: HashMap<MailboxId, Vec<Stored>>,
    /// Per writer: tokens left and when they were last topped up.
    buckets: BTreeMap<DeviceId, (u32, u64)>,
}

impl MailboxStore {
    /// An empty store with these limits.
    pub fn new(limits: MailboxLimits) -> Self {
        Self {
            limits,
            mailboxes: HashMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.mailboxes
            .values()
            .flatten()
            .map(|s| s.bytes.len())
            .sum()
    }

    /// Bundles held in all.
    pub fn bundles(&self) -> usize {
        self.mailboxes.values().map(Vec::len).sum()
    }

    /// Drops expired bundles and empty mailboxes.
    pub fn expire(&mut self, now_ms: u64) {
        for bundles in self.mailboxes.values_mut() {
            bundles.retain(|s| s.expires_at_ms > now_ms);
        }
        self.mailboxes.retain(|_, bundles| !bundles.is_empty());
    }

    fn take_token(&mut self, writer: DeviceId, now_ms: u64) -> bool {
        let limits = self.limits;
        let (tokens, since) = self
            .buckets
            .entry(writer)
            .or_insert((limits.put_burst_per_writer, now_ms));
        if let Some(earned) = now_ms
            .saturating_sub(*since)
            .checked_div(limits.put_refill_ms)
            && earned > 0
        {
            *tokens = tokens
                .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                .min(limits.put_burst_per_writer);
            *since = now_ms;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }

    fn put(
        &mut self,
        writer: DeviceId,
        mailbox: MailboxId,
        bundle: BundleId,
        ttl_secs: u32,
        bytes: Vec<u8>,
        now_ms: u64,
    ) -> Result<(), MailboxRefusal> {
        let limits = self.limits;
        if bytes.len() > limits.max_bundle_bytes {
            return Err(MailboxRefusal::TooLarge {
                size: bytes.len(),
                max: limits.max_bundle_bytes,
            });
        }
        if !self.take_token(writer, now_ms) {
            return Err(MailboxRefusal::RateLimited);
        }
        if !self.mailboxes.contains_key(&mailbox) && self.mailboxes.len() >= limits.max_mailboxes {
            return Err(MailboxRefusal::TooManyMailboxes(limits.max_mailboxes));
        }
        let held = self.mailboxes.entry(mailbox).or_default();
        if held.iter().any(|s| s.bundle == bundle) {
            return Ok(()); // a retry of a put that landed
        }
        let used: usize = held.iter().map(|s| s.bytes.len()).sum();
        if held.len() >= limits.max_bundles_per_mailbox
            || used + bytes.len() > limits.max_bytes_per_mailbox
        {
            let full = MailboxRefusal::MailboxFull {
                bundles: held.len(),
                bytes: used,
            };
            if held.is_empty() {
                self.mailboxes.remove(&mailbox);
            }
            return Err(full);
        }
        let ttl_ms = u64::from(ttl_secs.min(limits.max_ttl_secs)) * 1000;
        held.push(Stored {
            bundle,
            bytes,
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        });
        Ok(())
    }

    /// Answers one request from `writer` (the Noise-authenticated peer).
    pub fn handle(
        &mut self,
        writer: DeviceId,
        request: MailboxRequest,
        now_ms: u64,
    ) -> MailboxResponse {
        self.expire(now_ms);
        match request {
            MailboxRequest::Put {
                mailbox,
                bundle,
                ttl_secs,
                bytes,
            } => match self.put(writer, mailbox, bundle, ttl_secs, bytes, now_ms) {
                Ok(()) => MailboxResponse::Stored,
                Err(refusal) => MailboxResponse::Refused(refusal.to_string()),
            },
            MailboxRequest::List { mailbox } => MailboxResponse::Listing(
                self.mailboxes
                    .get(&mailbox)
                    .map(|held| {
                        held.iter()
                            .take(MAX_LISTING)
                            .map(|s| Listed {
                                bundle: s.bundle,
                                size: u32::try_from(s.bytes.len()).unwrap_or(u32::MAX),
                                stored_at_ms: s.stored_at_ms,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            MailboxRequest::Get { mailbox, bundle } => self
                .mailboxes
                .get(&mailbox)
                .and_then(|held| held.iter().find(|s| s.bundle == bundle))
                .map_or(MailboxResponse::NotFound, |s| {
                    MailboxResponse::Bundle(s.bytes.clone())
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    fn writer(n: u8) -> DeviceId {
        DeviceKey::from_secret_bytes(&[n; 32]).device_id()
    }

    fn put(mailbox: u8, bundle: u8, size: usize) -> MailboxRequest {
        MailboxRequest::Put {
            mailbox: [mailbox; 32],
            bundle: [bundle; 16],
            ttl_secs: 60,
            bytes: vec![bundle; size],
        }
    }

    #[test]
    fn requests_and_responses_round_trip_and_garbage_is_an_error() {
        for request in [
            put(1, 2, 10),
            MailboxRequest::List { mailbox: [3; 32] },
            MailboxRequest::Get {
                mailbox: [3; 32],
                bundle: [4; 16],
            },
        ] {
            assert_eq!(MailboxRequest::decode(&request.encode()).unwrap(), request);
        }
        for response in [
            MailboxResponse::Stored,
            MailboxResponse::Listing(vec![Listed {
                bundle: [1; 16],
                size: 5,
                stored_at_ms: 9,
            }]),
            MailboxResponse::Bundle(vec![1, 2, 3]),
            MailboxResponse::NotFound,
            MailboxResponse::Refused("full".into()),
        ] {
            assert_eq!(
                MailboxResponse::decode(&response.encode()).unwrap(),
                response
            );
        }
        assert!(MailboxRequest::decode(&[]).is_err());
        assert!(MailboxRequest::decode(&[1, 9]).is_err());
        assert!(MailboxResponse::decode(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn a_bundle_left_by_one_device_is_listed_and_fetched_by_another_until_it_expires() {
        let mut store = MailboxStore::new(MailboxLimits::default());
        assert_eq!(
            store.handle(writer(1), put(1, 7, 100), 1_000),
            MailboxResponse::Stored
        );
        // A retry of the same put is harmless.
        assert_eq!(
            store.handle(writer(1), put(1, 7, 100), 1_001),
            MailboxResponse::Stored
        );
        let listing = store.handle(writer(2), MailboxRequest::List { mailbox: [1; 32] }, 2_000);
        assert_eq!(
            listing,
            MailboxResponse::Listing(vec![Listed {
                bundle: [7; 16],
                size: 100,
                stored_at_ms: 1_000
            }])
        );
        let get = MailboxRequest::Get {
            mailbox: [1; 32],
            bundle: [7; 16],
        };
        assert_eq!(
            store.handle(writer(2), get.clone(), 2_000),
            MailboxResponse::Bundle(vec![7; 100])
        );
        // After its 60 s time to live, gone.
        assert_eq!(
            store.handle(writer(2), get, 61_001),
            MailboxResponse::NotFound
        );
        assert_eq!(store.bundles(), 0);
    }

    #[test]
    fn limits_refuse_what_is_over_them_and_a_flooding_writer_does_not_block_others() {
        let limits = MailboxLimits {
            max_bundle_bytes: 1_000,
            max_bytes_per_mailbox: 2_500,
            max_bundles_per_mailbox: 10,
            max_mailboxes: 2,
            put_burst_per_writer: 4,
            put_refill_ms: 1_000,
            ..MailboxLimits::default()
        };
        let mut store = MailboxStore::new(limits);
        let refused = |r: MailboxResponse| matches!(r, MailboxResponse::Refused(_));
        assert!(refused(store.handle(writer(1), put(1, 1, 1_001), 0)));
        assert_eq!(
            store.handle(writer(1), put(1, 1, 1_000), 0),
            MailboxResponse::Stored
        );
        assert_eq!(
            store.handle(writer(1), put(1, 2, 1_000), 0),
            MailboxResponse::Stored
        );
        // The mailbox's space is used up.
        assert!(refused(store.handle(writer(1), put(1, 3, 1_000), 0)));
        assert_eq!(
            store.handle(writer(1), put(2, 1, 10), 0),
            MailboxResponse::Stored
        );
        // A third mailbox is one too many.
        assert!(refused(store.handle(writer(2), put(3, 1, 10), 0)));
        // Writer 1 has used its burst of 4 (refused puts count too, all but the oversized
        // one): refused, while writer 3 still gets through.
        assert!(refused(store.handle(writer(1), put(2, 2, 10), 0)));
        assert_eq!(
            store.handle(writer(3), put(2, 3, 10), 0),
            MailboxResponse::Stored
        );
        // A second later writer 1 has earned one more put.
        assert_eq!(
            store.handle(writer(1), put(2, 4, 10), 1_000),
            MailboxResponse::Stored
        );
        assert_eq!(store.bundles(), 5);
        assert_eq!(store.bytes(), 2_030);
    }
}
