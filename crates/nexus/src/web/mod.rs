//! The browser side of the engine: IndexedDB storage, the websys swarm, the browser
//! engine runtime and the coordination of a profile's tabs.

pub(crate) mod handle;
pub(crate) mod idb;
mod online;
pub(crate) mod runtime;
pub(crate) mod swarm;
pub(crate) mod tabs;
