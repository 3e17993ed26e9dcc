//! The one place where the core differs by target: how a large signature batch is
//! checked. Natively the batch is split across the machine's cores (scoped threads, no
//! runtime); in the browser it is checked on the calling thread. Either way each part is
//! checked by [`crate::signature_rule`], so the verdict does not depend on the split.

use crate::identity::{DeviceId, Signature};

/// Whether every signature in the batch verifies.
pub(crate) fn batch_verifies(items: &[(&[u8], DeviceId, Signature)]) -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(ok) = native::split_across_cores(items) {
        return ok;
    }
    crate::signature_rule::batch_verifies(items)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::*;

    /// Below this many signatures a batch is not worth splitting.
    const PARALLEL_MIN: usize = 256;

    /// Verifies one part of the batch per core; `None` when there is one core or the
    /// batch is small.
    pub(super) fn split_across_cores(items: &[(&[u8], DeviceId, Signature)]) -> Option<bool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 || items.len() < PARALLEL_MIN {
            return None;
        }
        let chunk = items.len().div_ceil(threads);
        Some(std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|part| scope.spawn(move || crate::signature_rule::batch_verifies(part)))
                .collect();
            // A thread that cannot report counts as a failed batch (checked one by one).
            handles.into_iter().all(|h| h.join().unwrap_or(false))
        }))
    }
}
