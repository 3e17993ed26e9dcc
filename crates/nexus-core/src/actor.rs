//! Automerge actor ids bound to devices. An actor id is the device's 16-byte tag (a hash
//! of its public key) followed by a 16-byte writer id (one per tab or process), so which
//! device may write under an actor is read from the actor id itself: every replica
//! decides the same, with nothing to remember and nothing to race for. A change whose
//! actor is not its author's is refused ([`crate::ApplyError::ForeignActor`]), so no
//! member can write under another device's actor, squat its sequence numbers or plant a
//! twin of one of its changes.

use automerge::ActorId;

use crate::hash::Hash;
use crate::identity::DeviceId;

/// Length of a device's tag at the start of its actor ids.
pub const DEVICE_TAG_LEN: usize = 16;
/// Length of an actor id: the device tag and the writer id.
pub const ACTOR_LEN: usize = 32;

const TAG_DOMAIN: &[u8] = b"nexus/actor-tag/v1";

/// The tag that starts every actor id of `device`.
pub fn device_tag(device: &DeviceId) -> [u8; DEVICE_TAG_LEN] {
    let hash = Hash::of(&[TAG_DOMAIN, device.public_key()]);
    let mut tag = [0u8; DEVICE_TAG_LEN];
    tag.copy_from_slice(&hash.0[..DEVICE_TAG_LEN]);
    tag
}

/// Whether `device` may write under `actor`.
pub fn actor_belongs_to(actor: &ActorId, device: &DeviceId) -> bool {
    let bytes = actor.to_bytes();
    bytes.len() == ACTOR_LEN && bytes[..DEVICE_TAG_LEN] == device_tag(device)
}

/// The actor `device` writes with for the writer `writer`: `writer` itself when it is
/// already one of the device's actors, else the device's tag followed by the writer's
/// first 16 bytes (or a hash of it, when it is shorter or longer).
pub fn actor_of(device: &DeviceId, writer: &ActorId) -> ActorId {
    if actor_belongs_to(writer, device) {
        return writer.clone();
    }
    let bytes = writer.to_bytes();
    let mut actor = Vec::with_capacity(ACTOR_LEN);
    actor.extend_from_slice(&device_tag(device));
    if bytes.len() == ACTOR_LEN - DEVICE_TAG_LEN {
        actor.extend_from_slice(bytes);
    } else {
        actor.extend_from_slice(&Hash::of(&[b"nexus/writer/v1", bytes]).0[..16]);
    }
    ActorId::from(actor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    #[test]
    fn an_actor_belongs_to_the_device_whose_tag_it_starts_with() {
        let (a, b) = (
            DeviceKey::from_secret_bytes(&[1; 32]).device_id(),
            DeviceKey::from_secret_bytes(&[2; 32]).device_id(),
        );
        let writer = ActorId::from(&[9u8; 16][..]);
        let actor = actor_of(&a, &writer);
        assert!(actor_belongs_to(&actor, &a));
        assert!(!actor_belongs_to(&actor, &b));
        assert!(
            !actor_belongs_to(&writer, &a),
            "a bare random actor belongs to nobody"
        );
        assert_eq!(actor_of(&a, &actor), actor, "binding twice changes nothing");
        assert_ne!(
            actor_of(&a, &writer),
            actor_of(&a, &ActorId::from(&[8u8; 16][..]))
        );
        // b cannot take a's actor by binding it again: it gets one of its own.
        let taken = actor_of(&b, &actor);
        assert!(actor_belongs_to(&taken, &b) && !actor_belongs_to(&taken, &a));
    }
}
