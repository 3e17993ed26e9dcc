//! The one rule by which an Ed25519 signature is accepted, whether it is checked alone
//! or in a batch.
//!
//! Ed25519 implementations disagree at the edges: a cofactorless batch check can accept a
//! signature whose `R` carries a small torsion component about one time in eight, while
//! a strict single check refuses it. Two replicas that check the same change by
//! different paths would then disagree about it for good. Here both paths check the same
//! equation, the cofactored one (as in ZIP-215), after the same checks on the encoding:
//!
//! - `s` is a canonical scalar (below the group order);
//! - `R` decodes to a curve point, its encoding is the canonical one, and it is not of
//!   small order;
//! - the key `A` is a valid key that is not of small order ([`DeviceId`] guarantees both);
//! - `[8]([s]B − R − [k]A)` is the identity, with `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! A batch checks `[8](−(Σ zᵢsᵢ)B + Σ zᵢRᵢ + Σ zᵢkᵢAᵢ) = 0` with 128-bit coefficients
//! `zᵢ` drawn from a hash of the whole batch, so a batch passes exactly when every one of
//! its signatures passes alone (but with probability 2⁻¹²⁸).

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::identity::{DeviceId, Signature};

const BATCH_DOMAIN: &[u8] = b"nexus/signature-batch/v1";

/// One signature, decoded and checked for everything but the equation.
struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    a: EdwardsPoint,
}

fn prepare(key: &DeviceId, a: EdwardsPoint, message: &[u8], sig: &Signature) -> Option<Prepared> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig.0[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.compress().0 != r_bytes || r.is_small_order() {
        return None;
    }
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key.public_key())
            .chain_update(message),
    );
    Some(Prepared { r, s, k, a })
}

/// Whether `sig` is `key`'s signature of `message`, by the one rule.
pub(crate) fn verifies(key: &DeviceId, message: &[u8], sig: &Signature) -> bool {
    let Some(p) = prepare(key, key.point(), message, sig) else {
        return false;
    };
    // [s]B − [k]A − R, times the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &p.a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Whether every `(message, key, signature)` verifies, checked as one batch. The answer is
/// the same as checking each with [`verifies`] and requiring all.
pub(crate) fn batch_verifies(items: &[(&[u8], DeviceId, Signature)]) -> bool {
    let mut points: std::collections::HashMap<DeviceId, EdwardsPoint> =
        std::collections::HashMap::new();
    let mut prepared = Vec::with_capacity(items.len());
    let mut transcript = Sha512::new().chain_update(BATCH_DOMAIN);
    for (message, key, sig) in items {
        let a = *points.entry(*key).or_insert_with(|| key.point());
        let Some(p) = prepare(key, a, message, sig) else {
            return false;
        };
        transcript.update(sig.0);
        transcript.update(key.public_key());
        transcript.update(Sha512::digest(message));
        prepared.push(p);
    }
    let seed = transcript.finalize();
    let coefficients: Vec<Scalar> = (0..prepared.len() as u64)
        .map(|i| {
            let z = Sha512::new()
                .chain_update(seed)
                .chain_update(i.to_le_bytes())
                .finalize();
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(&z[..16]);
            Scalar::from_bytes_mod_order(wide)
        })
        .collect();
    let b_coefficient: Scalar = prepared
        .iter()
        .zip(&coefficients)
        .map(|(p, z)| z * p.s)
        .sum();
    let scalars = std::iter::once(-b_coefficient)
        .chain(coefficients.iter().copied())
        .chain(prepared.iter().zip(&coefficients).map(|(p, z)| z * p.k));
    let points = std::iter::once(curve25519_dalek::constants::ED25519_BASEPOINT_POINT)
        .chain(prepared.iter().map(|p| p.r))
        .chain(prepared.iter().map(|p| p.a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn signed(n: u8, message: &[u8]) -> (DeviceId, Signature) {
        let key = DeviceKey::from_secret_bytes(&[n; 32]);
        (key.device_id(), key.sign(message))
    }

    #[test]
    fn honest_signatures_pass_alone_and_in_a_batch() {
        let messages: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 40]).collect();
        let items: Vec<(&[u8], DeviceId, Signature)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (id, sig) = signed(i as u8 % 3, m);
                (m.as_slice(), id, sig)
            })
            .collect();
        assert!(items.iter().all(|(m, k, s)| verifies(k, m, s)));
        assert!(batch_verifies(&items));
        let mut forged = items.clone();
        forged[7].2.0[40] ^= 1;
        assert!(!verifies(&forged[7].1, forged[7].0, &forged[7].2));
        assert!(!batch_verifies(&forged));
    }

    /// The attack on mixed rules: add a torsion point to `R`. A cofactorless batch
    /// accepts such a signature for some coefficients; here the batch and the single
    /// check give one verdict for every torsion point, in batches of every size.
    #[test]
    fn a_signature_with_torsion_added_to_r_gets_one_verdict_alone_and_in_a_batch() {
        // Every torsion point but the identity (index 0).
        for (t, torsion) in EIGHT_TORSION.iter().enumerate().filter(|(t, _)| *t > 0) {
            for n in 0..8u8 {
                let message = [n, t as u8, 9];
                let (id, sig) = signed(n, &message);
                let r = CompressedEdwardsY(sig.0[..32].try_into().unwrap_or([0; 32]))
                    .decompress()
                    .unwrap_or_default();
                let mut malleated = sig;
                malleated.0[..32].copy_from_slice(&(r + torsion).compress().0);
                let alone = verifies(&id, &message, &malleated);
                let honest = signed(n + 100, b"other");
                let batch = [
                    (message.as_slice(), id, malleated),
                    (b"other".as_slice(), honest.0, honest.1),
                ];
                assert_eq!(batch_verifies(&batch), alone, "torsion {t}, key {n}");
                assert_eq!(batch_verifies(&batch[..1]), alone, "torsion {t}, key {n}");
                // `k` hashes `R`, so the malleated signature is not one of the signer's.
                assert!(!alone, "torsion {t}, key {n}");
            }
        }
    }

    #[test]
    fn a_non_canonical_s_or_r_or_a_small_order_r_is_refused_on_both_paths() {
        let message = b"m";
        let (id, sig) = signed(1, message);
        // s + ℓ: the same scalar mod ℓ, in a non-canonical encoding.
        let mut big_s = sig;
        let s = Scalar::from_canonical_bytes(sig.0[32..].try_into().unwrap_or([0; 32]));
        let s = Option::<Scalar>::from(s).unwrap_or_default();
        let l_plus_s = s.to_bytes();
        let mut carry = 0u16;
        let mut order = [0u8; 32];
        order[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        order[31] = 0x10;
        for i in 0..32 {
            let sum = l_plus_s[i] as u16 + order[i] as u16 + carry;
            big_s.0[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        // A small-order R (the identity) with any s.
        let mut small_r = sig;
        small_r.0[..32].copy_from_slice(&EdwardsPoint::default().compress().0);
        for bad in [big_s, small_r] {
            assert!(!verifies(&id, message, &bad));
            assert!(!batch_verifies(&[(message.as_slice(), id, bad)]));
        }
    }
}
