//! What an invite's secret stands for in the log: a signing key derived from it.
//!
//! The secret never enters the log and never leaves the joining device. `CreateInvite`
//! publishes the public half of [`invite_key`] (HKDF-SHA-256 of the secret, its own label),
//! and a redemption carries [`redemption_proof`]: that key's signature over the vault,
//! the invite and the redeeming device. Whoever reads the log, a revoked device included,
//! learns nothing that admits another device, and a proof shown to a peer in a session
//! names the device that showed it, so it cannot be replayed from any other.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::hash::Hash;
use crate::identity::{DeviceId, DeviceKey, Signature};
use crate::ids::VaultId;

const INVITE_KEY_LABEL: &[u8] = b"nexus/invite-key/v1";
const PROOF_DOMAIN: &[u8] = b"nexus/invite-redemption/v1";

/// The signing key an invite's secret stands for.
pub fn invite_key(secret: &[u8; 32]) -> DeviceKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    // 32 bytes are far below HKDF's limit of 255 × 32, so this cannot fail.
    let _ = Hkdf::<Sha256>::new(None, secret).expand(INVITE_KEY_LABEL, seed.as_mut());
    DeviceKey::from_secret_bytes(&seed)
}

/// The message an invite key signs to admit `redeemer` through `invite` of `vault`.
pub fn redemption_message(vault: &VaultId, invite: &Hash, redeemer: &DeviceId) -> Vec<u8> {
    [
        PROOF_DOMAIN,
        vault.as_bytes(),
        invite.as_bytes(),
        redeemer.public_key(),
    ]
    .concat()
}

/// Proof that `redeemer` holds the secret of `invite`, bound to that device.
pub fn redemption_proof(
    secret: &[u8; 32],
    vault: &VaultId,
    invite: &Hash,
    redeemer: &DeviceId,
) -> Signature {
    invite_key(secret).sign(&redemption_message(vault, invite, redeemer))
}

/// Whether `proof` admits `redeemer` through the invite whose key is `invite_key`.
pub fn proof_verifies(
    invite_key: &DeviceId,
    vault: &VaultId,
    invite: &Hash,
    redeemer: &DeviceId,
    proof: &Signature,
) -> bool {
    invite_key.verifies(&redemption_message(vault, invite, redeemer), proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_admits_only_the_device_and_invite_it_names() {
        let secret = [5; 32];
        let key = invite_key(&secret).device_id();
        let vault = VaultId(Hash([1; 32]));
        let invite = Hash([2; 32]);
        let bob = DeviceKey::from_secret_bytes(&[3; 32]).device_id();
        let mallory = DeviceKey::from_secret_bytes(&[4; 32]).device_id();
        let proof = redemption_proof(&secret, &vault, &invite, &bob);
        assert!(proof_verifies(&key, &vault, &invite, &bob, &proof));
        assert!(!proof_verifies(&key, &vault, &invite, &mallory, &proof));
        assert!(!proof_verifies(&key, &vault, &Hash([9; 32]), &bob, &proof));
        let other = invite_key(&[6; 32]).device_id();
        assert!(!proof_verifies(&other, &vault, &invite, &bob, &proof));
        assert_ne!(
            key.public_key(),
            &secret,
            "the public key is not the secret"
        );
    }
}
