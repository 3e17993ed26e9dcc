//! The two things the runtimes need from their platform, behind one small interface:
//! spawning a task and sleeping. Natively these are tokio's (the task runs on the
//! runtime's threads); in a browser a task runs on the page's event loop
//! (`spawn_local`) and a sleep is a `setTimeout`.

use std::future::Future;
use std::time::Duration;

/// Runs `task` in the background.
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(task);
}

/// Runs `task` in the background, on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(task);
}

/// Resolves after `duration`.
#[cfg(not(target_arch = "wasm32"))]
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Resolves after `duration`.
#[cfg(target_arch = "wasm32")]
pub async fn sleep(duration: Duration) {
    futures_timer::Delay::new(duration).await;
}
