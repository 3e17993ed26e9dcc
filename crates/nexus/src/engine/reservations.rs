//! Slots this device holds at relays, the same on every target: a slot is asked for once
//! per connection to the relay, and once the relay confirms it (a circuit listen
//! address), this device registers at the relay's rendezvous point under its vaults'
//! names so that members find it there.

use std::collections::HashSet;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// The relays at which a slot was asked for and those that confirmed one.
#[derive(Default)]
pub(crate) struct Reservations {
    asked: HashSet<PeerId>,
    confirmed: HashSet<PeerId>,
}

impl Reservations {
    /// Whether a slot is to be asked for at `relay` now (not yet on this connection).
    pub(crate) fn ask(&mut self, relay: PeerId) -> bool {
        self.asked.insert(relay)
    }

    /// A circuit listen address came up: the relay it is at, when this device asked
    /// that relay for a slot (it is then registered at).
    pub(crate) fn confirmed(&mut self, address: &Multiaddr) -> Option<PeerId> {
        if !address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return None;
        }
        let relay = address.iter().find_map(|p| match p {
            Protocol::P2p(peer) if self.asked.contains(&peer) => Some(peer),
            _ => None,
        })?;
        self.confirmed.insert(relay);
        Some(relay)
    }

    /// The connection to `relay` went down, and its slot with it. Returns whether a
    /// slot had been asked for there.
    pub(crate) fn lost(&mut self, relay: &PeerId) -> bool {
        self.confirmed.remove(relay);
        self.asked.remove(relay)
    }

    /// Relays holding a slot for this device.
    pub(crate) fn registrable(&self) -> &HashSet<PeerId> {
        &self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_registered_at_only_once_its_relay_confirms_it_and_is_lost_with_the_connection() {
        let relay = PeerId::random();
        let other = PeerId::random();
        let mut slots = Reservations::default();
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(slots.confirmed(&circuit), None, "never asked there");
        assert!(slots.ask(relay));
        assert!(!slots.ask(relay), "asked once per connection");
        let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}")
            .parse()
            .unwrap();
        assert_eq!(slots.confirmed(&direct), None, "not a circuit address");
        let elsewhere: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{other}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(slots.confirmed(&elsewhere), None);
        assert_eq!(slots.confirmed(&circuit), Some(relay));
        assert!(slots.registrable().contains(&relay));
        assert!(slots.lost(&relay));
        assert!(slots.registrable().is_empty());
        assert!(slots.ask(relay), "asked again on the next connection");
    }
}
