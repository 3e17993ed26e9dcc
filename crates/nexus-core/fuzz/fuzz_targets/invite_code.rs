//! An invite code a person pastes: parsing never panics, and what parses prints back to a
//! code that parses to the same invite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::InviteCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = text.parse::<InviteCode>() {
        let again: InviteCode = code.to_string().parse().expect("a printed code parses");
        assert_eq!(again, code);
    }
});
