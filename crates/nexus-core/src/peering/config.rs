//! How the peering supervisor times its decisions.

use crate::peers::Backoff;

/// The peering supervisor's timing and role. [`PeeringConfig::new`] lists the defaults;
/// the `with_*` methods change one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeeringConfig {
    /// How long a (peer, vault) pair whose session was refused, by either side, waits
    /// before a session is opened again (ms).
    pub refused_cooldown_ms: u64,
    /// How long a pair waits after its stream could not be opened, or ended before its
    /// handshake finished (ms): a peer that takes streams and drops them at once is not
    /// asked again at the speed of a round trip.
    pub open_failed_cooldown_ms: u64,
    /// How long a pair waits after a session that finished its handshake ended (ms).
    pub reopen_after_ms: u64,
    /// How long a peer that broke the protocol is kept away (ms).
    pub ban_ms: u64,
    /// How long a session may take to finish its handshake (ms). A stranger's session
    /// waits for membership entries that may prove it a member; one that never sends
    /// them is cut off after this.
    pub handshake_timeout_ms: u64,
    /// How long an invite is tried before the join gives up (ms).
    pub join_timeout_ms: u64,
    /// How often registrations and lookups at relays' rendezvous points are renewed (ms).
    pub discovery_interval_ms: u64,
    /// How long after refusing a peer the connection is closed, so the refusal reaches
    /// it first (ms).
    pub hang_up_after_ms: u64,
    /// Redial delays after failures.
    pub backoff: Backoff,
    /// Whether this instance holds the device's network connections from the start. A
    /// browser tab waits until it leads the profile's tabs ([`super::Input::HoldConnections`]).
    pub holds_connections: bool,
}

impl PeeringConfig {
    /// The defaults: refused pairs wait 30 s, failed stream opens (and sessions that end
    /// before their handshake) 3 s, sessions that end later 1 s, protocol
    /// violators 60 s; handshakes get 30 s and invites 60 s; rendezvous every 30 s;
    /// refused peers are hung up on after 500 ms; redials back off from 1 s to 5 min;
    /// connections are held from the start.
    pub fn new() -> Self {
        Self {
            refused_cooldown_ms: 30_000,
            open_failed_cooldown_ms: 3_000,
            reopen_after_ms: 1_000,
            ban_ms: 60_000,
            handshake_timeout_ms: 30_000,
            join_timeout_ms: 60_000,
            discovery_interval_ms: 30_000,
            hang_up_after_ms: 500,
            backoff: Backoff::new(),
            holds_connections: true,
        }
    }

    /// Sets [`PeeringConfig::handshake_timeout_ms`].
    pub fn with_handshake_timeout_ms(mut self, ms: u64) -> Self {
        self.handshake_timeout_ms = ms;
        self
    }

    /// Sets [`PeeringConfig::join_timeout_ms`].
    pub fn with_join_timeout_ms(mut self, ms: u64) -> Self {
        self.join_timeout_ms = ms;
        self
    }

    /// Sets [`PeeringConfig::discovery_interval_ms`]. Browsers renew every 10 s: they
    /// reach other devices only through relays, so a member that just registered is
    /// worth finding sooner.
    pub fn with_discovery_interval_ms(mut self, ms: u64) -> Self {
        self.discovery_interval_ms = ms;
        self
    }

    /// Sets [`PeeringConfig::refused_cooldown_ms`].
    pub fn with_refused_cooldown_ms(mut self, ms: u64) -> Self {
        self.refused_cooldown_ms = ms;
        self
    }

    /// Sets [`PeeringConfig::holds_connections`].
    pub fn with_connections_held(mut self, held: bool) -> Self {
        self.holds_connections = held;
        self
    }
}

impl Default for PeeringConfig {
    fn default() -> Self {
        Self::new()
    }
}
