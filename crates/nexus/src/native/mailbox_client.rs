//! Talking to a relay's mailbox (`/nexus/mailbox/2`): one request and one response per
//! frame on a libp2p stream.

use libp2p::{PeerId, StreamProtocol};
use nexus_core::mailbox::{MAILBOX_PROTOCOL, MailboxRequest, MailboxResponse};
use thiserror::Error;

use crate::frames::{FrameError, read_frame, write_frame};

/// The mailbox protocol's libp2p name.
pub const MAILBOX: StreamProtocol = StreamProtocol::new(MAILBOX_PROTOCOL);

/// Why a mailbox request failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// No stream to the relay.
    #[error("opening a mailbox stream to relay {relay}: {reason}")]
    Open {
        /// The relay.
        relay: PeerId,
        /// Why.
        reason: String,
    },
    /// The stream failed.
    #[error("mailbox stream: {0}")]
    Frame(#[from] FrameError),
    /// The relay closed the stream without answering.
    #[error("the relay closed the mailbox stream without answering")]
    NoAnswer,
    /// The relay answered something unreadable.
    #[error("the relay's mailbox answer is unreadable: {0}")]
    Decode(#[from] nexus_core::DecodeError),
}

/// Sends one request to `relay`'s mailbox and returns its answer.
pub async fn mailbox_request(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    request: &MailboxRequest,
) -> Result<MailboxResponse, MailboxError> {
    let mut stream = control
        .open_stream(relay, MAILBOX)
        .await
        .map_err(|e| MailboxError::Open {
            relay,
            reason: e.to_string(),
        })?;
    write_frame(&mut stream, &request.encode()).await?;
    let answer = read_frame(&mut stream)
        .await?
        .ok_or(MailboxError::NoAnswer)?;
    Ok(MailboxResponse::decode(&answer)?)
}
