//! A peer that announces the largest frame and then sends next to nothing must not make
//! this device hold the announced size in memory. Measured with a counting allocator
//! (this test binary's own), so the figure is the bytes really reserved.

use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::AsyncRead;
use futures::executor::block_on;
use nexus::frames::{FrameError, read_frame};
use nexus_core::protocol::MAX_MESSAGE_BYTES;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A stream that announces a frame of `len` bytes, sends `sent` of them and ends.
struct Announcer {
    bytes: Vec<u8>,
    at: usize,
}

impl AsyncRead for Announcer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let rest = &self.bytes[self.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

#[test]
fn an_announced_huge_frame_that_never_arrives_costs_no_memory() {
    let len = MAX_MESSAGE_BYTES as u32;
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"just a little");
    let mut stream = Announcer { bytes, at: 0 };
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = block_on(read_frame(&mut stream));
    let peak = PEAK.load(Ordering::SeqCst) - before;
    assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}");
    assert!(
        peak < 64 * 1024,
        "reading a {len}-byte announcement with 13 bytes behind it reserved {peak} bytes"
    );
    // A real frame of that size still reads whole.
    let body = vec![7u8; MAX_MESSAGE_BYTES];
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let mut stream = Announcer { bytes, at: 0 };
    let mut stream = futures::io::BufReader::with_capacity(1 << 16, &mut stream);
    assert_eq!(block_on(read_frame(&mut stream)).unwrap(), Some(body));
}
