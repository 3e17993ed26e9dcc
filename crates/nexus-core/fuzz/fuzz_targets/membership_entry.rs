//! A membership entry from a peer or a bundle: decoding never panics, and what decodes
//! encodes back to the same bytes (one encoding per meaning).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::SignedEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = SignedEntry::decode(data) {
        let again = entry.encode();
        assert_eq!(again, data, "a second encoding of one entry");
        assert_eq!(SignedEntry::decode(&again).ok(), Some(entry));
    }
});
