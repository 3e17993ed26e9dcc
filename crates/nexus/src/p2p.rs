//! What both sides' swarms share: the libp2p identity of a device (the device key is the
//! libp2p key, so the `PeerId` that Noise authenticates is the peer's `DeviceId`), the
//! sync protocol's name, and the helpers that read peer ids out of addresses.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol, identity};
use nexus_core::{DeviceId, DeviceKey};

/// The sync protocol's libp2p name.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new(nexus_core::protocol::PROTOCOL_NAME);
/// What identify announces as our protocol version.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/nexus/1.0.0";
/// What a circuit relay announces through identify; a peer that lists it is a relay.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// The libp2p keypair for a device key.
pub fn keypair(key: &DeviceKey) -> identity::Keypair {
    let mut secret = key.secret_bytes();
    // `ed25519_from_bytes` zeroes the buffer it is given.
    match identity::Keypair::ed25519_from_bytes(&mut secret) {
        Ok(pair) => pair,
        // Unreachable: any 32 bytes are an Ed25519 secret key.
        Err(_) => identity::Keypair::generate_ed25519(),
    }
}

/// The `DeviceId` of a libp2p peer, if it is an Ed25519 peer (every Nexus device is).
pub fn device_of(peer: &PeerId) -> Option<DeviceId> {
    DeviceId::from_peer_id_bytes(&peer.to_bytes()).ok()
}

/// The libp2p `PeerId` of a device.
pub fn peer_of(device: &DeviceId) -> Option<PeerId> {
    PeerId::from_bytes(&device.to_peer_id_bytes()).ok()
}

/// Splits a trailing `/p2p/<peer>` off an address.
pub(crate) fn split_peer(address: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut address = address.clone();
    match address.pop() {
        Some(Protocol::P2p(peer)) => (address, Some(peer)),
        Some(other) => {
            address.push(other);
            (address, None)
        }
        None => (address, None),
    }
}
