//! The things the runtimes need from their platform, behind one small interface:
//! spawning a task, sleeping and (in a browser) giving the page a turn. Natively these
//! are tokio's (the task runs on the runtime's threads); in a browser a task runs on the
//! page's event loop (`spawn_local`) and a sleep is a `setTimeout`.

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

/// Lets the page handle input and paint before the caller goes on: `scheduler.yield()`
/// where the browser has it (Chromium 129+), else a zero-delay timer. A nested
/// `setTimeout(0)` waits at least 4 ms, which adds up over many slices of work.
#[cfg(target_arch = "wasm32")]
pub async fn yield_to_page() {
    use wasm_bindgen::JsCast;
    let scheduler = js_sys::Reflect::get(&js_sys::global(), &"scheduler".into())
        .ok()
        .filter(|s| s.is_object());
    let promise = scheduler.and_then(|scheduler| {
        let yield_fn = js_sys::Reflect::get(&scheduler, &"yield".into()).ok()?;
        let yield_fn = yield_fn.dyn_into::<js_sys::Function>().ok()?;
        yield_fn
            .call0(&scheduler)
            .ok()?
            .dyn_into::<js_sys::Promise>()
            .ok()
    });
    match promise {
        Some(promise) => {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
        None => futures_timer::Delay::new(Duration::ZERO).await,
    }
}
