//! Device identity: an Ed25519 key per device, named by its libp2p `PeerId`.
//!
//! A [`DeviceId`] is byte for byte the libp2p `PeerId` of the device's Ed25519 public key
//! (the identity multihash of the protobuf-encoded key), so the key that authenticates a
//! transport connection (Noise) is the key that signs the device's data. It prints in
//! base58, as `12D3KooW…`.
//!
//! ```
//! use nexus_core::{DeviceId, DeviceKey};
//!
//! let key = DeviceKey::from_secret_bytes(&[7; 32]);
//! let id = key.device_id();
//! let printed = id.to_string();
//! assert!(printed.starts_with("12D3KooW"));
//! assert_eq!(printed.parse::<DeviceId>().unwrap(), id);
//! ```

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// The protobuf header of a libp2p `PublicKey { Type: Ed25519, Data: <32 bytes> }`,
/// preceded by the identity-multihash code (0x00) and its length (36).
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Length of a device id in its binary `PeerId` form.
pub const PEER_ID_LEN: usize = 38;

/// A device's secret signing key. Its `Debug` output shows the device id, never the secret.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

/// Why a device key could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system (or the browser's `crypto.getRandomValues`) gave no randomness.
    #[error("no secure randomness available to create a device key: {0}")]
    NoRandomness(String),
}

/// `N` bytes from the system's secure random source (invite secrets, nonces, ids).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
    Ok(bytes)
}

impl DeviceKey {
    /// Creates a new key from the system's secure random source.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self::from_secret_bytes(&random_bytes()?))
    }

    /// Rebuilds a key from its 32 secret bytes (as stored by the engine).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The 32 secret bytes, for storing the key. Keep them out of logs.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public identity of this key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// The X25519 secret that matches this key's Montgomery form (for opening keys sealed
    /// to this device; see [`crate::sealing`]).
    pub(crate) fn scalar_bytes(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// The signing key inside wipes itself when dropped.
impl zeroize::ZeroizeOnDrop for DeviceKey {}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", self.device_id())
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", crate::hash::hex(&self.0[..4]))
    }
}

/// A device's public identity: its Ed25519 public key, shown as a libp2p `PeerId`.
///
/// A value of this type always holds a valid Ed25519 point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 32]);

/// Why a string or bytes are not a device id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseDeviceIdError {
    /// The text is not base58.
    #[error("`{input}` is not a device id: it is not base58 text (device ids look like 12D3KooW…)")]
    NotBase58 {
        /// The text given.
        input: String,
    },
    /// The bytes are not an identity-multihash of an Ed25519 key.
    #[error(
        "not a device id: expected the {PEER_ID_LEN}-byte PeerId of an Ed25519 key (12D3KooW…), got {len} bytes that are not one"
    )]
    NotEd25519PeerId {
        /// How many bytes the input decoded to.
        len: usize,
    },
    /// The 32 key bytes are not a point on the curve.
    #[error("not a device id: the embedded public key is not a valid Ed25519 key")]
    InvalidKey,
    /// The key is a point of small order: signatures by it prove nothing (anyone can
    /// make one that verifies), so it cannot name a device.
    #[error("not a device id: the embedded public key is a weak (small-order) Ed25519 key")]
    WeakKey,
}

impl DeviceId {
    /// Builds a device id from a raw 32-byte Ed25519 public key, checking it is valid.
    /// Weak (small-order) keys are refused: every path that names a device (a typed id,
    /// an approval, a peer's Noise identity, a stored record) comes through here.
    pub fn from_public_key(bytes: [u8; 32]) -> Result<Self, ParseDeviceIdError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| ParseDeviceIdError::InvalidKey)?;
        if key.is_weak() {
            return Err(ParseDeviceIdError::WeakKey);
        }
        Ok(Self(bytes))
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The binary libp2p `PeerId` (38 bytes).
    pub fn to_peer_id_bytes(&self) -> [u8; PEER_ID_LEN] {
        let mut out = [0u8; PEER_ID_LEN];
        out[..PEER_ID_PREFIX.len()].copy_from_slice(&PEER_ID_PREFIX);
        out[PEER_ID_PREFIX.len()..].copy_from_slice(&self.0);
        out
    }

    /// Parses a binary libp2p `PeerId` of an Ed25519 key.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Result<Self, ParseDeviceIdError> {
        let not_ed25519 = ParseDeviceIdError::NotEd25519PeerId { len: bytes.len() };
        if bytes.len() != PEER_ID_LEN || bytes[..PEER_ID_PREFIX.len()] != PEER_ID_PREFIX {
            return Err(not_ed25519);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[PEER_ID_PREFIX.len()..]);
        Self::from_public_key(key)
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        // Every constructor checked the point, so this cannot fail; fall back to the
        // identity-free default only to keep this total.
        VerifyingKey::from_bytes(&self.0).unwrap_or_default()
    }

    /// The key as a curve point, for [`crate::signature_rule`].
    pub(crate) fn point(&self) -> curve25519_dalek::edwards::EdwardsPoint {
        // As above: every constructor checked that the bytes decode.
        curve25519_dalek::edwards::CompressedEdwardsY(self.0)
            .decompress()
            .unwrap_or_default()
    }

    /// Whether `signature` is this device's signature of `message`, by the one rule of
    /// [`crate::signature_rule`] (the same alone and in a batch).
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        crate::signature_rule::verifies(self, message, signature)
    }

    /// The first characters of the printed id, for people to compare at a glance.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[full.len() - 8..].to_string()
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_peer_id_bytes()).into_string())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.short())
    }
}

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let bytes =
            bs58::decode(trimmed)
                .into_vec()
                .map_err(|_| ParseDeviceIdError::NotBase58 {
                    input: trimmed.chars().take(64).collect(),
                })?;
        Self::from_peer_id_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_the_libp2p_peer_id_of_the_key() {
        for seed in 0u8..16 {
            let key = DeviceKey::from_secret_bytes(&[seed; 32]);
            let ours = key.device_id();
            let libp2p_key =
                libp2p_identity::Keypair::ed25519_from_bytes(key.secret_bytes()).unwrap();
            let peer_id = libp2p_key.public().to_peer_id();
            assert_eq!(ours.to_peer_id_bytes().to_vec(), peer_id.to_bytes());
            assert_eq!(ours.to_string(), peer_id.to_base58());
            assert_eq!(
                DeviceId::from_peer_id_bytes(&peer_id.to_bytes()).unwrap(),
                ours
            );
        }
    }

    #[test]
    fn bad_device_ids_give_clear_errors() {
        assert!(matches!(
            "not-base58-0OIl".parse::<DeviceId>(),
            Err(ParseDeviceIdError::NotBase58 { .. })
        ));
        // A valid base58 string that is a SHA-256 multihash PeerId (RSA keys), not Ed25519.
        let err = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            .parse::<DeviceId>()
            .unwrap_err();
        assert_eq!(err, ParseDeviceIdError::NotEd25519PeerId { len: 34 });
        assert!(err.to_string().contains("12D3KooW"));
        let mut bytes = DeviceKey::from_secret_bytes(&[1; 32])
            .device_id()
            .to_peer_id_bytes();
        bytes[3] = 0x02; // secp256k1 key type
        assert!(DeviceId::from_peer_id_bytes(&bytes).is_err());
    }

    #[test]
    fn a_small_order_key_names_no_device_on_any_path() {
        // The identity point (y = 1) and a point of order 2 (y = -1): a signature "by"
        // either is forgeable, so neither may be a device.
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        let order_two = {
            let mut b = [0xffu8; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        };
        for weak in [identity, order_two] {
            assert_eq!(
                DeviceId::from_public_key(weak),
                Err(ParseDeviceIdError::WeakKey)
            );
            let mut peer_id = PEER_ID_PREFIX.to_vec();
            peer_id.extend_from_slice(&weak);
            assert_eq!(
                DeviceId::from_peer_id_bytes(&peer_id),
                Err(ParseDeviceIdError::WeakKey)
            );
            let text = bs58::encode(&peer_id).into_string();
            assert!(matches!(
                text.parse::<DeviceId>(),
                Err(ParseDeviceIdError::WeakKey)
            ));
        }
        // A real key still names a device.
        let key = DeviceKey::from_secret_bytes(&[3; 32]);
        assert!(DeviceId::from_public_key(*key.device_id().public_key()).is_ok());
    }

    #[test]
    fn generated_keys_differ_and_debug_hides_the_secret() {
        let a = DeviceKey::generate().unwrap();
        let b = DeviceKey::generate().unwrap();
        assert_ne!(a.device_id(), b.device_id());
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.device_id().short()));
        assert!(!debug.contains(&crate::hash::hex(&a.secret_bytes())));
    }
}
