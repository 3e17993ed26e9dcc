//! The browser side of the engine: IndexedDB storage, the websys swarm and the browser
//! peer runtime.

pub(crate) mod idb;
pub(crate) mod peer;
pub(crate) mod swarm;
