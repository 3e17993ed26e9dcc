//! Vault keys and sealed boxes: the cryptography under the relay mailbox.
//!
//! A [`VaultKey`] is a symmetric key the members of a vault share (numbered by
//! generation: a new one is made when a device is revoked). It reaches each member sealed
//! to that member's device key ([`seal_key`] / [`open_key`]), so that it can travel in
//! the membership log without anyone else, a relay included, reading it. Bundles of
//! changes left at a relay for a member who is offline are encrypted and authenticated
//! with it ([`encrypt_bundle`] / [`decrypt_bundle`]).
//!
//! Sealing uses X25519 on the device's own Ed25519 key, converted to its Montgomery form
//! (the same key pair signs and receives; see "On using the same key pair for Ed25519 and
//! an X25519 based KEM", ePrint 2021/509): an ephemeral key per sealed copy, the key
//! derived with SHA-256 over a domain label, the vault, the generation, both public keys
//! and the shared secret, then ChaCha20-Poly1305 under that single-use key. The ephemeral
//! secret is derived from the vault key itself and the recipient (as RFC 6979 derives
//! signature nonces), so no randomness is needed and the copy for a device is the same
//! whoever seals it: every holder of the key can check a copy byte for byte, and nobody
//! without the key can predict it. A new vault key ([`VaultKey::derive`]) is derived from
//! the admin's own secret key, and its `NewKey` entry carries a commitment to it
//! ([`VaultKey::commitment`]) that every opened copy is checked against. Bundles use
//! XChaCha20-Poly1305 with a random 24-byte nonce; the vault, the generation and the
//! bundle id are authenticated with it, so a bundle cannot be moved to another vault or
//! replayed under another id. All of it compiles for wasm32 as well.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use curve25519_dalek::montgomery::MontgomeryPoint;
use thiserror::Error;
use zeroize::Zeroize;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey, KeyError, random_bytes};
use crate::ids::VaultId;

const SEAL_DOMAIN: &[u8] = b"nexus/seal-vault-key/v1";
const BUNDLE_DOMAIN: &[u8] = b"nexus/mailbox-bundle/v1";
const DERIVE_KEY_DOMAIN: &[u8] = b"nexus/derive-vault-key/v1";
const EPHEMERAL_DOMAIN: &[u8] = b"nexus/seal-ephemeral/v1";
const MAILBOX_WRITER_DOMAIN: &[u8] = b"nexus/mailbox-writer/v1";
const RENDEZVOUS_DOMAIN: &[u8] = b"nexus/rendezvous/key/v1";
const COMMITMENT_DOMAIN: &[u8] = b"nexus/key-commitment/v1";
/// Bytes of a sealed key's ciphertext: the 32-byte key and a 16-byte tag.
const SEALED_LEN: usize = 48;
/// Bytes an encrypted bundle adds to its plaintext: nonce and tag.
pub const BUNDLE_OVERHEAD: usize = 24 + 16;

/// A vault's shared symmetric key. `Debug` shows only its generation; the bytes are
/// wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultKey {
    generation: u32,
    bytes: [u8; 32],
}

impl Drop for VaultKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for VaultKey {}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultKey(generation {})", self.generation)
    }
}

impl VaultKey {
    /// A fresh random key.
    pub fn generate(generation: u32) -> Result<Self, KeyError> {
        Ok(Self {
            generation,
            bytes: random_bytes()?,
        })
    }

    /// A new key made by `admin` for `vault` on top of the membership heads `context`:
    /// unpredictable to anyone without the admin's secret key, and different for every
    /// admin, context and generation.
    pub fn derive(admin: &DeviceKey, vault: &VaultId, context: &[Hash], generation: u32) -> Self {
        let secret = admin.scalar_bytes();
        let mut parts: Vec<&[u8]> = vec![DERIVE_KEY_DOMAIN, &secret, vault.as_bytes()];
        let generation_bytes = generation.to_be_bytes();
        parts.push(&generation_bytes);
        for head in context {
            parts.push(head.as_bytes());
        }
        Self {
            generation,
            bytes: Hash::of(&parts).0,
        }
    }

    /// Which key of the vault this is (0 at creation, one more per rotation).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// A commitment to this key, published in its `NewKey` entry: a member that opens a
    /// copy checks the key against it, so a copy of another key is refused, not used.
    pub fn commitment(&self, vault: &VaultId) -> Hash {
        Hash::of(&[
            COMMITMENT_DOMAIN,
            vault.as_bytes(),
            &self.generation.to_be_bytes(),
            &self.bytes,
        ])
    }

    /// The key that writes into the relay mailbox of `vault` under this key: derived from
    /// the vault key with its own label, so only holders of the vault key can put there
    /// ([`crate::mailbox`]).
    pub fn mailbox_writer(&self, vault: &VaultId) -> DeviceKey {
        let secret = Hash::of(&[
            MAILBOX_WRITER_DOMAIN,
            vault.as_bytes(),
            &self.generation.to_be_bytes(),
            &self.bytes,
        ]);
        DeviceKey::from_secret_bytes(&secret.0)
    }

    /// The relay mailbox of `vault` under this key: a hash of its write key, which only
    /// holders of the vault key can compute, so the relay cannot tie it to the vault and a
    /// revoked device cannot find the mailboxes of keys made after its revocation.
    pub fn mailbox_id(&self, vault: &VaultId) -> [u8; 32] {
        crate::mailbox::mailbox_of(&self.mailbox_writer(vault).device_id())
    }

    /// The name under which the members holding this key meet at a relay's rendezvous
    /// point: like [`VaultKey::mailbox_id`], only holders of the key can compute it, so a
    /// device revoked before the key was made cannot look the members up.
    pub fn rendezvous_name(&self, vault: &VaultId) -> String {
        let hash = Hash::of(&[
            RENDEZVOUS_DOMAIN,
            vault.as_bytes(),
            &self.generation.to_be_bytes(),
            &self.bytes,
        ]);
        format!("nexus-{}", bs58::encode(&hash.0[..20]).into_string())
    }
}

/// A vault key sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// Who can open it.
    pub recipient: DeviceId,
    /// The key's generation.
    pub generation: u32,
    ephemeral: [u8; 32],
    ciphertext: [u8; SEALED_LEN],
}

/// Why sealing or opening failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// No randomness for the ephemeral key or nonce.
    #[error(transparent)]
    Random(#[from] KeyError),
    /// The sealed key is for another device.
    #[error("this key is sealed to device {recipient}, not to this device")]
    NotForThisDevice {
        /// Its recipient.
        recipient: DeviceId,
    },
    /// The ciphertext does not authenticate: altered, or for another vault, generation or
    /// bundle id, or under another key.
    #[error("{what} does not authenticate: it was altered, or belongs to another vault, key or id")]
    Forged {
        /// What was being opened.
        what: &'static str,
    },
    /// The ephemeral key of a sealed copy is a point of small order: the shared secret
    /// would be all zeros, known to anyone.
    #[error("a sealed vault key uses a weak ephemeral key (its shared secret would be public)")]
    WeakEphemeral,
    /// An encrypted bundle shorter than its nonce and tag.
    #[error("an encrypted bundle of {len} bytes is too short to be one")]
    TooShort {
        /// Its length.
        len: usize,
    },
}

fn seal_cipher(
    vault: &VaultId,
    generation: u32,
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    shared: &[u8; 32],
) -> ChaCha20Poly1305 {
    let key = Hash::of(&[
        SEAL_DOMAIN,
        vault.as_bytes(),
        &generation.to_be_bytes(),
        ephemeral,
        recipient,
        shared,
    ]);
    ChaCha20Poly1305::new((&key.0).into())
}

fn seal_aad(vault: &VaultId, generation: u32, recipient: &DeviceId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_DOMAIN.len() + 32 + 4 + 32);
    aad.extend_from_slice(SEAL_DOMAIN);
    aad.extend_from_slice(vault.as_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad.extend_from_slice(recipient.public_key());
    aad
}

/// Seals `key` of `vault` to `recipient`'s device key. The ephemeral secret is derived
/// from the key itself and the recipient, so the copy is the same whoever seals it: any
/// holder of the key can make the one right copy for a device, and check a copy in the
/// log byte for byte (a hostile admin's bad copy is told apart and replaced).
pub fn seal_key(
    key: &VaultKey,
    vault: &VaultId,
    recipient: &DeviceId,
) -> Result<SealedKey, SealError> {
    let secret = Hash::of(&[
        EPHEMERAL_DOMAIN,
        vault.as_bytes(),
        &key.generation.to_be_bytes(),
        &key.bytes,
        recipient.public_key(),
    ])
    .0;
    let ephemeral = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
    let recipient_point = recipient.verifying_key().to_montgomery();
    let shared = recipient_point.mul_clamped(secret).to_bytes();
    let cipher = seal_cipher(
        vault,
        key.generation,
        &ephemeral,
        &recipient_point.to_bytes(),
        &shared,
    );
    let aad = seal_aad(vault, key.generation, recipient);
    let sealed = cipher
        .encrypt(
            &[0u8; 12].into(),
            Payload {
                msg: &key.bytes,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Forged {
            what: "a vault key",
        })?;
    let mut ciphertext = [0u8; SEALED_LEN];
    ciphertext.copy_from_slice(&sealed);
    Ok(SealedKey {
        recipient: *recipient,
        generation: key.generation,
        ephemeral,
        ciphertext,
    })
}

/// Opens a vault key sealed to this device.
pub fn open_key(
    sealed: &SealedKey,
    vault: &VaultId,
    device: &DeviceKey,
) -> Result<VaultKey, SealError> {
    if sealed.recipient != device.device_id() {
        return Err(SealError::NotForThisDevice {
            recipient: sealed.recipient,
        });
    }
    let scalar = device.scalar_bytes();
    let own_point = device.device_id().verifying_key().to_montgomery();
    let shared = MontgomeryPoint(sealed.ephemeral)
        .mul_clamped(scalar)
        .to_bytes();
    if shared == [0u8; 32] {
        return Err(SealError::WeakEphemeral);
    }
    let cipher = seal_cipher(
        vault,
        sealed.generation,
        &sealed.ephemeral,
        &own_point.to_bytes(),
        &shared,
    );
    let aad = seal_aad(vault, sealed.generation, &sealed.recipient);
    let opened = cipher
        .decrypt(
            &[0u8; 12].into(),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Forged {
            what: "a sealed vault key",
        })?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&opened);
    Ok(VaultKey {
        generation: sealed.generation,
        bytes,
    })
}

/// A sealed copy with its recipient left out: what a key notice carries, so that a
/// device that reads the notice without a copy of its own learns nothing of who holds one.
/// Its recipient finds it by trying to open it ([`BlindCopy::open`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindCopy {
    generation: u32,
    ephemeral: [u8; 32],
    ciphertext: [u8; SEALED_LEN],
}

impl BlindCopy {
    /// Opens the copy if it is sealed to `device` (the recipient is bound into the
    /// ciphertext, so a copy for another device does not authenticate).
    pub fn open(&self, vault: &VaultId, device: &DeviceKey) -> Result<VaultKey, SealError> {
        let sealed = SealedKey {
            recipient: device.device_id(),
            generation: self.generation,
            ephemeral: self.ephemeral,
            ciphertext: self.ciphertext,
        };
        open_key(&sealed, vault, device)
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.varint(self.generation.into())
            .raw(&self.ephemeral)
            .raw(&self.ciphertext);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let generation =
            u32::try_from(r.varint("key copy generation")?).map_err(|_| DecodeError::Invalid {
                what: "key copy generation",
                reason: "over 2^32".into(),
            })?;
        Ok(Self {
            generation,
            ephemeral: r.array("key copy ephemeral")?,
            ciphertext: r.array("key copy ciphertext")?,
        })
    }
}

impl SealedKey {
    /// The copy without its recipient.
    pub fn blind(&self) -> BlindCopy {
        BlindCopy {
            generation: self.generation,
            ephemeral: self.ephemeral,
            ciphertext: self.ciphertext,
        }
    }

    /// Writes the copy without its generation (a membership entry carries it once).
    pub(crate) fn write_body(&self, w: &mut Writer) {
        w.raw(self.recipient.public_key())
            .raw(&self.ephemeral)
            .raw(&self.ciphertext);
    }

    /// Reads [`SealedKey::write_body`]'s output for a key of `generation`.
    pub(crate) fn read_body(r: &mut Reader<'_>, generation: u32) -> Result<Self, DecodeError> {
        let recipient =
            DeviceId::from_public_key(r.array("sealed key recipient")?).map_err(|e| {
                DecodeError::Invalid {
                    what: "sealed key recipient",
                    reason: e.to_string(),
                }
            })?;
        Ok(Self {
            recipient,
            generation,
            ephemeral: r.array("sealed key ephemeral")?,
            ciphertext: r.array("sealed key ciphertext")?,
        })
    }

    /// The wire and storage form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(self.recipient.public_key())
            .varint(self.generation.into())
            .raw(&self.ephemeral)
            .raw(&self.ciphertext);
        w.finish()
    }

    /// Reads [`SealedKey::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let recipient =
            DeviceId::from_public_key(r.array("sealed key recipient")?).map_err(|e| {
                DecodeError::Invalid {
                    what: "sealed key recipient",
                    reason: e.to_string(),
                }
            })?;
        let generation = u32::try_from(r.varint("sealed key generation")?).map_err(|_| {
            DecodeError::Invalid {
                what: "sealed key generation",
                reason: "over 2^32".into(),
            }
        })?;
        let ephemeral = r.array("sealed key ephemeral")?;
        let ciphertext = r.array("sealed key ciphertext")?;
        r.finish("sealed key")?;
        Ok(Self {
            recipient,
            generation,
            ephemeral,
            ciphertext,
        })
    }
}

fn bundle_aad(vault: &VaultId, generation: u32, bundle: &[u8; 16]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(BUNDLE_DOMAIN.len() + 32 + 4 + 16);
    aad.extend_from_slice(BUNDLE_DOMAIN);
    aad.extend_from_slice(vault.as_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad.extend_from_slice(bundle);
    aad
}

/// Encrypts a mailbox bundle: `nonce ‖ ciphertext ‖ tag`, [`BUNDLE_OVERHEAD`] bytes longer
/// than `plaintext`.
pub fn encrypt_bundle(
    key: &VaultKey,
    vault: &VaultId,
    bundle: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; 24] = random_bytes()?;
    let cipher = XChaCha20Poly1305::new((&key.bytes).into());
    let aad = bundle_aad(vault, key.generation, bundle);
    let sealed = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Forged { what: "a bundle" })?;
    let mut out = Vec::with_capacity(nonce.len() + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts and authenticates a bundle made by [`encrypt_bundle`].
pub fn decrypt_bundle(
    key: &VaultKey,
    vault: &VaultId,
    bundle: &[u8; 16],
    bytes: &[u8],
) -> Result<Vec<u8>, SealError> {
    if bytes.len() < BUNDLE_OVERHEAD {
        return Err(SealError::TooShort { len: bytes.len() });
    }
    let (nonce, sealed) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new((&key.bytes).into());
    let aad = bundle_aad(vault, key.generation, bundle);
    cipher
        .decrypt(
            nonce.into(),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Forged { what: "a bundle" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(n: u8) -> VaultId {
        VaultId(Hash([n; 32]))
    }

    /// Every type that holds a secret wipes it when dropped (a compile-time check: it
    /// stops building if one of them loses its `ZeroizeOnDrop`).
    #[test]
    fn every_holder_of_a_secret_wipes_it_when_dropped() {
        fn wipes<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let device = DeviceKey::from_secret_bytes(&[1; 32]);
        let key = VaultKey::derive(&device, &vault(1), &[], 0);
        let request = crate::protocol::JoinRequest {
            invite: Hash([2; 32]),
            secret: [3; 32],
        };
        let code = crate::invite_code::InviteCode {
            vault: vault(1),
            invite: Hash([2; 32]),
            secret: [3; 32],
            expires_at_ms: 1,
            inviter: device.device_id(),
            addresses: Vec::new(),
        };
        wipes(&device);
        wipes(&key);
        wipes(&request);
        wipes(&code);
        assert_eq!(
            request.proof(&vault(1), &device.device_id()).invite,
            Hash([2; 32])
        );
    }

    #[test]
    fn a_copy_sealed_under_a_small_order_ephemeral_key_is_refused() {
        // A hostile sealer picks the ephemeral point u = 0: every recipient's shared
        // secret is then all zeros, so anyone who sees the copy could open it.
        let bob = DeviceKey::from_secret_bytes(&[2; 32]);
        let key = VaultKey::generate(4).unwrap();
        let ephemeral = [0u8; 32];
        let recipient_point = bob.device_id().verifying_key().to_montgomery();
        let cipher = seal_cipher(
            &vault(1),
            4,
            &ephemeral,
            &recipient_point.to_bytes(),
            &[0; 32],
        );
        let sealed = cipher
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: &key.bytes,
                    aad: &seal_aad(&vault(1), 4, &bob.device_id()),
                },
            )
            .unwrap();
        let mut ciphertext = [0u8; SEALED_LEN];
        ciphertext.copy_from_slice(&sealed);
        let weak = SealedKey {
            recipient: bob.device_id(),
            generation: 4,
            ephemeral,
            ciphertext,
        };
        assert!(matches!(
            open_key(&weak, &vault(1), &bob),
            Err(SealError::WeakEphemeral)
        ));
    }

    #[test]
    fn a_sealed_key_opens_for_its_recipient_only() {
        let (bob, carol) = (
            DeviceKey::from_secret_bytes(&[2; 32]),
            DeviceKey::from_secret_bytes(&[3; 32]),
        );
        let key = VaultKey::generate(4).unwrap();
        let sealed = seal_key(&key, &vault(1), &bob.device_id()).unwrap();
        let again = SealedKey::decode(&sealed.encode()).unwrap();
        assert_eq!(again, sealed);
        assert_eq!(open_key(&again, &vault(1), &bob).unwrap(), key);
        assert!(matches!(
            open_key(&sealed, &vault(1), &carol),
            Err(SealError::NotForThisDevice { .. })
        ));
        // Carol relabels it as hers: it does not open.
        let stolen = SealedKey {
            recipient: carol.device_id(),
            ..sealed.clone()
        };
        assert!(matches!(
            open_key(&stolen, &vault(1), &carol),
            Err(SealError::Forged { .. })
        ));
        // Another vault, another generation, a flipped bit: refused.
        assert!(open_key(&sealed, &vault(9), &bob).is_err());
        let older = SealedKey {
            generation: 3,
            ..sealed.clone()
        };
        assert!(open_key(&older, &vault(1), &bob).is_err());
        let mut flipped = sealed.clone();
        flipped.ciphertext[5] ^= 1;
        assert!(open_key(&flipped, &vault(1), &bob).is_err());
        // The ephemeral key comes from the key and the recipient: whoever seals it, the
        // copy is the same bytes, so every holder of the key can check one; another
        // recipient's copy differs.
        assert_eq!(seal_key(&key, &vault(1), &bob.device_id()).unwrap(), sealed);
        let for_carol = seal_key(&key, &vault(1), &carol.device_id()).unwrap();
        assert_ne!(for_carol.ephemeral, sealed.ephemeral);
        assert_eq!(open_key(&for_carol, &vault(1), &carol).unwrap(), key);
        assert!(format!("{key:?}").contains("generation 4"));
    }

    #[test]
    fn bundles_round_trip_and_refuse_tampering_or_the_wrong_key_vault_or_id() {
        let key = VaultKey::generate(0).unwrap();
        let plaintext = b"changes for a member who is offline";
        let sealed = encrypt_bundle(&key, &vault(1), &[7; 16], plaintext).unwrap();
        assert_eq!(sealed.len(), plaintext.len() + BUNDLE_OVERHEAD);
        assert!(!sealed.windows(7).any(|w| w == b"changes"));
        assert_eq!(
            decrypt_bundle(&key, &vault(1), &[7; 16], &sealed).unwrap(),
            plaintext
        );
        assert!(decrypt_bundle(&key, &vault(1), &[8; 16], &sealed).is_err());
        assert!(decrypt_bundle(&key, &vault(2), &[7; 16], &sealed).is_err());
        let rotated = VaultKey::generate(1).unwrap();
        assert!(decrypt_bundle(&rotated, &vault(1), &[7; 16], &sealed).is_err());
        let mut altered = sealed.clone();
        altered[30] ^= 0x80;
        assert!(decrypt_bundle(&key, &vault(1), &[7; 16], &altered).is_err());
        assert!(matches!(
            decrypt_bundle(&key, &vault(1), &[7; 16], &sealed[..10]),
            Err(SealError::TooShort { len: 10 })
        ));
    }

    #[test]
    fn derived_keys_and_mailbox_ids_depend_on_admin_vault_context_and_generation() {
        let (alice, bob) = (
            DeviceKey::from_secret_bytes(&[1; 32]),
            DeviceKey::from_secret_bytes(&[2; 32]),
        );
        let heads = [Hash([5; 32])];
        let key = VaultKey::derive(&alice, &vault(1), &heads, 0);
        assert_eq!(key, VaultKey::derive(&alice, &vault(1), &heads, 0));
        for other in [
            VaultKey::derive(&bob, &vault(1), &heads, 0),
            VaultKey::derive(&alice, &vault(2), &heads, 0),
            VaultKey::derive(&alice, &vault(1), &[Hash([6; 32])], 0),
            VaultKey::derive(&alice, &vault(1), &heads, 1),
        ] {
            assert_ne!(other.bytes, key.bytes);
            assert_ne!(other.mailbox_id(&vault(1)), key.mailbox_id(&vault(1)));
        }
        assert_ne!(key.mailbox_id(&vault(1)), key.mailbox_id(&vault(2)));
        // The id says nothing a relay could tie to the vault id.
        assert_ne!(key.mailbox_id(&vault(1)), vault(1).as_bytes().to_owned());
    }

    #[test]
    fn sealed_key_decoding_rejects_garbage() {
        assert!(SealedKey::decode(&[]).is_err());
        assert!(SealedKey::decode(&[0xff; 200]).is_err());
    }
}
