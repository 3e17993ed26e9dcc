//! Records read back from a store, or opened from a mailbox bundle: a signed change, a
//! sealed key copy, a peer record, a bundle's plaintext. Decoding never panics on any
//! bytes (a corrupt store or a hostile bundle writer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::SignedChange;
use nexus_core::bundle::Bundle;
use nexus_core::peers::PeerRecord;
use nexus_core::sealing::SealedKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(change) = SignedChange::decode(data) {
        assert_eq!(SignedChange::decode(&change.encode()).ok(), Some(change));
    }
    if let Ok(copy) = SealedKey::decode(data) {
        assert_eq!(SealedKey::decode(&copy.encode()).ok(), Some(copy));
    }
    let _ = PeerRecord::decode(data);
    if let Ok(bundle) = Bundle::decode(data) {
        assert_eq!(Bundle::decode(&bundle.encode()).ok(), Some(bundle));
    }
});
