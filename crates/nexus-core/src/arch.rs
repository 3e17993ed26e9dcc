//! The one place where the core differs by target: how a large signature batch is
//! checked. Natively the batch is split across the machine's cores (scoped threads, no
//! runtime); in the browser it is checked on the calling thread.

use ed25519_dalek::{Signature, VerifyingKey};

/// Whether every signature in the batch verifies.
pub(crate) fn batch_verifies(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(ok) = native::split_across_cores(messages, signatures, keys) {
        return ok;
    }
    ed25519_dalek::verify_batch(messages, signatures, keys).is_ok()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;

    /// Below this many signatures a batch is not worth splitting.
    const PARALLEL_MIN: usize = 256;

    /// Verifies one part of the batch per core; `None` when there is one core or the
    /// batch is small.
    pub(super) fn split_across_cores(
        messages: &[&[u8]],
        signatures: &[Signature],
        keys: &[VerifyingKey],
    ) -> Option<bool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 || messages.len() < PARALLEL_MIN {
            return None;
        }
        let chunk = messages.len().div_ceil(threads);
        Some(std::thread::scope(|scope| {
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
        }))
    }
}
