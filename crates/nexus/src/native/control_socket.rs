//! The daemon's control socket: a Unix socket (`nexus.sock` in the home) through which
//! `nexus` commands on the same machine ask the running daemon for its status, to dial a
//! peer or to try an invite. One [`Request`] line in, one [`Reply`] line out, in the
//! [`crate::control`] wire format. Its presence also marks a home as served: one daemon
//! per home.
//!
//! The daemon side ([`bind_control`], [`serve_control`]) hands each request to the
//! peer's loop with a oneshot for the reply; the client side is [`control_request`].

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::daemon::NativeError;
use crate::control::{Reply, Request};

/// The control socket's file name in the home.
pub const CONTROL_SOCKET: &str = "nexus.sock";

/// A request on its way to the peer's loop, with where its reply goes.
pub(crate) type ControlRequest = (Request, oneshot::Sender<Reply>);

/// Claims the control socket at `path`; fails when a live daemon answers there. A stale
/// socket left by a killed daemon is replaced.
pub(crate) fn bind_control(path: &Path) -> Result<UnixListener, NativeError> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(NativeError::AlreadyRunning(path.to_owned()));
        }
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path).map_err(|source| NativeError::Control {
        path: path.to_owned(),
        source,
    })
}

/// Answers every connection on `listener`, a line at a time, until the listener fails.
/// Each request goes to `requests`; a line that is no request is answered with its error.
pub(crate) async fn serve_control(
    listener: UnixListener,
    requests: mpsc::UnboundedSender<ControlRequest>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let requests = requests.clone();
        crate::rt::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match Request::from_json(&line) {
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        if requests.send((request, tx)).is_err() {
                            return;
                        }
                        rx.await
                            .unwrap_or_else(|_| Reply::Failed("the daemon is stopping".into()))
                    }
                    Err(e) => Reply::Failed(e.to_string()),
                };
                let Ok(mut text) = reply
                    .to_json()
                    .or_else(|e| Reply::Failed(format!("writing the reply: {e}")).to_json())
                else {
                    return;
                };
                text.push('\n');
                if write.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Why a control request failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No daemon runs on this home.
    #[error("no daemon is running on {0}")]
    NotRunning(PathBuf),
    /// The daemon did not answer properly.
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    /// The request could not be written as JSON.
    #[error("writing the request: {0}")]
    Encode(serde_json::Error),
    /// The daemon answered something that is not a reply.
    #[error("the daemon answered something unreadable: {0}")]
    BadReply(String),
}

/// Sends one request to the daemon running on `home` and returns its answer.
pub async fn control_request(home: &Path, request: &Request) -> Result<Reply, ControlError> {
    let path = home.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|_| ControlError::NotRunning(home.to_owned()))?;
    let (read, mut write) = stream.into_split();
    let mut text = request.to_json().map_err(ControlError::Encode)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| ControlError::BadReply("the connection closed".into()))?;
    Reply::from_json(&line).map_err(|e| ControlError::BadReply(e.to_string()))
}

/// Whether a daemon answers on `home`'s control socket.
pub fn daemon_running(home: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(home.join(CONTROL_SOCKET)).is_ok()
}
