//! Reading the parts of a multiaddr's text form that the dial policy needs: the device
//! it ends at and, for a circuit address, the relay it goes through. The engine parses
//! addresses properly; the policy only needs these two facts.

use crate::identity::DeviceId;

/// What an address's text says about where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressParts {
    /// The address without its final `/p2p/<device>`.
    pub bare: String,
    /// The device it ends at (`/p2p/<device>` last).
    pub device: Option<DeviceId>,
    /// For a circuit address (`…/p2p/<relay>/p2p-circuit/…`): the relay and the address
    /// of the relay itself (up to and including `/p2p/<relay>`).
    pub relay: Option<(DeviceId, String)>,
}

impl AddressParts {
    /// Reads `address` (e.g. `/ip4/10.0.0.1/tcp/4001/p2p/<relay>/p2p-circuit/p2p/<peer>`).
    pub fn of(address: &str) -> Self {
        let parts: Vec<&str> = address.split('/').collect();
        let mut device = None;
        let mut bare = address.to_owned();
        if parts.len() >= 3 && parts[parts.len() - 2] == "p2p" {
            device = parts[parts.len() - 1].parse::<DeviceId>().ok();
            if device.is_some() {
                bare = parts[..parts.len() - 2].join("/");
            }
        }
        let relay = parts
            .iter()
            .position(|p| *p == "p2p-circuit")
            .filter(|&i| i >= 2 && parts[i - 2] == "p2p")
            .and_then(|i| {
                let relay = parts[i - 1].parse::<DeviceId>().ok()?;
                Some((relay, parts[..i].join("/")))
            });
        Self {
            bare,
            device,
            relay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    #[test]
    fn a_circuit_address_names_its_relay_and_its_device() {
        let relay = DeviceKey::from_secret_bytes(&[1; 32]).device_id();
        let peer = DeviceKey::from_secret_bytes(&[2; 32]).device_id();
        let relay_address = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}");
        let circuit = format!("{relay_address}/p2p-circuit/p2p/{peer}");
        let parts = AddressParts::of(&circuit);
        assert_eq!(parts.device, Some(peer));
        assert_eq!(parts.relay, Some((relay, relay_address.clone())));
        assert_eq!(parts.bare, format!("{relay_address}/p2p-circuit"));

        let direct = AddressParts::of(&relay_address);
        assert_eq!(direct.device, Some(relay));
        assert_eq!(direct.relay, None);
        assert_eq!(direct.bare, "/ip4/127.0.0.1/tcp/4001");

        let garbage = AddressParts::of("/p2p/not-a-device/p2p-circuit");
        assert_eq!(garbage.device, None);
        assert_eq!(garbage.relay, None);
    }
}
