//! What both targets' engines share around [`nexus_core::Node`] and
//! [`nexus_core::peering::Peering`]: the streams of sessions ([`links`]) and the clock
//! handed to the core ([`at`]). The policy itself (which sessions, whom to dial, when)
//! is the core's; a target carries out its actions with its own store and swarm.

pub(crate) mod connections;
pub(crate) mod core;
mod events;
pub(crate) mod links;
pub(crate) mod reservations;
pub(crate) mod run;

pub use events::EngineEvent;

use nexus_core::peering::At;

/// Milliseconds since the Unix epoch.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch.
#[cfg(target_arch = "wasm32")]
pub(crate) fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The time and a random number for one input to the core.
pub(crate) fn at() -> At {
    At {
        now_ms: now_ms(),
        random: nexus_core::random_bytes::<8>().map_or(0, u64::from_le_bytes),
    }
}

/// How long to sleep until `deadline` (ms since the epoch), at least 1 ms, at most a
/// minute (a clock that jumps is then noticed).
pub(crate) fn until(deadline: Option<u64>) -> std::time::Duration {
    let now = now_ms();
    let ms = deadline.map_or(60_000, |d| d.saturating_sub(now).clamp(1, 60_000));
    std::time::Duration::from_millis(ms)
}
