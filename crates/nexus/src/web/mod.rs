//! The browser side of the engine: IndexedDB storage (and, as it grows, the websys
//! transports and tab coordination).

pub(crate) mod idb;
