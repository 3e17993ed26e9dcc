//! The one place where the core differs by target: how a large signature batch is
//! checked. Natively the batch is split across the machine's cores (scoped threads, no
//! runtime); in the browser it is checked on the calling thread.

use ed25519_dalek::{Signature, VerifyingKey};

/// Below this many signatures a batch is not worth splitting.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_MIN: usize = 256;

/// Whether every signature in the batch verifies.
pub(crate) fn batch_verifies(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> bool {
    imp::batch_verifies(messages, signatures, keys)
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    pub(super) fn batch_verifies(
        messages: &[&[u8]],
        signatures: &[Signature],
        keys: &[VerifyingKey],
    ) -> bool {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 || messages.len() < PARALLEL_MIN {
            return ed25519_dalek::verify_batch(messages, signatures, keys).is_ok();
        }
        let chunk = messages.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = messages
                .chunks(chunk)
                .zip(signatures.chunks(chunk))
                .zip(keys.chunks(chunk))
                .map(|((m, s), k)| {
                    scope.spawn(move || ed25519_dalek::verify_batch(m, s, k).is_ok())
                })
                .collect();
            // A thread that cannot report counts as a failed batch (checked one by one).
            handles.into_iter().all(|h| h.join().unwrap_or(false))
        })
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;

    pub(super) fn batch_verifies(
        messages: &[&[u8]],
        signatures: &[Signature],
        keys: &[VerifyingKey],
    ) -> bool {
        ed25519_dalek::verify_batch(messages, signatures, keys).is_ok()
    }
}
