//! What a relay's mailbox is sent and what a device reads back: decoding never panics,
//! what decodes round-trips, and the relay's store takes any decoded request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_core::DeviceKey;
use nexus_core::mailbox::{MailboxLimits, MailboxRequest, MailboxResponse, MailboxStore};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = MailboxRequest::decode(data) {
        assert_eq!(
            MailboxRequest::decode(&request.encode()).ok(),
            Some(request.clone())
        );
        let mut store = MailboxStore::new(MailboxLimits::default());
        let sender = DeviceKey::from_secret_bytes(&[1; 32]).device_id();
        let _ = store.handle(sender, None, request, 0);
    }
    if let Ok(response) = MailboxResponse::decode(data) {
        assert_eq!(
            MailboxResponse::decode(&response.encode()).ok(),
            Some(response)
        );
    }
});
