//! An audit tap: records every byte the relay handles after removing its own transport
//! encryption (the Noise session between a device and the relay), that is, exactly what
//! the relay could read. Tests search it for plaintext that must never be there.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

/// Most bytes a tap keeps.
const TAP_CAPACITY: usize = 256 * 1024 * 1024;

/// What the relay saw, shared between its connections.
#[derive(Debug, Clone, Default)]
pub struct Tap(Arc<Mutex<Vec<u8>>>);

impl Tap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, bytes: &[u8]) {
        if let Ok(mut seen) = self.0.lock()
            && seen.len() + bytes.len() <= TAP_CAPACITY
        {
            seen.extend_from_slice(bytes);
        }
    }

    /// Bytes recorded so far.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |seen| seen.len())
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `needle` occurs anywhere in what was recorded.
    pub fn contains(&self, needle: &[u8]) -> bool {
        if needle.is_empty() {
            return true;
        }
        self.0
            .lock()
            .map(|seen| seen.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    }
}

/// A stream muxer whose substreams record what passes through them.
pub(crate) struct TapMuxer<M> {
    pub(crate) inner: M,
    pub(crate) tap: Tap,
}

impl<M> StreamMuxer for TapMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = TapStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let tap = this.tap.clone();
        Pin::new(&mut this.inner)
            .poll_inbound(cx)
            .map_ok(|inner| TapStream { inner, tap })
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let tap = this.tap.clone();
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_ok(|inner| TapStream { inner, tap })
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// A substream that records what it reads and writes.
pub(crate) struct TapStream<S> {
    inner: S,
    tap: Tap,
}

impl<S: AsyncRead + Unpin> AsyncRead for TapStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.tap.record(&buf[..*n]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TapStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.tap.record(&buf[..*n]);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
