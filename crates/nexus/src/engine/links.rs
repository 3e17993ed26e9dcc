//! The streams that carry sessions, the same on both targets: each session's frames
//! are read by a task of its own and written by another; what the readers hear comes
//! to the engine loop as [`LinkEvent`]s through one bounded channel, so a peer that
//! sends faster than the node takes it in is held back by its stream, not buffered
//! without limit.

use std::collections::HashMap;

use futures::channel::mpsc;
use futures::future::{AbortHandle, Abortable};
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, SinkExt, StreamExt};
use libp2p::PeerId;
use nexus_core::node::SessionId;
use nexus_core::peering::{Actions, InboundId, OpenId};

use crate::frames::{FrameError, read_frame, write_frame};
use crate::p2p::SYNC_PROTOCOL;

/// Frames and stream news waiting for the engine loop, at most.
const EVENTS_BOUND: usize = 64;

/// What the stream tasks tell the engine loop.
pub(crate) enum LinkEvent {
    /// A frame arrived on a session's stream.
    Frame(SessionId, Vec<u8>),
    /// A session's stream ended.
    Ended(SessionId),
    /// A session's stream carried something that is not a frame.
    BadFrame(SessionId, String),
    /// A stream asked for by an `Open` is up.
    Opened(OpenId, libp2p::Stream),
    /// A stream asked for by an `Open` could not be opened.
    OpenFailed(OpenId, String),
}

struct Link {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The session streams of one engine.
pub(crate) struct Links {
    links: HashMap<SessionId, Link>,
    inbound: HashMap<InboundId, libp2p::Stream>,
    next_inbound: u64,
    opened: HashMap<OpenId, libp2p::Stream>,
    events_tx: mpsc::Sender<LinkEvent>,
}

impl Links {
    /// No streams yet, and the receiving end of what their tasks will report.
    pub(crate) fn new() -> (Self, mpsc::Receiver<LinkEvent>) {
        let (events_tx, events_rx) = mpsc::channel(EVENTS_BOUND);
        let links = Self {
            links: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            opened: HashMap::new(),
            events_tx,
        };
        (links, events_rx)
    }

    /// Holds a stream the peer opened until the supervisor decides about it.
    pub(crate) fn hold_inbound(&mut self, stream: libp2p::Stream) -> InboundId {
        let id = InboundId(self.next_inbound);
        self.next_inbound += 1;
        self.inbound.insert(id, stream);
        id
    }

    /// Holds a stream opened for an `Open` until the supervisor decides about it.
    pub(crate) fn hold_opened(&mut self, open: OpenId, stream: libp2p::Stream) {
        self.opened.insert(open, stream);
    }

    /// Opens a sync stream to `peer` for `open`; the outcome comes back as a
    /// [`LinkEvent`].
    pub(crate) fn open(&self, control: &libp2p_stream::Control, peer: PeerId, open: OpenId) {
        let mut control = control.clone();
        let mut events = self.events_tx.clone();
        crate::rt::spawn(async move {
            let event = match control.open_stream(peer, SYNC_PROTOCOL).await {
                Ok(stream) => LinkEvent::Opened(open, stream),
                Err(e) => LinkEvent::OpenFailed(open, e.to_string()),
            };
            let _ = events.send(event).await;
        });
    }

    /// Carries out the stream part of the supervisor's actions, in their order: attach
    /// or drop held streams, send, close ended sessions' streams once what is queued on
    /// them is written.
    pub(crate) fn carry_out(&mut self, actions: &mut Actions) {
        for id in actions.reject_inbound.drain(..) {
            self.inbound.remove(&id);
        }
        for id in actions.discard_opened.drain(..) {
            self.opened.remove(&id);
        }
        for (id, session) in std::mem::take(&mut actions.attach_inbound) {
            if let Some(stream) = self.inbound.remove(&id) {
                self.attach(session, stream);
            }
        }
        for (id, session) in std::mem::take(&mut actions.attach_opened) {
            if let Some(stream) = self.opened.remove(&id) {
                self.attach(session, stream);
            }
        }
        for (session, bytes) in actions.out.transmits.drain(..) {
            if let Some(link) = self.links.get(&session) {
                let _ = link.tx.unbounded_send(bytes);
            }
        }
        for session in actions.detach.drain(..) {
            self.links.remove(&session);
        }
    }

    /// Drops every stream (the engine is stopping).
    pub(crate) fn clear(&mut self) {
        self.links.clear();
        self.inbound.clear();
        self.opened.clear();
    }

    fn attach(&mut self, session: SessionId, stream: libp2p::Stream) {
        let (mut read, mut write) = stream.split();
        let (tx, mut rx) = mpsc::unbounded::<Vec<u8>>();
        let mut events = self.events_tx.clone();
        let (reader, registration) = AbortHandle::new_pair();
        let read_loop = async move {
            loop {
                let event = match read_frame(&mut read).await {
                    Ok(Some(bytes)) => LinkEvent::Frame(session, bytes),
                    Err(e @ FrameError::TooLong { .. }) => {
                        LinkEvent::BadFrame(session, e.to_string())
                    }
                    Ok(None) | Err(_) => LinkEvent::Ended(session),
                };
                let last = !matches!(event, LinkEvent::Frame(..));
                if events.send(event).await.is_err() || last {
                    return;
                }
            }
        };
        crate::rt::spawn(Abortable::new(read_loop, registration).map(|_| ()));
        crate::rt::spawn(async move {
            while let Some(bytes) = rx.next().await {
                if write_frame(&mut write, &bytes).await.is_err() {
                    return;
                }
            }
            let _ = write.close().await;
        });
        self.links.insert(session, Link { tx, reader });
    }
}
