//! Message framing on a byte stream: each `/nexus/sync/2` message travels as a 4-byte
//! big-endian length followed by that many bytes. Lengths over
//! [`nexus_core::protocol::MAX_MESSAGE_BYTES`] are refused before anything is allocated,
//! so a peer cannot make us reserve memory by announcing a huge frame.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use nexus_core::protocol::MAX_MESSAGE_BYTES;
use thiserror::Error;

/// What a frame's buffer starts at; it doubles as more of the body arrives.
const INITIAL_BODY_CAPACITY: usize = 16 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer announced a frame over the limit.
    #[error("the peer announced a {len}-byte message, over the limit of {MAX_MESSAGE_BYTES}")]
    TooLong {
        /// The announced length.
        len: usize,
    },
    /// The stream failed or ended in the middle of a frame.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = reader.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLong { len });
    }
    // The buffer grows with what arrives, not with what was announced: a peer that
    // announces the largest frame and sends nothing more costs no memory.
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(body))
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> Result<(), FrameError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLong { len: body.len() });
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLong { len: body.len() })?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_a_clean_end_is_not_an_error() {
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frame(&mut buf, b"hello")).unwrap();
        block_on(write_frame(&mut buf, b"")).unwrap();
        let mut reader = Cursor::new(buf.into_inner());
        assert_eq!(
            block_on(read_frame(&mut reader)).unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(block_on(read_frame(&mut reader)).unwrap(), Some(Vec::new()));
        assert_eq!(block_on(read_frame(&mut reader)).unwrap(), None);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut huge = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            block_on(read_frame(&mut huge)),
            Err(FrameError::TooLong { .. })
        ));
        let mut cut = Cursor::new(vec![0, 0, 0, 9, 1, 2]);
        assert!(matches!(
            block_on(read_frame(&mut cut)),
            Err(FrameError::Io(_))
        ));
        let mut half_length = Cursor::new(vec![0, 0]);
        assert!(matches!(
            block_on(read_frame(&mut half_length)),
            Err(FrameError::Io(_))
        ));
    }
}
