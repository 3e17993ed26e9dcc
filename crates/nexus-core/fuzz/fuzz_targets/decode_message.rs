//! Arbitrary bytes into the wire decoder: it must return an error, never panic, and
//! whatever it accepts must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let again = Message::decode(&message.encode()).expect("re-decode");
        assert_eq!(again, message);
    }
});
