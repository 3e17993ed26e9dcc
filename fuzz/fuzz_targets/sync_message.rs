//! A sync protocol message from a peer: decoding never panics, and what decodes
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let again = message.encode();
        assert_eq!(Message::decode(&again).ok(), Some(message));
    }
});
