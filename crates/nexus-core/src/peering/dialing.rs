//! Connections: the peer table, redials with backoff, circuit dials that wait for their
//! relay, bans, hang-ups, and the network coming and going.

use super::address::AddressParts;
use super::io::{Actions, Dial};
use super::{At, MAX_NEIGHBOURS, NEIGHBOUR_DIALS, Neighbour, Peering};
use crate::identity::DeviceId;
use crate::ids::VaultId;
use crate::node::Node;
use crate::peers::{MAX_ADDRESS_LEN, MAX_ADDRESSES, PeerRecord};

impl Peering {
    pub(super) fn is_banned(&self, at: At, device: &DeviceId) -> bool {
        self.banned
            .get(device)
            .is_some_and(|until| *until > at.now_ms)
    }

    fn save_record(&self, device: &DeviceId, actions: &mut Actions) {
        if let Some(record) = self.peers.get(device) {
            actions.peer_records.extend(record.to_batch());
        }
    }

    pub(super) fn on_connected(
        &mut self,
        at: At,
        device: DeviceId,
        dialed: Option<String>,
        actions: &mut Actions,
    ) {
        if self.is_banned(at, &device) {
            actions.disconnect.push(device);
            return;
        }
        self.next_dial.remove(&device);
        self.neighbours.remove(&device);
        // Only devices already in the table are remembered (an address dialed on
        // purpose, a past session): a device met by chance (mDNS, a rendezvous lookup)
        // earns its record by syncing, so a LAN full of strangers cannot fill the table.
        if let Some(record) = self.peers.get_mut(&device) {
            if let Some(address) = &dialed {
                record.add_address(address);
            }
            record.failures = 0;
            record.last_seen_ms = at.now_ms;
            self.save_record(&device, actions);
        }
        self.connected.insert(device);
        self.paused.retain(|(d, _), _| *d != device);
        let (now_dialable, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.after_relay)
            .into_iter()
            .partition(|(relay, _)| *relay == device);
        self.after_relay = waiting;
        for (_, address) in now_dialable {
            actions.dial.push(Dial {
                device: None,
                addresses: vec![address],
            });
        }
        self.sessions_dirty = true;
    }

    pub(super) fn on_disconnected(&mut self, at: At, device: DeviceId) {
        self.paused.retain(|(d, _), _| *d != device);
        if self.connected.remove(&device) {
            self.schedule_redial(at, device);
        }
    }

    pub(super) fn on_dial_failed(&mut self, at: At, device: DeviceId, actions: &mut Actions) {
        if let Some(record) = self.peers.get_mut(&device) {
            record.failures = record.failures.saturating_add(1);
            self.save_record(&device, actions);
        } else if let Some(neighbour) = self.neighbours.get_mut(&device) {
            neighbour.failures = neighbour.failures.saturating_add(1);
            if neighbour.failures >= NEIGHBOUR_DIALS {
                self.neighbours.remove(&device);
            } else {
                let delay = self.config.backoff.delay_ms(neighbour.failures, at.random);
                self.next_dial.insert(device, at.now_ms + delay);
            }
            return;
        }
        self.schedule_redial(at, device);
    }

    /// A device found on the local network: dialed now unless connected (or banned), and
    /// remembered, while there is room, to dial again when that fails.
    pub(super) fn on_discovered(
        &mut self,
        at: At,
        device: DeviceId,
        mut addresses: Vec<String>,
        actions: &mut Actions,
    ) {
        addresses.retain(|a| a.len() <= MAX_ADDRESS_LEN);
        addresses.truncate(MAX_ADDRESSES);
        if device == self.me
            || addresses.is_empty()
            || self.connected.contains(&device)
            || self.is_banned(at, &device)
            || !self.may_dial()
        {
            return;
        }
        if let Some(record) = self.peers.get_mut(&device) {
            // A known peer: its record's backoff applies, these addresses first.
            for address in addresses.iter().rev() {
                record.add_address(address);
            }
            addresses = record.addresses.clone();
            self.save_record(&device, actions);
        } else if self.neighbours.contains_key(&device) || self.neighbours.len() < MAX_NEIGHBOURS {
            let failures = self.neighbours.get(&device).map_or(0, |n| n.failures);
            let neighbour = Neighbour {
                addresses: addresses.clone(),
                failures,
            };
            self.neighbours.insert(device, neighbour);
        }
        self.next_dial.remove(&device);
        actions.dial.push(Dial {
            device: Some(device),
            addresses,
        });
    }

    /// Redials a known peer after the backoff its failures call for.
    pub(super) fn schedule_redial(&mut self, at: At, device: DeviceId) {
        let Some(record) = self.peers.get(&device) else {
            return;
        };
        if record.addresses.is_empty() {
            return;
        }
        let delay = self
            .config
            .backoff
            .delay_ms(record.failures.max(1), at.random);
        self.next_dial.insert(device, at.now_ms + delay);
    }

    /// Dials an address: remembered for its device, and through its relay first when it
    /// is a circuit and the relay is not connected.
    pub(super) fn dial_address(&mut self, address: &str, actions: &mut Actions) {
        let parts = AddressParts::of(address);
        if let Some(device) = parts.device {
            if device == self.me {
                return;
            }
            self.peers
                .entry(device)
                .or_insert_with(|| PeerRecord::new(device))
                .add_address(&parts.bare);
            self.save_record(&device, actions);
        }
        if !self.holds_connections {
            return; // the instance holding the connections dials it (it reads the record)
        }
        if let Some((relay, relay_address)) = parts.relay
            && !self.connected.contains(&relay)
        {
            actions.dial.push(Dial {
                device: None,
                addresses: vec![relay_address],
            });
            if !self.after_relay.iter().any(|(_, a)| a == address) {
                self.after_relay.push((relay, address.to_owned()));
            }
            return;
        }
        actions.dial.push(Dial {
            device: None,
            addresses: vec![address.to_owned()],
        });
    }

    pub(super) fn redial_due(&mut self, at: At, actions: &mut Actions) {
        if !self.may_dial() {
            return; // coming online (or taking the connections) redials everything at once
        }
        let due: Vec<DeviceId> = self
            .next_dial
            .iter()
            .filter(|(device, when)| **when <= at.now_ms && !self.connected.contains(device))
            .map(|(device, _)| *device)
            .collect();
        for device in due {
            self.next_dial.remove(&device);
            let addresses = match (self.peers.get(&device), self.neighbours.get(&device)) {
                (Some(record), _) => record.addresses.clone(),
                (None, Some(neighbour)) => neighbour.addresses.clone(),
                (None, None) => continue,
            };
            actions.dial.push(Dial {
                device: Some(device),
                addresses,
            });
        }
    }

    pub(super) fn hang_up_due(&mut self, at: At, actions: &mut Actions) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.hang_up)
            .into_iter()
            .partition(|(_, when)| *when <= at.now_ms);
        self.hang_up = later;
        for (device, _) in due {
            let in_use = self.sessions_with(&device) > 0 || self.relays.contains(&device);
            if !in_use && !actions.disconnect.contains(&device) {
                actions.disconnect.push(device);
            }
        }
    }

    fn dial_every_known_peer_now(&mut self, at: At) {
        let known: Vec<DeviceId> = self.peers.keys().copied().collect();
        for device in known {
            self.next_dial.insert(device, at.now_ms);
        }
    }

    pub(super) fn on_online(&mut self, at: At, online: bool, actions: &mut Actions) {
        self.online = online;
        if online {
            for record in self.peers.values_mut() {
                record.failures = 0;
            }
            self.dial_every_known_peer_now(at);
            self.redial_due(at, actions);
        }
    }

    pub(super) fn on_hold_connections(&mut self, at: At, actions: &mut Actions) {
        self.holds_connections = true;
        self.dial_every_known_peer_now(at);
        let addresses: Vec<String> = self
            .joins
            .values()
            .flat_map(|j| j.code.addresses.clone())
            .collect();
        for address in addresses {
            self.dial_address(&address, actions);
        }
        self.redial_due(at, actions);
    }

    pub(super) fn on_peer_records(&mut self, at: At, records: Vec<PeerRecord>) {
        for record in records {
            let device = record.device;
            if self.peers.insert(device, record).is_none() && !self.connected.contains(&device) {
                self.next_dial.insert(device, at.now_ms);
            }
        }
    }

    /// Remembers a peer a session finished its handshake with: when, the vault's
    /// fingerprint then, and the addresses it said it listens at.
    pub(super) fn record_sync(
        &mut self,
        node: &Node,
        at: At,
        device: DeviceId,
        vault: VaultId,
        actions: &mut Actions,
    ) {
        let fingerprint = node.fingerprint(&vault).unwrap_or_default();
        let record = self
            .peers
            .entry(device)
            .or_insert_with(|| PeerRecord::new(device));
        record.last_seen_ms = at.now_ms;
        record.last_synced.insert(vault, (at.now_ms, fingerprint));
        if let Some(addresses) = self.identified.get(&device) {
            for address in addresses.iter().rev() {
                record.add_address(address);
            }
        }
        self.save_record(&device, actions);
    }
}
