//! The relay mailbox: store-and-forward of opaque, encrypted bundles (`/nexus/mailbox/2`).
//!
//! A device that has changes for a member who is offline leaves them at a relay as a
//! bundle encrypted with the vault key ([`crate::sealing::encrypt_bundle`]); the member
//! fetches it when it comes back, even if the writer is gone by then. The relay sees only
//! a mailbox id (32 opaque bytes, derived by members from the vault key), a bundle id,
//! sizes and times.
//!
//! **Write capability.** A mailbox is named by its write key: its id is a hash of the
//! key's public half ([`mailbox_of`]), and every put is signed by that key
//! ([`MailboxRequest::put`]). Members derive the key from the vault key
//! ([`crate::sealing::VaultKey::mailbox_writer`]), so only they can put into a vault's
//! mailbox: a stranger or a device revoked before the key was made cannot fill it or
//! plant bundles in it. Anyone can still open mailboxes of its own; what bounds them is
//! below.
//!
//! This module is the protocol (requests and responses, each one frame) and the relay's
//! store ([`MailboxStore`]), sans-IO: limits on bundle size, space and bundles per
//! mailbox, number of mailboxes and a time to live; a global byte cap (the oldest bundles
//! are evicted to make room); per writer and per IP address a rate limit, and per IP
//! address a share of the space and of the mailboxes, so a flood from many writer ids
//! behind one address (a Sybil) cannot crowd anyone else out. Idle rate-limit entries
//! are pruned.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey, Signature};

/// The libp2p protocol name.
pub const MAILBOX_PROTOCOL: &str = "/nexus/mailbox/2";
const VERSION: u64 = 2;
const MAILBOX_OF_DOMAIN: &[u8] = b"nexus/mailbox-of/v1";
const PUT_DOMAIN: &[u8] = b"nexus/mailbox-put/v1";
/// Largest bundle accepted by the codec, whatever the store's limits.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
const MAX_LISTING: usize = 4096;
const MAX_REASON: usize = 1024;

/// A mailbox id: opaque to the relay.
pub type MailboxId = [u8; 32];
/// A bundle id, chosen by the writer.
pub type BundleId = [u8; 16];

/// The mailbox whose write key is `writer`.
pub fn mailbox_of(writer: &DeviceId) -> MailboxId {
    Hash::of(&[MAILBOX_OF_DOMAIN, writer.public_key()]).0
}

/// What a put's signature covers: the mailbox, the bundle id, the time to live and the
/// bundle's hash.
fn put_message(mailbox: &MailboxId, bundle: &BundleId, ttl_secs: u32, bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(PUT_DOMAIN.len() + 32 + 16 + 4 + 32);
    message.extend_from_slice(PUT_DOMAIN);
    message.extend_from_slice(mailbox);
    message.extend_from_slice(bundle);
    message.extend_from_slice(&ttl_secs.to_be_bytes());
    message.extend_from_slice(&Hash::of(&[bytes]).0);
    message
}

/// What a device asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxRequest {
    /// Store a bundle.
    Put {
        /// Where: [`mailbox_of`] the write key.
        mailbox: MailboxId,
        /// Its id.
        bundle: BundleId,
        /// How long to keep it (seconds; the relay may cut it down).
        ttl_secs: u32,
        /// The encrypted bundle.
        bytes: Vec<u8>,
        /// The mailbox's write key (public half).
        writer: DeviceId,
        /// The write key's signature over the rest.
        signature: Signature,
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
    /// A put into the mailbox of `writer` (a mailbox write key), signed by it.
    pub fn put(writer: &DeviceKey, bundle: BundleId, ttl_secs: u32, bytes: Vec<u8>) -> Self {
        let id = writer.device_id();
        let mailbox = mailbox_of(&id);
        let signature = writer.sign(&put_message(&mailbox, &bundle, ttl_secs, &bytes));
        MailboxRequest::Put {
            mailbox,
            bundle,
            ttl_secs,
            bytes,
            writer: id,
            signature,
        }
    }

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
                writer,
                signature,
            } => {
                w.u8(0)
                    .raw(mailbox)
                    .raw(bundle)
                    .varint((*ttl_secs).into())
                    .bytes(bytes)
                    .raw(writer.public_key())
                    .raw(&signature.0);
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
                writer: DeviceId::from_public_key(r.array("mailbox write key")?).map_err(|e| {
                    DecodeError::Invalid {
                        what: "mailbox write key",
                        reason: e.to_string(),
                    }
                })?,
                signature: Signature(r.array("mailbox put signature")?),
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
    /// Bytes held in all mailboxes; the oldest bundles are evicted to make room.
    pub max_total_bytes: usize,
    /// Longest time a bundle is kept (seconds).
    pub max_ttl_secs: u32,
    /// Puts one writer may make in a burst; then one more every `refill_ms`.
    pub put_burst_per_writer: u32,
    /// Puts one IP address may make in a burst (all its writers together).
    pub put_burst_per_ip: u32,
    /// How often a writer or address earns one more put (milliseconds).
    pub put_refill_ms: u64,
    /// Bytes the bundles put from one IP address may hold.
    pub max_bytes_per_ip: usize,
    /// Mailboxes one IP address may open.
    pub max_mailboxes_per_ip: usize,
}

impl Default for MailboxLimits {
    /// 1 MiB bundles, 64 MiB and 1,024 bundles per mailbox, 1,024 mailboxes and 512 MiB
    /// in all, kept up to 30 days; 60 puts in a burst per writer and 240 per IP address,
    /// then one a second; 64 MiB and 64 mailboxes per IP address.
    fn default() -> Self {
        Self {
            max_bundle_bytes: 1024 * 1024,
            max_bytes_per_mailbox: 64 * 1024 * 1024,
            max_bundles_per_mailbox: 1024,
            max_mailboxes: 1024,
            max_total_bytes: 512 * 1024 * 1024,
            max_ttl_secs: 30 * 24 * 3600,
            put_burst_per_writer: 60,
            put_burst_per_ip: 240,
            put_refill_ms: 1_000,
            max_bytes_per_ip: 64 * 1024 * 1024,
            max_mailboxes_per_ip: 64,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    bundle: BundleId,
    bytes: Vec<u8>,
    stored_at_ms: u64,
    expires_at_ms: u64,
    /// The address it was put from.
    ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct Mailbox {
    bundles: Vec<Stored>,
    /// The address that opened it (its first put).
    opened_by: Option<IpAddr>,
}

/// Tokens left, and when they were last topped up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    since_ms: u64,
}

impl Bucket {
    /// Takes a token, topping up first; `false` when none is left.
    fn take(&mut self, burst: u32, refill_ms: u64, now_ms: u64) -> bool {
        if let Some(earned) = now_ms.saturating_sub(self.since_ms).checked_div(refill_ms)
            && earned > 0
        {
            self.tokens = self
                .tokens
                .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                .min(burst);
            self.since_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Whether it would be full by now, so that forgetting it changes nothing.
    fn refilled(&self, burst: u32, refill_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) >= u64::from(burst).saturating_mul(refill_ms)
    }
}

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MailboxRefusal {
    /// The put is not signed by the mailbox's write key.
    #[error("the put is not signed by the mailbox's write key")]
    NoCapability,
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
    /// The writer's address holds its share of the relay's space or mailboxes.
    #[error("this address holds its share of the relay's mailboxes ({0})")]
    AddressFull(&'static str),
    /// The writer, or its address, is putting too fast.
    #[error("too many bundles from this device or address; try again later")]
    RateLimited,
}

impl MailboxRefusal {
    /// A short name of the reason, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            MailboxRefusal::NoCapability => "no_capability",
            MailboxRefusal::TooLarge { .. } => "too_large",
            MailboxRefusal::MailboxFull { .. } => "mailbox_full",
            MailboxRefusal::TooManyMailboxes(_) => "too_many_mailboxes",
            MailboxRefusal::AddressFull(_) => "address_full",
            MailboxRefusal::RateLimited => "rate_limited",
        }
    }
}

/// The relay's mailboxes, in memory.
#[derive(Debug, Default)]
pub struct MailboxStore {
    limits: MailboxLimits,
    mailboxes: HashMap<MailboxId, Mailbox>,
    writer_buckets: HashMap<DeviceId, Bucket>,
    ip_buckets: HashMap<IpAddr, Bucket>,
    total_bytes: usize,
    ip_bytes: HashMap<IpAddr, usize>,
    ip_mailboxes: HashMap<IpAddr, usize>,
    evicted: u64,
    refused: BTreeMap<&'static str, u64>,
}

impl MailboxStore {
    /// An empty store with these limits.
    pub fn new(limits: MailboxLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bundles held in all.
    pub fn bundles(&self) -> usize {
        self.mailboxes.values().map(|m| m.bundles.len()).sum()
    }

    /// Bundles evicted so far to make room under the global byte cap.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Puts refused so far, by reason ([`MailboxRefusal::reason`]).
    pub fn refused(&self) -> &BTreeMap<&'static str, u64> {
        &self.refused
    }

    /// Rate-limit entries held (pruned once idle): what a flood of writer ids costs.
    pub fn tracked_writers(&self) -> usize {
        self.writer_buckets.len() + self.ip_buckets.len()
    }

    /// Drops expired bundles, empty mailboxes and idle rate-limit entries.
    pub fn expire(&mut self, now_ms: u64) {
        let ids: Vec<MailboxId> = self.mailboxes.keys().copied().collect();
        for id in ids {
            self.remove_where(&id, |s| s.expires_at_ms <= now_ms);
        }
        let l = self.limits;
        self.writer_buckets
            .retain(|_, b| !b.refilled(l.put_burst_per_writer, l.put_refill_ms, now_ms));
        self.ip_buckets
            .retain(|_, b| !b.refilled(l.put_burst_per_ip, l.put_refill_ms, now_ms));
    }

    /// Removes the bundles of `mailbox` that `gone` picks, keeping the counts, and the
    /// mailbox once it is empty.
    fn remove_where(&mut self, mailbox: &MailboxId, gone: impl Fn(&Stored) -> bool) {
        let Some(held) = self.mailboxes.get_mut(mailbox) else {
            return;
        };
        let (removed, kept): (Vec<Stored>, Vec<Stored>) = std::mem::take(&mut held.bundles)
            .into_iter()
            .partition(gone);
        held.bundles = kept;
        let empty = held.bundles.is_empty();
        let opened_by = held.opened_by;
        for stored in removed {
            self.total_bytes -= stored.bytes.len();
            if let Some(ip) = stored.ip
                && let Some(bytes) = self.ip_bytes.get_mut(&ip)
            {
                *bytes = bytes.saturating_sub(stored.bytes.len());
                if *bytes == 0 {
                    self.ip_bytes.remove(&ip);
                }
            }
        }
        if empty {
            self.mailboxes.remove(mailbox);
            if let Some(ip) = opened_by
                && let Some(count) = self.ip_mailboxes.get_mut(&ip)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.ip_mailboxes.remove(&ip);
                }
            }
        }
    }

    /// Evicts the oldest bundles until `incoming` more bytes fit under the global cap.
    fn make_room(&mut self, incoming: usize) {
        while self.total_bytes + incoming > self.limits.max_total_bytes {
            let oldest = self
                .mailboxes
                .iter()
                .filter_map(|(id, m)| {
                    m.bundles
                        .iter()
                        .map(|s| (s.stored_at_ms, s.bundle))
                        .min()
                        .map(|(at, bundle)| (at, *id, bundle))
                })
                .min();
            let Some((_, mailbox, bundle)) = oldest else {
                return;
            };
            self.remove_where(&mailbox, |s| s.bundle == bundle);
            self.evicted += 1;
        }
    }

    fn put(
        &mut self,
        sender: DeviceId,
        ip: Option<IpAddr>,
        put: Put,
        now_ms: u64,
    ) -> Result<(), MailboxRefusal> {
        let limits = self.limits;
        let Put {
            mailbox,
            bundle,
            ttl_secs,
            bytes,
            writer,
            signature,
        } = put;
        if bytes.len() > limits.max_bundle_bytes {
            return Err(MailboxRefusal::TooLarge {
                size: bytes.len(),
                max: limits.max_bundle_bytes,
            });
        }
        if mailbox != mailbox_of(&writer)
            || !writer.verifies(
                &put_message(&mailbox, &bundle, ttl_secs, &bytes),
                &signature,
            )
        {
            return Err(MailboxRefusal::NoCapability);
        }
        let writer_ok = self
            .writer_buckets
            .entry(sender)
            .or_insert(Bucket {
                tokens: limits.put_burst_per_writer,
                since_ms: now_ms,
            })
            .take(limits.put_burst_per_writer, limits.put_refill_ms, now_ms);
        let ip_ok = ip.is_none_or(|ip| {
            self.ip_buckets
                .entry(ip)
                .or_insert(Bucket {
                    tokens: limits.put_burst_per_ip,
                    since_ms: now_ms,
                })
                .take(limits.put_burst_per_ip, limits.put_refill_ms, now_ms)
        });
        if !writer_ok || !ip_ok {
            return Err(MailboxRefusal::RateLimited);
        }
        let exists = self.mailboxes.contains_key(&mailbox);
        if let Some(held) = self.mailboxes.get(&mailbox)
            && held.bundles.iter().any(|s| s.bundle == bundle)
        {
            return Ok(()); // a retry of a put that landed
        }
        if !exists {
            if self.mailboxes.len() >= limits.max_mailboxes {
                return Err(MailboxRefusal::TooManyMailboxes(limits.max_mailboxes));
            }
            if let Some(ip) = ip
                && self.ip_mailboxes.get(&ip).copied().unwrap_or(0) >= limits.max_mailboxes_per_ip
            {
                return Err(MailboxRefusal::AddressFull("mailboxes"));
            }
        }
        if let Some(ip) = ip
            && self.ip_bytes.get(&ip).copied().unwrap_or(0) + bytes.len() > limits.max_bytes_per_ip
        {
            return Err(MailboxRefusal::AddressFull("space"));
        }
        if let Some(held) = self.mailboxes.get(&mailbox) {
            let used: usize = held.bundles.iter().map(|s| s.bytes.len()).sum();
            if held.bundles.len() >= limits.max_bundles_per_mailbox
                || used + bytes.len() > limits.max_bytes_per_mailbox
            {
                return Err(MailboxRefusal::MailboxFull {
                    bundles: held.bundles.len(),
                    bytes: used,
                });
            }
        }
        self.make_room(bytes.len());
        let held = self.mailboxes.entry(mailbox).or_insert_with(|| Mailbox {
            bundles: Vec::new(),
            opened_by: ip,
        });
        if held.bundles.is_empty()
            && let Some(ip) = held.opened_by
        {
            *self.ip_mailboxes.entry(ip).or_default() += 1;
        }
        let ttl_ms = u64::from(ttl_secs.min(limits.max_ttl_secs)) * 1000;
        self.total_bytes += bytes.len();
        if let Some(ip) = ip {
            *self.ip_bytes.entry(ip).or_default() += bytes.len();
        }
        held.bundles.push(Stored {
            bundle,
            bytes,
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            ip,
        });
        Ok(())
    }

    /// Answers one request from `sender` (the Noise-authenticated peer), connected from
    /// `ip` (`None` when not known: no per-address limit applies).
    pub fn handle(
        &mut self,
        sender: DeviceId,
        ip: Option<IpAddr>,
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
                writer,
                signature,
            } => {
                let put = Put {
                    mailbox,
                    bundle,
                    ttl_secs,
                    bytes,
                    writer,
                    signature,
                };
                match self.put(sender, ip, put, now_ms) {
                    Ok(()) => MailboxResponse::Stored,
                    Err(refusal) => {
                        *self.refused.entry(refusal.reason()).or_default() += 1;
                        MailboxResponse::Refused(refusal.to_string())
                    }
                }
            }
            MailboxRequest::List { mailbox } => MailboxResponse::Listing(
                self.mailboxes
                    .get(&mailbox)
                    .map(|held| {
                        held.bundles
                            .iter()
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
                .and_then(|held| held.bundles.iter().find(|s| s.bundle == bundle))
                .map_or(MailboxResponse::NotFound, |s| {
                    MailboxResponse::Bundle(s.bytes.clone())
                }),
        }
    }
}

/// The fields of a put, as the store checks them.
struct Put {
    mailbox: MailboxId,
    bundle: BundleId,
    ttl_secs: u32,
    bytes: Vec<u8>,
    writer: DeviceId,
    signature: Signature,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(n: u8) -> DeviceId {
        DeviceKey::from_secret_bytes(&[n; 32]).device_id()
    }

    /// The write key of test mailbox `n`.
    fn write_key(n: u8) -> DeviceKey {
        DeviceKey::from_secret_bytes(&[n.wrapping_add(100); 32])
    }

    fn mailbox(n: u8) -> MailboxId {
        mailbox_of(&write_key(n).device_id())
    }

    fn put(mailbox: u8, bundle: u8, size: usize) -> MailboxRequest {
        MailboxRequest::put(&write_key(mailbox), [bundle; 16], 60, vec![bundle; size])
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn refused(r: &MailboxResponse) -> bool {
        matches!(r, MailboxResponse::Refused(_))
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
        assert!(MailboxRequest::decode(&[2, 9]).is_err());
        assert!(MailboxResponse::decode(&[2, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        // A put of the old version is refused by its version, never misread.
        assert!(MailboxRequest::decode(&[1, 1, 0]).is_err());
    }

    #[test]
    fn a_bundle_left_by_one_device_is_listed_and_fetched_by_another_until_it_expires() {
        let mut store = MailboxStore::new(MailboxLimits::default());
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 7, 100), 1_000),
            MailboxResponse::Stored
        );
        // A retry of the same put is harmless.
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 7, 100), 1_001),
            MailboxResponse::Stored
        );
        let list = MailboxRequest::List {
            mailbox: mailbox(1),
        };
        assert_eq!(
            store.handle(writer(2), ip(2), list, 2_000),
            MailboxResponse::Listing(vec![Listed {
                bundle: [7; 16],
                size: 100,
                stored_at_ms: 1_000
            }])
        );
        let get = MailboxRequest::Get {
            mailbox: mailbox(1),
            bundle: [7; 16],
        };
        assert_eq!(
            store.handle(writer(2), ip(2), get.clone(), 2_000),
            MailboxResponse::Bundle(vec![7; 100])
        );
        // After its 60 s time to live, gone.
        assert_eq!(
            store.handle(writer(2), ip(2), get, 61_001),
            MailboxResponse::NotFound
        );
        assert_eq!((store.bundles(), store.bytes()), (0, 0));
    }

    /// Finding 7: a put needs the mailbox's write key. A stranger who knows a mailbox id
    /// (from watching it listed) cannot put into it, nor replay a put with other bytes.
    #[test]
    fn a_put_without_the_mailboxs_write_key_is_refused() {
        let mut store = MailboxStore::new(MailboxLimits::default());
        let MailboxRequest::Put {
            bundle,
            ttl_secs,
            writer: key,
            signature,
            ..
        } = put(1, 7, 10)
        else {
            unreachable!()
        };
        // The stranger signs with a key of its own but names the victim's mailbox.
        let forged = match MailboxRequest::put(&write_key(9), bundle, ttl_secs, vec![0; 10]) {
            MailboxRequest::Put {
                bytes,
                writer,
                signature,
                ..
            } => MailboxRequest::Put {
                mailbox: mailbox(1),
                bundle,
                ttl_secs,
                bytes,
                writer,
                signature,
            },
            other => other,
        };
        // The victim's key and signature, on other bytes.
        let altered = MailboxRequest::Put {
            mailbox: mailbox(1),
            bundle,
            ttl_secs,
            bytes: vec![0; 10],
            writer: key,
            signature,
        };
        for attack in [forged, altered] {
            let answer = store.handle(writer(9), ip(9), attack, 0);
            assert_eq!(
                answer,
                MailboxResponse::Refused(MailboxRefusal::NoCapability.to_string())
            );
        }
        assert_eq!(store.bundles(), 0);
        assert_eq!(store.refused().get("no_capability"), Some(&2));
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 7, 10), 0),
            MailboxResponse::Stored
        );
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
        assert!(refused(&store.handle(
            writer(1),
            ip(1),
            put(1, 1, 1_001),
            0
        )));
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 1, 1_000), 0),
            MailboxResponse::Stored
        );
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 2, 1_000), 0),
            MailboxResponse::Stored
        );
        // The mailbox's space is used up.
        assert!(refused(&store.handle(
            writer(1),
            ip(1),
            put(1, 3, 1_000),
            0
        )));
        assert_eq!(
            store.handle(writer(1), ip(1), put(2, 1, 10), 0),
            MailboxResponse::Stored
        );
        // A third mailbox is one too many.
        assert!(refused(&store.handle(writer(2), ip(2), put(3, 1, 10), 0)));
        // Writer 1 has used its burst of 4 (refused puts count too, all but the oversized
        // one): refused, while writer 3 still gets through.
        assert!(refused(&store.handle(writer(1), ip(1), put(2, 2, 10), 0)));
        assert_eq!(
            store.handle(writer(3), ip(3), put(2, 3, 10), 0),
            MailboxResponse::Stored
        );
        // A second later writer 1 has earned one more put.
        assert_eq!(
            store.handle(writer(1), ip(1), put(2, 4, 10), 1_000),
            MailboxResponse::Stored
        );
        assert_eq!(store.bundles(), 5);
        assert_eq!(store.bytes(), 2_030);
    }

    /// Finding 7: 1,024 writer ids behind one address, each opening mailboxes of its own
    /// (valid write keys of its own making) as fast as they may. The address's share caps
    /// what they hold, a member elsewhere still deposits, and once the flood stops its
    /// rate-limit entries are pruned.
    #[test]
    fn a_sybil_flood_from_one_address_leaves_a_legitimate_deposit_working_and_memory_bounded() {
        let limits = MailboxLimits {
            max_mailboxes: 256,
            max_mailboxes_per_ip: 16,
            max_bytes_per_ip: 64 * 1024,
            ..MailboxLimits::default()
        };
        let mut store = MailboxStore::new(limits);
        let mut stored = 0;
        for n in 0..1024u32 {
            let sybil = DeviceKey::from_secret_bytes(&Hash::of(&[b"sybil", &n.to_le_bytes()]).0);
            let key = DeviceKey::from_secret_bytes(&Hash::of(&[b"key", &n.to_le_bytes()]).0);
            for b in 0..4u8 {
                let request = MailboxRequest::put(&key, [b; 16], 3600, vec![b; 4096]);
                if store.handle(sybil.device_id(), ip(66), request, 0) == MailboxResponse::Stored {
                    stored += 1;
                }
            }
        }
        assert!(stored > 0);
        assert!(
            store.bytes() <= limits.max_bytes_per_ip,
            "{}",
            store.bytes()
        );
        assert!(store.mailboxes.len() <= limits.max_mailboxes_per_ip);
        // The member, from its own address, deposits and reads back.
        assert_eq!(
            store.handle(writer(1), ip(1), put(1, 7, 2048), 0),
            MailboxResponse::Stored
        );
        let get = MailboxRequest::Get {
            mailbox: mailbox(1),
            bundle: [7; 16],
        };
        assert_eq!(
            store.handle(writer(2), ip(2), get, 1),
            MailboxResponse::Bundle(vec![7; 2048])
        );
        // The flood's bookkeeping goes once it is idle.
        assert!(store.tracked_writers() > 1000);
        store.expire(10 * 60 * 1000);
        assert_eq!(store.tracked_writers(), 0);
    }

    /// The global cap: when many addresses fill the relay, the oldest bundles make room.
    #[test]
    fn the_oldest_bundles_are_evicted_under_the_global_byte_cap() {
        let limits = MailboxLimits {
            max_total_bytes: 10_000,
            ..MailboxLimits::default()
        };
        let mut store = MailboxStore::new(limits);
        for n in 0..10u8 {
            let answer = store.handle(writer(n), ip(n), put(n, n, 1_000), u64::from(n));
            assert_eq!(answer, MailboxResponse::Stored);
        }
        assert_eq!(store.bytes(), 10_000);
        assert_eq!(
            store.handle(writer(20), ip(20), put(20, 1, 1_500), 100),
            MailboxResponse::Stored
        );
        assert_eq!(store.evicted(), 2, "the two oldest went");
        assert!(store.bytes() <= 10_000);
        let oldest = MailboxRequest::List {
            mailbox: mailbox(0),
        };
        assert_eq!(
            store.handle(writer(1), ip(1), oldest, 101),
            MailboxResponse::Listing(Vec::new())
        );
    }
}
